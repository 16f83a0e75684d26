"""Budgets, rate limits and usage: ``socle budgets``, ``socle limits``, ``socle usage``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from socle.cli.adminkit import Context, call, command, out
from socle.cli.client import server_options
from socle.cli.options import json_option

__all__ = ["budgets", "limits", "usage"]

budgets = click.Group(name="budgets", help="Manage budgets (admin; team admins for their users and keys).")
limits = click.Group(name="limits", help="Manage rate limits (admin; team admins for their keys).")

_BUDGET_COLUMNS = [
    "id",
    "scope",
    "target",
    "period",
    "limit_eur",
    "spent_eur",
    "reserved_eur",
    "limit_tokens",
    "spent_tokens",
]
_LIMIT_COLUMNS = ["id", "scope", "scope_id", "requests_per_minute", "tokens_per_minute"]


@click.command("usage")
@click.option("--since", default=None, help="ISO date or time (default: 30 days ago; sums: its whole day).")
@click.option(
    "--until", default=None, help="ISO date or time, exclusive (default: now; sums: to its day's end)."
)
@click.option("--team", default=None, help="Team id or name.")
@click.option("--principal", default=None, help="User or service account id.")
@click.option("--model", default=None, help="Public model name.")
@click.option(
    "--group-by",
    default="day,model",
    show_default=True,
    help="Among day, team, model, principal, engine, zone.",
)
@click.option("--records", is_flag=True, help="List the per-request records (newest first) instead of sums.")
@click.option("--limit", default=100, show_default=True, help="Records per page (with --records).")
@click.option("--cursor", default=None, help="Next page: the cursor printed after the previous one.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@json_option
@server_options
def usage(
    since: str | None,
    until: str | None,
    team: str | None,
    principal: str | None,
    model: str | None,
    group_by: str,
    records: bool,
    limit: int,
    cursor: str | None,
    as_csv: bool,
    as_json: bool,
    url: str,
    key: str | None,
    data_dir: Path,
) -> None:
    """Usage sums per day over a period, or the per-request records: your own, your team's (team
    admins) or everyone's (admins, auditors)."""
    params: dict[str, Any] = {"since": since, "until": until, "team": team, "principal": principal}
    params["model"] = model
    if records:
        params.update(limit=limit, cursor=cursor)
    else:
        params["group_by"] = group_by
    params = {k: v for k, v in params.items() if v is not None}
    if as_csv:
        params["format"] = "csv"
    obj = {"url": url, "key": key, "data_dir": data_dir}
    data = call(obj, "GET", "/usage/records" if records else "/usage", prefix="", params=params)
    if as_csv:
        click.echo(data, nl=False)
        return
    if records:
        out(data, as_json, _RECORD_COLUMNS)
        if data["next_cursor"] and not as_json:
            click.echo(f"more: --cursor {data['next_cursor']}", err=True)
        return
    columns = ["requests", "errors", "prompt_tokens", "completion_tokens", "cost_eur", "p95_latency_ms"]
    out(data, as_json, [*data["group_by"], *columns])


_RECORD_COLUMNS = [
    "created_at",
    "request_id",
    "team_id",
    "principal_id",
    "model",
    "status_code",
    "prompt_tokens",
    "completion_tokens",
    "cost_eur",
    "latency_ms",
]


def _flat(status: dict[str, Any]) -> dict[str, Any]:
    budget = status["budget"]
    return {
        "id": budget["id"],
        "scope": budget["scope"],
        "target": budget["scope_id"],
        "period": budget["period"],
        "limit_eur": budget.get("limit_eur"),
        "limit_tokens": budget.get("limit_tokens"),
        **{k: v for k, v in status.items() if k != "budget"},
    }


def _budget_out(status: dict[str, Any], as_json: bool) -> None:
    out(status if as_json else _flat(status), as_json, _BUDGET_COLUMNS)


@click.option("--team", default=None, help="Only this team's budget.")
@click.option("--scope", type=click.Choice(["organisation", "team", "user", "key"]), default=None)
@command(budgets, "show")
def budgets_show(obj: Context, as_json: bool, scope: str | None, team: str | None) -> None:
    """Budgets with what their current period has spent and holds in reservations."""
    params = {k: v for k, v in (("team", team), ("scope", scope)) if v is not None}
    data = call(obj, "GET", "/budgets", params=params)
    out(data if as_json else {"data": [_flat(x) for x in data["data"]]}, as_json, _BUDGET_COLUMNS)


