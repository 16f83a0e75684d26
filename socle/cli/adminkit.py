"""What the administration commands share: one call to the admin API, one way to print, one decorator.

Every administration command talks to a running server (``--url``, ``--key``, ``--data-dir``) and
prints a table, or the API's JSON with ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from socle.cli.client import api_client, check_response, server_options
from socle.cli.options import json_option

__all__ = ["Context", "call", "command", "out"]

Context = dict[str, Any]
"""The server options of one invocation: ``url``, ``key``, ``data_dir``."""


def call(ctx: Context, method: str, path: str, *, prefix: str = "/admin", **kwargs: Any) -> Any:
    """One request to the server's API; HTTP errors become a clear ``ClickException``."""
    try:
        with api_client(ctx["url"], ctx["key"], ctx["data_dir"]) as client:
            response = client.request(method, prefix + path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {ctx['url']}: {exc}") from exc
    check_response(response)
    return (
        response.text if response.headers.get("content-type", "").startswith("text/csv") else response.json()
    )


def out(data: Any, as_json: bool, columns: list[str]) -> None:
    """Print ``data`` as indented JSON, or its rows (a listing's ``data``, else the object) as columns."""
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    rows = data["data"] if isinstance(data, dict) and "data" in data else [data]
    for row in rows:
        click.echo("  ".join(str(row.get(c) if row.get(c) is not None else "-") for c in columns))


def command(group: click.Group, name: str) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand with the server options (--url, --key, --data-dir) and --json; the function gets
    the server options as its first argument (a :data:`Context`)."""

    def wrap(fn: Callable[..., None]) -> click.Command:
        def run(url: str, key: str | None, data_dir: Path, **kwargs: Any) -> None:
            fn({"url": url, "key": key, "data_dir": data_dir}, **kwargs)

        run.__doc__ = fn.__doc__
        run.__click_params__ = getattr(fn, "__click_params__", [])  # type: ignore[attr-defined]
        return group.command(name)(server_options(json_option(run)))

    return wrap
