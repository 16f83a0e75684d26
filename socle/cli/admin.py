"""Administration commands for the directory: ``orgs``, ``teams``, ``users`` and ``keys``.

Each mirrors an admin API route (``/v1/admin/...``) and prints a table, or the API's JSON with
``--json``. Budgets, limits and usage are in :mod:`socle.cli.quotas_cmd`, model access in
:mod:`socle.cli.models_cmd`.
"""

from __future__ import annotations

from typing import Any

import click

from socle.cli.adminkit import Context, call, command, out
from socle.config import CLASSIFICATIONS

__all__ = ["keys", "orgs", "teams", "users"]

orgs = click.Group(name="orgs", help="Manage organisations (admin).")
teams = click.Group(
    name="teams", help="Manage teams and their role bindings (admin; team admins: their team)."
)
users = click.Group(name="users", help="Manage users and service accounts (admin).")
keys = click.Group(name="keys", help="Manage API keys (admin or team admin).")

_ORG = ["id", "name", "created_at"]
_TEAM = ["id", "name", "org_id", "classification"]
_USER = ["id", "kind", "name", "email", "org_id", "disabled_at"]
_KEY = ["id", "prefix", "name", "team_id", "principal_id", "expires_at", "revoked_at"]


# Organisations --------------------------------------------------------------------------------------
@command(orgs, "list")
def orgs_list(obj: Context, as_json: bool) -> None:
    """List organisations."""
    out(call(obj, "GET", "/organisations"), as_json, _ORG)


@click.argument("name")
@command(orgs, "create")
def orgs_create(obj: Context, as_json: bool, name: str) -> None:
    """Create an organisation."""
    out(call(obj, "POST", "/organisations", json={"name": name}), as_json, _ORG)


@click.argument("org")
@command(orgs, "show")
def orgs_show(obj: Context, as_json: bool, org: str) -> None:
    """Show an organisation (by id or name)."""
    out(call(obj, "GET", f"/organisations/{org}"), as_json, _ORG)


@click.option("--name", required=True, help="New name.")
@click.argument("org")
@command(orgs, "update")
def orgs_update(obj: Context, as_json: bool, org: str, name: str) -> None:
    """Rename an organisation."""
    out(call(obj, "PATCH", f"/organisations/{org}", json={"name": name}), as_json, _ORG)


@click.argument("org")
@command(orgs, "delete")
def orgs_delete(obj: Context, as_json: bool, org: str) -> None:
    """Delete an organisation that has no teams and no principals left."""
    out(call(obj, "DELETE", f"/organisations/{org}"), as_json, ["id", "name", "deleted"])


# Teams ----------------------------------------------------------------------------------------------
@click.option("--org", default=None, help="Only this organisation's teams (id or name).")
@command(teams, "list")
def teams_list(obj: Context, as_json: bool, org: str | None) -> None:
    """List teams."""
    out(call(obj, "GET", "/teams", params={"org": org} if org else {}), as_json, _TEAM)


@click.option(
    "--period", type=click.Choice(["daily", "monthly", "total"]), default="monthly", show_default=True
)
@click.option("--budget-eur", default=None, help="Also give the team a budget in euros for --period.")
@click.option(
    "--classification",
    type=click.Choice(CLASSIFICATIONS),
    default=None,
    help="Default data classification of the team's requests [default: the server's].",
)
@click.option("--org", default=None, help="Organisation (id or name); default: the caller's.")
@click.argument("name")
@command(teams, "create")
def teams_create(
    obj: Context,
    as_json: bool,
    name: str,
    org: str | None,
    budget_eur: str | None,
    period: str,
    classification: str | None,
) -> None:
    """Create a team, optionally with a budget."""
    body: dict[str, Any] = {"name": name, "org": org}
    if classification is not None:
        body["classification"] = classification
    team = call(obj, "POST", "/teams", json=body)
    if budget_eur is not None:
        body = {"scope": "team", "target": team["id"], "period": period, "limit_eur": budget_eur}
        team["budget"] = call(obj, "POST", "/budgets", json=body)
    out(team, as_json, _TEAM)


@click.argument("classification", type=click.Choice(CLASSIFICATIONS))
@click.argument("team")
@command(teams, "classify")
def teams_classify(obj: Context, as_json: bool, team: str, classification: str) -> None:
    """Set a team's default data classification (residency routing)."""
    out(call(obj, "PATCH", f"/teams/{team}", json={"classification": classification}), as_json, _TEAM)


