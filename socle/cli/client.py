"""Talking to a running Socle server: the API client, its options and errors, and ``socle chat``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import httpx
import orjson

from socle.cli.options import json_option

__all__ = ["api_client", "chat", "check_response", "server_options"]

F = TypeVar("F", bound=Callable[..., Any])


def server_options(fn: F) -> F:
    fn = click.option(
        "--key",
        envvar="SOCLE_API_KEY",
        default=None,
        help="API key [env SOCLE_API_KEY; default: the admin key in --data-dir].",
    )(fn)
    fn = click.option(
        "--url", envvar="SOCLE_URL", default="http://127.0.0.1:8000", show_default=True, help="Server URL."
    )(fn)
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="SOCLE_HOME",
        default=Path(".socle"),
        help="Where to find admin.key when --key is not given.",
    )(fn)
    return fn


def api_client(url: str, key: str | None, data_dir: Path) -> httpx.Client:
    if key is None:
        path = data_dir / "admin.key"
        if not path.is_file():
            raise click.ClickException(f"no API key: pass --key, set SOCLE_API_KEY, or create {path}")
        key = path.read_text().strip()
    return httpx.Client(
        base_url=url.rstrip("/") + "/v1",
        headers={"authorization": f"Bearer {key}"},
        timeout=httpx.Timeout(300.0, connect=5.0),
    )


def check_response(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        message = f"{error.get('message')} ({error.get('code')})"
    except (ValueError, KeyError, TypeError):
        message = response.text[:500]
    raise click.ClickException(f"HTTP {response.status_code}: {message}")


@click.command()
@click.argument("question")
@click.option("--model", "-m", default="smollm2-135m-instruct", show_default=True, help="Model name.")
@click.option("--system", default=None, help="Optional system message.")
@click.option("--max-tokens", type=int, default=256, show_default=True)
@click.option("--temperature", type=float, default=None)
@click.option("--stream/--no-stream", default=False, help="Print the answer as it is generated.")
@json_option
@server_options
def chat(
    question: str,
    model: str,
    system: str | None,
    max_tokens: int,
    temperature: float | None,
    stream: bool,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Ask a running Socle server one question."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    body: dict[str, Any] = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    try:
        with api_client(url, key, data_dir) as client:
            if not stream:
                response = client.post("/chat/completions", json=body)
                check_response(response)
                data = response.json()
                click.echo(
                    orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
                    if as_json
                    else data["choices"][0]["message"]["content"]
                )
                return
            with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
                if not response.is_success:
                    response.read()
                    check_response(response)
                _print_stream(response, as_json)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc


def _print_stream(response: httpx.Response, as_json: bool) -> None:
    for line in response.iter_lines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = orjson.loads(line[6:])
        if as_json:
            click.echo(orjson.dumps(chunk).decode())
            continue
        if "error" in chunk:
            raise click.ClickException(chunk["error"]["message"])
        for choice in chunk.get("choices", []):
            click.echo(choice["delta"].get("content", ""), nl=False)
    if not as_json:
        click.echo()
