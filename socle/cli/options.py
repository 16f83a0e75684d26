"""Options shared by several commands, and the one way commands build settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from socle.config import Settings, load_settings
from socle.errors import ConfigError

__all__ = ["config_options", "json_option", "settings_from"]

F = TypeVar("F", bound=Callable[..., Any])


def config_options(fn: F) -> F:
    """``--config`` and ``--data-dir``, the options that select a configuration."""
    fn = click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data directory [env SOCLE_HOME; default ./.socle].",
    )(fn)
    fn = click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="TOML configuration file [env SOCLE_CONFIG; default ./socle.toml if present].",
    )(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def settings_from(config_file: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config_file, **overrides)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from exc
