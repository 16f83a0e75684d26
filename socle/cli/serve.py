"""``socle serve``: run the gateway.

The services (database, migrations, engines) are started before the HTTP server, so a start-up
failure (a tampered model file, an unreachable database) ends the command with one clear message
rather than a server that half-started.

Before anything else, the egress policy is enforced (unless ``residency.egress.enforce = false``): the
process may then only connect to the hosts its configuration names (see :mod:`socle.egress`).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from socle import egress
from socle.cli.options import config_options, settings_from
from socle.config import Settings
from socle.errors import SocleError

__all__ = ["serve"]

GIL_SWITCH_INTERVAL_S = 0.0005
"""How long the event loop may keep the GIL while a worker thread (database writes, llama.cpp, the
embedder) waits for it. Python's default, 5 ms, is paid by each statement a worker thread runs while
the loop is busy: under load a ten-statement budget transaction took ~50 ms that way instead of ~1 ms."""


@click.command()
@click.option("--host", default=None, help="Address to listen on [default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to listen on [default 8000].")
@config_options
def serve(host: str | None, port: int | None, config_file: Path | None, data_dir: Path | None) -> None:
    """Start Socle: the OpenAI-compatible API, with the configured engines loaded."""
    import uvloop  # imported here so that other commands start fast

    settings = settings_from(config_file, host=host, port=port, data_dir=data_dir)
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    guard = egress.enforce(settings)
    if guard is None:
        click.echo("Egress policy: off (residency.egress.enforce = false).", err=True)
    else:
        hosts = ", ".join(guard.policy.hosts) or "none"
        loopback = " and loopback" if guard.policy.allow_loopback else ""
        click.echo(f"Egress policy: enforced; allowed hosts: {hosts}{loopback}.", err=True)
    loop_factory = uvloop.new_event_loop if guard is None else egress.guarded_loop(uvloop.Loop)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(settings))
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
