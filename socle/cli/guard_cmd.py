"""``socle guard check TEXT``: scan a text with a running server's guardrails; ``socle guard policy``:
teams' stored policies (``/v1/admin/teams/{team}/guardrails``)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import click
import httpx
import orjson

from socle.cli.adminkit import Context, call, command, out
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


@guard.group("policy")
def policy() -> None:
    """Teams' guardrail policies stored by admins (they override the settings' policy of the team)."""


def _print_policy(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    stored = f"stored version {data['version']}" if data["source"] == "stored" else "from the settings"
    click.echo(f"team {data['team']}: policy {data['name']} v{data['policy_version']} ({stored})")
    body = data["policy"]
    for rule in body["rules"]:
        stages = ",".join(rule["stages"])
        level = f" → {rule['level']}" if rule.get("level") else ""
        click.echo(
            f"  {rule['match']:<20} {rule['action']}{level:<14} {stages:<22} min_score {rule['min_score']}"
        )
    extras = {k: body[k] for k in ("max_output_chars", "canary", "canaries") if body.get(k)}
    if extras:
        click.echo("  " + "  ".join(f"{k}={v}" for k, v in extras.items()))


def _read_policy(path: Path) -> dict[str, Any]:
    """A policy file: TOML (the fields of a ``[guardrails.policies.NAME]`` section) or JSON."""
    try:
        raw = path.read_bytes()
        data: Any = tomllib.loads(raw.decode()) if path.suffix == ".toml" else orjson.loads(raw)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, orjson.JSONDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise click.ClickException(f"{path}: a policy is a table (TOML) or an object (JSON)")
    return data


@click.option("--history", is_flag=True, help="Every stored version, newest first.")
@click.argument("team")
@command(policy, "show")
def policy_show(obj: Context, as_json: bool, team: str, history: bool) -> None:
    """Show TEAM's guardrail policy (the stored version, or the settings' one), or its history."""
    if not history:
        _print_policy(call(obj, "GET", f"/teams/{team}/guardrails"), as_json)
        return
    data = call(obj, "GET", f"/teams/{team}/guardrails/versions")
    if as_json:
        out(data, True, [])
        return
    for row in data["data"]:
        what = f"{len(row['policy']['rules'])} rules" if row["policy"] else "back to the settings' policy"
        click.echo(f"v{row['version']:<4} {row['created_at']}  {row['created_by']}  {row['name']}  {what}")


@click.option(
    "--file",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Policy file: .toml (like a [guardrails.policies.NAME] section, without version) or .json.",
)
@click.option("--name", default=None, help="Policy name in records and errors; default team:TEAM.")
@click.argument("team")
@command(policy, "set")
def policy_set(obj: Context, as_json: bool, team: str, file: Path, name: str | None) -> None:
    """Store a new version of TEAM's policy (admins); it applies to the team's next requests."""
    body = _read_policy(file)
    if name is not None:
        body["name"] = name
    _print_policy(call(obj, "PUT", f"/teams/{team}/guardrails", json=body), as_json)


@click.argument("team")
@command(policy, "reset")
def policy_reset(obj: Context, as_json: bool, team: str) -> None:
    """Give TEAM the settings' policy again (recorded as a new version; the history is kept)."""
    _print_policy(call(obj, "DELETE", f"/teams/{team}/guardrails"), as_json)
