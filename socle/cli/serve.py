"""``socle serve``: run the gateway."""

from __future__ import annotations

from pathlib import Path

import click
import uvicorn

from socle.cli.options import config_options, settings_from
from socle.gateway.app import create_app
from socle.gateway.services import Services

__all__ = ["serve"]


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default 8000].")
@config_options
def serve(host: str | None, port: int | None, config_file: Path | None, data_dir: Path | None) -> None:
    """Start Socle: the OpenAI-compatible API, with the configured engines loaded."""
    settings = settings_from(config_file, host=host, port=port, data_dir=data_dir)

    def announce(services: Services) -> None:
        base = f"http://{settings.host}:{settings.port}"
        click.echo(f"Socle is ready on {base}/v1 (data in {settings.resolved_data_dir})", err=True)
        click.echo(f"Models: {', '.join(services.router.pools)}", err=True)
        click.echo(f"Admin API key: {services.bootstrap.describe()}", err=True)

    app = create_app(settings, on_started=announce)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