@click.argument("team")
@command(teams, "show")
def teams_show(obj: Context, as_json: bool, team: str) -> None:
    """Show a team (by id or name)."""
    out(call(obj, "GET", f"/teams/{team}"), as_json, _TEAM)


@click.option("--name", required=True, help="New name.")
@click.argument("team")
@command(teams, "update")
def teams_update(obj: Context, as_json: bool, team: str, name: str) -> None:
    """Rename a team."""
    out(call(obj, "PATCH", f"/teams/{team}", json={"name": name}), as_json, _TEAM)


@click.argument("team")
@command(teams, "delete")
def teams_delete(obj: Context, as_json: bool, team: str) -> None:
    """Delete a team that never had API keys (with its bindings, grants, budgets and limits)."""
    out(call(obj, "DELETE", f"/teams/{team}"), as_json, ["id", "team", "deleted"])


@click.argument("team")
@command(teams, "members")
def teams_members(obj: Context, as_json: bool, team: str) -> None:
    """List a team's role bindings."""
    out(call(obj, "GET", f"/teams/{team}/members"), as_json, ["principal_id", "role"])


@click.option("--role", required=True, help="Role to grant (admin, auditor, team-admin, member, service).")
@click.option("--principal", "principal_id", required=True, help="Principal id.")
@click.argument("team")
@command(teams, "bind")
def teams_bind(obj: Context, as_json: bool, team: str, principal_id: str, role: str) -> None:
    """Grant a principal a role in a team."""
    body = {"principal_id": principal_id, "role": role}
    out(call(obj, "POST", f"/teams/{team}/members", json=body), as_json, ["team_id", "principal_id", "role"])


@click.option("--role", required=True, help="Role to take away.")
@click.option("--principal", "principal_id", required=True, help="Principal id.")
@click.argument("team")
@command(teams, "unbind")
def teams_unbind(obj: Context, as_json: bool, team: str, principal_id: str, role: str) -> None:
    """Remove a principal's role in a team."""
    out(call(obj, "DELETE", f"/teams/{team}/members/{principal_id}/{role}"), as_json, ["deleted"])


# Users and service accounts -------------------------------------------------------------------------
@click.option("--org", default=None, help="Only this organisation's (id or name).")
@click.option("--kind", type=click.Choice(["user", "service"]), default=None)
@command(users, "list")
def users_list(obj: Context, as_json: bool, kind: str | None, org: str | None) -> None:
    """List users and service accounts."""
    params = {k: v for k, v in (("kind", kind), ("org", org)) if v is not None}
    out(call(obj, "GET", "/principals", params=params), as_json, _USER)


@click.option("--org", default=None, help="Organisation (id or name); default: the caller's.")
@click.option("--service", is_flag=True, help="Create a service account rather than a user.")
@click.option("--email", default=None)
@click.argument("name")
@command(users, "create")
def users_create(
    obj: Context, as_json: bool, name: str, email: str | None, service: bool, org: str | None
) -> None:
    """Create a user (or, with --service, a service account)."""
    body = {"kind": "service" if service else "user", "name": name, "email": email, "org": org}
    out(call(obj, "POST", "/principals", json=body), as_json, _USER)


@click.argument("principal_id")
@command(users, "show")
def users_show(obj: Context, as_json: bool, principal_id: str) -> None:
    """Show a user or service account and its role bindings."""
    data = call(obj, "GET", f"/principals/{principal_id}")
    if as_json:
        out(data, True, [])
        return
    out(data, False, _USER)
    for binding in data["bindings"]:
        click.echo(f"  {binding['role']} in team {binding['team_id']}")


@click.option("--enable", "enabled", flag_value=True, default=None, help="Enable a disabled principal.")
@click.option("--disable", "enabled", flag_value=False, help="Disable it (all its keys stop working).")
@click.option("--email", default=None, help="New e-mail ('' removes it).")
@click.option("--name", default=None, help="New name.")
@click.argument("principal_id")
@command(users, "update")
def users_update(
    obj: Context, as_json: bool, principal_id: str, name: str | None, email: str | None, enabled: bool | None
) -> None:
    """Rename a user or service account, change its e-mail, enable or disable it."""
    body: dict[str, Any] = {"name": name, "email": email}
    if enabled is not None:
        body["disabled"] = not enabled
    body = {k: v for k, v in body.items() if v is not None}
    out(call(obj, "PATCH", f"/principals/{principal_id}", json=body), as_json, _USER)


