"""``socle serve``: run the gateway.

The services (database, migrations, engines) are started before the HTTP server, so a start-up
failure (a tampered model file, an unreachable database) ends the command with one clear message
rather than a server that half-started.
"""

from __future__ import annotations

from pathlib import Path

import click

from socle.cli.options import config_options, settings_from
from socle.config import Settings
from socle.errors import SocleError

__all__ = ["serve"]


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default 8000].")
@config_options
def serve(host: str | None, port: int | None, config_file: Path | None, data_dir: Path | None) -> None:
    """Start Socle: the OpenAI-compatible API, with the configured engines loaded."""
    import uvloop  # imported here so that other commands start fast

    settings = settings_from(config_file, host=host, port=port, data_dir=data_dir)
    try:
        uvloop.run(_serve(settings))
    except SocleError as exc:
        raise click.ClickException(exc.message + (f" ({exc.detail})" if exc.detail else "")) from exc
    except KeyboardInterrupt:
        pass


async def _serve(settings: Settings) -> None:
    import uvicorn

    from socle.gateway.app import create_app
    from socle.gateway.services import Services

    click.echo(f"Starting Socle (data in {settings.resolved_data_dir})...", err=True)
    services = await Services.start(settings)
    try:
        # Closed by the app's shutdown: uvicorn ends the process by re-raising SIGTERM or SIGINT once
        # it has stopped, so code after serve() may never run, and the services must be closed before
        # (the usage recorder writes its last records then). The finally below covers failed starts.
        app = create_app(settings, services=services, close_services=True)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            http="httptools",
            access_log=False,
            log_level=settings.log_level,
            lifespan="on",
            timeout_graceful_shutdown=10,
        )
        server = uvicorn.Server(config)
        base = f"http://{settings.host}:{settings.port}"
        click.echo(f"Models: {', '.join(services.router.pools)}", err=True)
        click.echo(f"Admin API key: {services.bootstrap.describe()}", err=True)
        click.echo(f"Socle is serving the OpenAI-compatible API on {base}/v1", err=True)
        await server.serve()
    finally:
        await services.aclose()  # a no-op once the app's shutdown has closed them
