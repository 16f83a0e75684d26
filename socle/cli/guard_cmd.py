"""``socle guard check TEXT``: scan a text with a running server's guardrails."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import httpx
import orjson

from socle.cli.client import api_client, check_response, server_options
from socle.cli.options import json_option

__all__ = ["guard"]


@click.group()
def guard() -> None:
    """Guardrails: scan texts for personal data, injections and secrets."""


@guard.command("check")
@click.argument("text")
@click.option(
    "--stage",
    type=click.Choice(["input", "context", "output"]),
    default="input",
    show_default=True,
    help="Scan as a user message, as retrieved content (indirect injection) or as an answer.",
)
@json_option
@server_options
def check(text: str, stage: str, as_json: bool, url: str, key: str | None, data_dir: Path) -> None:
    """Show the findings in TEXT and the action the caller's policy would take (use - to read stdin)."""
    if text == "-":
        text = sys.stdin.read()
    try:
        with api_client(url, key, data_dir) as client:
            response = client.post("/guardrails/check", json={"text": text, "stage": stage})
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {url}: {exc}") from exc
    check_response(response)
    data = response.json()
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f"action: {data['action']}  (policy {data['policy']} v{data['policy_version']})")
    for f in data["findings"]:
        click.echo(
            f"{f['start']:>6}-{f['end']:<6} {f['type']:<20} {f['detector']:<28} {f['score']:.2f}  "
            f"{f['action']}  {text[f['start'] : f['end']]!r}"
        )
