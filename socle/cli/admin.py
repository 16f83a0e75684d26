"""Administration commands, talking to a running server's admin API: ``teams``, ``users``, ``keys``.

Each mirrors an admin API route and prints a table, or the API's JSON with ``--json``.
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

__all__ = ["budgets", "keys", "limits", "teams", "usage", "users"]


def _call(ctx: dict[str, Any], method: str, path: str, *, prefix: str = "/admin", **kwargs: Any) -> Any:
    try:
        with api_client(ctx["url"], ctx["key"], ctx["data_dir"]) as client:
            response = client.request(method, prefix + path, **kwargs)
    except httpx.HTTPError as exc:
        raise click.ClickException(f"cannot reach {ctx['url']}: {exc}") from exc
    check_response(response)
    return (
        response.text if response.headers.get("content-type", "").startswith("text/csv") else response.json()
    )


def _out(data: Any, as_json: bool, columns: list[str]) -> None:
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    rows = data["data"] if isinstance(data, dict) and "data" in data else [data]
    for row in rows:
        click.echo("  ".join(str(row.get(c) if row.get(c) is not None else "-") for c in columns))


def _group(name: str, help_text: str) -> click.Group:
    return click.Group(name=name, help=help_text)


teams = _group("teams", "Manage teams (admin).")
users = _group("users", "Manage users and service accounts (admin).")
keys = _group("keys", "Manage API keys (admin or team admin).")
budgets = _group("budgets", "Manage budgets (admin; team admins for their users and keys).")
limits = _group("limits", "Manage rate limits (admin; team admins for their keys).")


def _command(group: click.Group, name: str) -> Callable[[Callable[..., None]], click.Command]:
    """A subcommand with the server options (--url, --key, --data-dir) and --json."""

    def wrap(fn: Callable[..., None]) -> click.Command:
        def run(url: str, key: str | None, data_dir: Path, **kwargs: Any) -> None:
            fn({"url": url, "key": key, "data_dir": data_dir}, **kwargs)

        run.__doc__ = fn.__doc__
        run.__click_params__ = getattr(fn, "__click_params__", [])  # type: ignore[attr-defined]
        return group.command(name)(server_options(json_option(run)))

    return wrap


@_command(teams, "list")
def teams_list(obj: dict[str, Any], as_json: bool) -> None:
    """List teams."""
    _out(_call(obj, "GET", "/teams"), as_json, ["id", "name"])


@click.option(
    "--period", type=click.Choice(["daily", "monthly", "total"]), default="monthly", show_default=True
)
@click.option("--budget-eur", default=None, help="Also give the team a budget in euros for --period.")
@click.argument("name")
@_command(teams, "create")
def teams_create(obj: dict[str, Any], as_json: bool, name: str, budget_eur: str | None, period: str) -> None:
    """Create a team, optionally with a budget."""
    team = _call(obj, "POST", "/teams", json={"name": name})
    if budget_eur is not None:
        body = {"scope": "team", "target": team["id"], "period": period, "limit_eur": budget_eur}
        team["budget"] = _call(obj, "POST", "/budgets", json=body)
    _out(team, as_json, ["id", "name"])


@click.argument("team")
@_command(teams, "members")
def teams_members(obj: dict[str, Any], as_json: bool, team: str) -> None:
    """List a team's role bindings."""
    _out(_call(obj, "GET", f"/teams/{team}/members"), as_json, ["principal_id", "role"])


@click.option("--role", required=True, help="Role to grant (admin, auditor, team-admin, member, service).")
@click.option("--principal", "principal_id", required=True, help="Principal id.")
@click.argument("team")
@_command(teams, "bind")
def teams_bind(obj: dict[str, Any], as_json: bool, team: str, principal_id: str, role: str) -> None:
    """Grant a principal a role in a team."""
    body = {"principal_id": principal_id, "role": role}
    _out(
        _call(obj, "POST", f"/teams/{team}/members", json=body), as_json, ["team_id", "principal_id", "role"]
    )


@_command(users, "list")
def users_list(obj: dict[str, Any], as_json: bool) -> None:
    """List users and service accounts."""
    _out(_call(obj, "GET", "/principals"), as_json, ["id", "kind", "name", "email", "disabled_at"])


@click.option("--service", is_flag=True, help="Create a service account rather than a user.")
@click.option("--email", default=None)
@click.argument("name")
@_command(users, "create")
def users_create(obj: dict[str, Any], as_json: bool, name: str, email: str | None, service: bool) -> None:
    """Create a user (or, with --service, a service account)."""
    body = {"kind": "service" if service else "user", "name": name, "email": email}
    _out(_call(obj, "POST", "/principals", json=body), as_json, ["id", "kind", "name"])


@click.argument("principal_id")
@_command(users, "disable")
def users_disable(obj: dict[str, Any], as_json: bool, principal_id: str) -> None:
    """Disable a user or service account: all its keys stop working at once."""
    _out(_call(obj, "DELETE", f"/principals/{principal_id}"), as_json, ["id", "name", "disabled_at"])


@click.option("--team", default=None, help="Only this team's keys.")
@_command(keys, "list")
def keys_list(obj: dict[str, Any], as_json: bool, team: str | None) -> None:
    """List API keys (never their secrets)."""
    params = {"team": team} if team else {}
    _out(
        _call(obj, "GET", "/keys", params=params), as_json, ["id", "prefix", "name", "team_id", "revoked_at"]
    )


