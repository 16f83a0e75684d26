"""The ``socle`` command line: one module per command group."""

from __future__ import annotations

import click

from socle import __version__
from socle.cli import (
    admin,
    audit,
    client,
    config_cmd,
    engines_cmd,
    guard_cmd,
    kb,
    models_cmd,
    quotas_cmd,
    serve,
)

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="socle")
def cli() -> None:
    """Socle: the sovereign AI platform (OpenAI-compatible gateway, knowledge base, governance)."""


cli.add_command(serve.serve)
cli.add_command(client.chat)
cli.add_command(models_cmd.models)
cli.add_command(config_cmd.config)
cli.add_command(engines_cmd.engines)
cli.add_command(admin.orgs)
cli.add_command(admin.teams)
cli.add_command(admin.users)
cli.add_command(admin.keys)
cli.add_command(quotas_cmd.usage)
cli.add_command(quotas_cmd.budgets)
cli.add_command(quotas_cmd.limits)
cli.add_command(guard_cmd.guard)
cli.add_command(audit.audit)
cli.add_command(kb.kb)


def main() -> None:
    cli()