@click.argument("principal_id")
@command(users, "disable")
def users_disable(obj: Context, as_json: bool, principal_id: str) -> None:
    """Disable a user or service account: all its keys stop working at once."""
    out(call(obj, "DELETE", f"/principals/{principal_id}"), as_json, ["id", "name", "disabled_at"])


# API keys -------------------------------------------------------------------------------------------
@click.option("--team", default=None, help="Only this team's keys.")
@command(keys, "list")
def keys_list(obj: Context, as_json: bool, team: str | None) -> None:
    """List API keys (never their secrets)."""
    out(call(obj, "GET", "/keys", params={"team": team} if team else {}), as_json, _KEY)


@click.option("--expires-at", default=None, help="ISO date and time with a timezone (default: never).")
@click.option("--model", "models", multiple=True, help="A model the key may use (repeat; default: all).")
@click.option("--name", default=None, help="Key name (and service account name when one is created).")
@click.option("--role", default=None, help="Create a service account with this role in --team for the key.")
@click.option("--principal", "principal_id", default=None, help="Principal the key belongs to.")
@click.option("--team", default=None, help="Team the key acts for (default: the caller's).")
@command(keys, "create")
def keys_create(
    obj: Context,
    as_json: bool,
    team: str | None,
    principal_id: str | None,
    role: str | None,
    name: str | None,
    models: tuple[str, ...],
    expires_at: str | None,
) -> None:
    """Create an API key; its secret is printed once. With --role, for a new service account."""
    if role is not None:
        if principal_id is not None or team is None:
            raise click.UsageError("--role creates a service account: give --team, not --principal")
        account = call(obj, "POST", "/principals", json={"kind": "service", "name": name or f"{team}-{role}"})
        principal_id = account["id"]
        call(obj, "POST", f"/teams/{team}/members", json={"principal_id": principal_id, "role": role})
    body: dict[str, Any] = {"team": team, "principal_id": principal_id, "name": name or "key"}
    if models:
        body["allowed_models"] = list(models)
    if expires_at:
        body["expires_at"] = expires_at
    created = call(obj, "POST", "/keys", json=body)
    if as_json:
        out(created, True, [])
        return
    click.echo(f"{created['key']}")
    click.echo(f"(key {created['id']} for team {created['team_id']}; the secret is shown only now)", err=True)


@click.argument("key_id")
@command(keys, "show")
def keys_show(obj: Context, as_json: bool, key_id: str) -> None:
    """Show an API key (never its secret)."""
    out(call(obj, "GET", f"/keys/{key_id}"), as_json, [*_KEY, "allowed_models", "last_used_at"])


@click.option("--all-models", is_flag=True, help="Let the key use every model its team may use.")
@click.option("--model", "models", multiple=True, help="Models the key may use (repeat; replaces the list).")
@click.option("--expires-at", default=None, help="ISO date and time with a timezone; 'never' removes it.")
@click.option("--name", default=None, help="New name.")
@click.argument("key_id")
@command(keys, "update")
def keys_update(
    obj: Context,
    as_json: bool,
    key_id: str,
    name: str | None,
    expires_at: str | None,
    models: tuple[str, ...],
    all_models: bool,
) -> None:
    """Rename a key, change its expiry or the models it may use (applies at the next request)."""
    if models and all_models:
        raise click.UsageError("give --model or --all-models, not both")
    body: dict[str, Any] = {} if name is None else {"name": name}
    if expires_at is not None:
        body["expires_at"] = None if expires_at == "never" else expires_at
    if models or all_models:
        body["allowed_models"] = list(models) if models else None
    out(call(obj, "PATCH", f"/keys/{key_id}", json=body), as_json, [*_KEY, "allowed_models"])


@click.argument("key_id")
@command(keys, "revoke")
def keys_revoke(obj: Context, as_json: bool, key_id: str) -> None:
    """Revoke an API key: refused from the next request on, on every replica."""
    out(call(obj, "DELETE", f"/keys/{key_id}"), as_json, ["id", "name", "revoked_at"])