@click.option("--tokens", "limit_tokens", type=int, default=None, help="Limit in tokens.")
@click.option("--eur", "limit_eur", default=None, help="Limit in euros.")
@click.option("--period", type=click.Choice(["daily", "monthly", "total"]), required=True)
@click.option("--target", default=None, help="Organisation or team name or id, principal id or key id.")
@click.option("--scope", type=click.Choice(["organisation", "team", "user", "key"]), required=True)
@command(budgets, "create")
def budgets_create(
    obj: Context,
    as_json: bool,
    scope: str,
    target: str | None,
    period: str,
    limit_eur: str | None,
    limit_tokens: int | None,
) -> None:
    """Create a budget for a scope and period."""
    body = {
        "scope": scope,
        "target": target,
        "period": period,
        "limit_eur": limit_eur,
        "limit_tokens": limit_tokens,
    }
    _budget_out(call(obj, "POST", "/budgets", json=body), as_json)


@click.option("--tokens", "limit_tokens", default=None, help="New limit in tokens ('none' removes it).")
@click.option("--eur", "limit_eur", default=None, help="New limit in euros ('none' removes it).")
@click.argument("budget_id")
@command(budgets, "update")
def budgets_update(
    obj: Context, as_json: bool, budget_id: str, limit_eur: str | None, limit_tokens: str | None
) -> None:
    """Change a budget's limits (the options not given are kept)."""
    body = _changes(limit_eur=limit_eur, limit_tokens=limit_tokens)
    _budget_out(call(obj, "PATCH", f"/budgets/{budget_id}", json=body), as_json)


@click.argument("budget_id")
@command(budgets, "delete")
def budgets_delete(obj: Context, as_json: bool, budget_id: str) -> None:
    """Delete a budget."""
    out(call(obj, "DELETE", f"/budgets/{budget_id}"), as_json, ["id", "deleted"])


@command(limits, "list")
def limits_list(obj: Context, as_json: bool) -> None:
    """List rate limits."""
    out(call(obj, "GET", "/limits"), as_json, _LIMIT_COLUMNS)


@click.option("--tpm", type=int, default=None, help="Tokens per minute.")
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option(
    "--target",
    required=True,
    help="Key id, team name or id, public model name, or TEAM:MODEL for --scope team_model.",
)
@click.option("--scope", type=click.Choice(["key", "team", "model", "team_model"]), required=True)
@command(limits, "create")
def limits_create(
    obj: Context, as_json: bool, scope: str, target: str, rpm: int | None, tpm: int | None
) -> None:
    """Create a rate limit."""
    body = {"scope": scope, "target": target, "requests_per_minute": rpm, "tokens_per_minute": tpm}
    out(call(obj, "POST", "/limits", json=body), as_json, _LIMIT_COLUMNS)


@click.option("--tpm", default=None, help="Tokens per minute ('none' removes the limit).")
@click.option("--rpm", default=None, help="Requests per minute ('none' removes the limit).")
@click.argument("limit_id")
@command(limits, "update")
def limits_update(obj: Context, as_json: bool, limit_id: str, rpm: str | None, tpm: str | None) -> None:
    """Change a rate limit (the options not given are kept)."""
    body = _changes(requests_per_minute=rpm, tokens_per_minute=tpm)
    out(call(obj, "PATCH", f"/limits/{limit_id}", json=body), as_json, _LIMIT_COLUMNS)


@click.argument("limit_id")
@command(limits, "delete")
def limits_delete(obj: Context, as_json: bool, limit_id: str) -> None:
    """Delete a rate limit."""
    out(call(obj, "DELETE", f"/limits/{limit_id}"), as_json, ["id", "deleted"])


def _changes(**options: str | None) -> dict[str, str | None]:
    """The options given, with 'none' as null (remove that limit)."""
    return {k: None if v.lower() == "none" else v for k, v in options.items() if v is not None}
