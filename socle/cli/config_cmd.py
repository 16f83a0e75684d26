"""``socle config``: inspect the effective configuration."""

from __future__ import annotations

from pathlib import Path

import click
import orjson

from socle.cli.options import config_options, settings_from

__all__ = ["config"]


@click.group()
def config() -> None:
    """Inspect the configuration."""


@config.command("show")
@config_options
def show(config_file: Path | None, data_dir: Path | None) -> None:
    """Print the effective configuration (file + SOCLE_* environment + defaults) as JSON, secrets masked."""
    settings = settings_from(config_file, data_dir=data_dir)
    click.echo(orjson.dumps(settings.public_dump(), option=orjson.OPT_INDENT_2).decode())