@click.option("--name", default=None, help="Key name (and service account name when one is created).")
@click.option("--role", default=None, help="Create a service account with this role in --team for the key.")
@click.option("--principal", "principal_id", default=None, help="Principal the key belongs to.")
@click.option("--team", default=None, help="Team the key acts for (default: the caller's).")
@_command(keys, "create")
def keys_create(
    obj: dict[str, Any],
    as_json: bool,
    team: str | None,
    principal_id: str | None,
    role: str | None,
    name: str | None,
) -> None:
    """Create an API key; its secret is printed once. With --role, for a new service account."""
    if role is not None:
        if principal_id is not None or team is None:
            raise click.UsageError("--role creates a service account: give --team, not --principal")
        account = _call(
            obj, "POST", "/principals", json={"kind": "service", "name": name or f"{team}-{role}"}
        )
        principal_id = account["id"]
        _call(obj, "POST", f"/teams/{team}/members", json={"principal_id": principal_id, "role": role})
    body = {"team": team, "principal_id": principal_id, "name": name or "key"}
    created = _call(obj, "POST", "/keys", json=body)
    if as_json:
        _out(created, True, [])
        return
    click.echo(f"{created['key']}")
    click.echo(f"(key {created['id']} for team {created['team_id']}; the secret is shown only now)", err=True)


@click.argument("key_id")
@_command(keys, "revoke")
def keys_revoke(obj: dict[str, Any], as_json: bool, key_id: str) -> None:
    """Revoke an API key: refused from the next request on, on every replica."""
    _out(_call(obj, "DELETE", f"/keys/{key_id}"), as_json, ["id", "name", "revoked_at"])


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
    data = _call(obj, "GET", "/usage/records" if records else "/usage", prefix="", params=params)
    if as_csv:
        click.echo(data, nl=False)
        return
    if records:
        _out(data, as_json, _RECORD_COLUMNS)
        if data["next_cursor"] and not as_json:
            click.echo(f"more: --cursor {data['next_cursor']}", err=True)
        return
    columns = ["requests", "errors", "prompt_tokens", "completion_tokens", "cost_eur", "p95_latency_ms"]
    _out(data, as_json, [*data["group_by"], *columns])


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

_BUDGET_COLUMNS = [
    "scope",
    "target",
    "period",
    "limit_eur",
    "spent_eur",
    "reserved_eur",
    "limit_tokens",
    "spent_tokens",
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


@click.option("--team", default=None, help="Only this team's budget.")
@_command(budgets, "show")
def budgets_show(obj: dict[str, Any], as_json: bool, team: str | None) -> None:
    """Budgets with what their current period has spent and holds in reservations."""
    data = _call(obj, "GET", "/budgets", params={"team": team} if team else {})
    _out(data if as_json else {"data": [_flat(x) for x in data["data"]]}, as_json, ["id", *_BUDGET_COLUMNS])


@click.option("--tokens", "limit_tokens", type=int, default=None, help="Limit in tokens.")
@click.option("--eur", "limit_eur", default=None, help="Limit in euros.")
@click.option("--period", type=click.Choice(["daily", "monthly", "total"]), required=True)
@click.option("--target", default=None, help="Team name or id, principal id or key id.")
@click.option("--scope", type=click.Choice(["organisation", "team", "user", "key"]), required=True)
@_command(budgets, "create")
def budgets_create(
    obj: dict[str, Any],
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
    _out(_flat(_call(obj, "POST", "/budgets", json=body)), as_json, ["id", *_BUDGET_COLUMNS])


@click.argument("budget_id")
@_command(budgets, "delete")
def budgets_delete(obj: dict[str, Any], as_json: bool, budget_id: str) -> None:
    """Delete a budget."""
    _out(_call(obj, "DELETE", f"/budgets/{budget_id}"), as_json, ["id", "deleted"])


@_command(limits, "list")
def limits_list(obj: dict[str, Any], as_json: bool) -> None:
    """List rate limits."""
    columns = ["id", "scope", "scope_id", "requests_per_minute", "tokens_per_minute"]
    _out(_call(obj, "GET", "/limits"), as_json, columns)


@click.option("--tpm", type=int, default=None, help="Tokens per minute.")
@click.option("--rpm", type=int, default=None, help="Requests per minute.")
@click.option("--target", required=True, help="Key id, team name or id, or public model name.")
@click.option("--scope", type=click.Choice(["key", "team", "model"]), required=True)
@_command(limits, "create")
def limits_create(
    obj: dict[str, Any], as_json: bool, scope: str, target: str, rpm: int | None, tpm: int | None
) -> None:
    """Create a rate limit."""
    body = {"scope": scope, "target": target, "requests_per_minute": rpm, "tokens_per_minute": tpm}
    columns = ["id", "scope", "scope_id", "requests_per_minute", "tokens_per_minute"]
    _out(_call(obj, "POST", "/limits", json=body), as_json, columns)


@click.argument("limit_id")
@_command(limits, "delete")
def limits_delete(obj: dict[str, Any], as_json: bool, limit_id: str) -> None:
    """Delete a rate limit."""
    _out(_call(obj, "DELETE", f"/limits/{limit_id}"), as_json, ["id", "deleted"])
