"""``socle models``: the models a key may use, and which teams may use which models (admins).

``socle models`` alone lists the models the calling key may use (``GET /v1/models``); ``grant``,
``revoke`` and ``access`` manage model access (``/v1/admin/teams/{team}/models``,
``/v1/admin/model-access``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import orjson

from socle.cli.adminkit import Context, call, command, out
from socle.cli.client import server_options
from socle.cli.options import json_option

__all__ = ["models"]


def _print_models(obj: Context, as_json: bool) -> None:
    data = call(obj, "GET", "/models", prefix="")["data"]
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    for model in data:
        engines = ", ".join(
            f"{e['name']} ({e['zone']}{'' if e['healthy'] else ', unhealthy'})" for e in model["engines"]
        )
        click.echo(f"{model['id']:<28} {'/'.join(model['capabilities']):<28} {engines}")


@click.group(invoke_without_command=True)
@json_option
@server_options
@click.pass_context
def models(ctx: click.Context, as_json: bool, url: str, key: str | None, data_dir: Path) -> None:
    """List the models a running Socle server offers to this key; manage model access (admin)."""
    if ctx.invoked_subcommand is None:
        _print_models({"url": url, "key": key, "data_dir": data_dir}, as_json)


@command(models, "list")
def models_list(obj: Context, as_json: bool) -> None:
    """List the models this key may use (its key's allowed models and its team's model access)."""
    _print_models(obj, as_json)


@click.option("--team", required=True, help="Team (id or name).")
@click.argument("model")
@command(models, "grant")
def models_grant(obj: Context, as_json: bool, team: str, model: str) -> None:
    """Let a team use a model. A model granted to some teams is closed to the others."""
    out(call(obj, "PUT", f"/teams/{team}/models/{model}"), as_json, ["team", "model", "created_at"])


@click.option("--reopen", is_flag=True, help="Allow removing the last grant (opens the model to all).")
@click.option("--team", required=True, help="Team (id or name).")
@click.argument("model")
@command(models, "revoke")
def models_revoke(obj: Context, as_json: bool, team: str, model: str, reopen: bool) -> None:
    """Take a model away from a team (applies within governance_cache_s on every replica)."""
    params = {"reopen": "true"} if reopen else {}
    data = call(obj, "DELETE", f"/teams/{team}/models/{model}", params=params)
    out(data, as_json, ["model", "restricted", "teams"])


@click.option("--team", default=None, help="Show what this team may use.")
@click.argument("model", required=False)
@command(models, "access")
def models_access(obj: Context, as_json: bool, team: str | None, model: str | None) -> None:
    """Who may use which model: per team (--team), or per model (restricted, teams granted)."""
    data: Any
    if team is not None:
        data = call(obj, "GET", f"/teams/{team}/models")
        if model is not None:
            data = {"object": "list", "data": [m for m in data["data"] if m["model"] == model]}
        out(data, as_json, ["model", "allowed", "granted", "restricted"])
        return
    data = call(obj, "GET", "/model-access", params={"model": model} if model else {})
    out(data, as_json, ["model", "restricted", "teams"])
