"""``socle engines check``: load and probe every configured engine, without starting a server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import click
import orjson

from socle.cli.options import config_options, json_option, settings_from
from socle.config import Settings
from socle.engines import build_engine
from socle.engines.base import ChatInput, SamplingParams
from socle.errors import SocleError

__all__ = ["engines"]


@click.group()
def engines() -> None:
    """Inspect the configured engines."""


@engines.command("check")
@config_options
@json_option
def check(config_file: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Load each configured engine, verify its model file, and probe it with a tiny request."""
    settings = settings_from(config_file, data_dir=data_dir)
    results = asyncio.run(_check_all(settings))
    if as_json:
        click.echo(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())
    else:
        for r in results:
            status = "ok" if r["ok"] else f"FAILED: {r['error']}"
            click.echo(
                f"{r['engine']:<16} {r['kind']:<14} zone={r['zone']:<12} {r['model_id']:<24.24} {status}"
            )
    if not all(r["ok"] for r in results):
        raise SystemExit(1)


async def _check_all(settings: Settings) -> list[dict[str, Any]]:
    return [await _check_one(config) for config in settings.engines]


async def _check_one(config: Any) -> dict[str, Any]:
    result: dict[str, Any] = {"engine": config.name, "kind": config.kind, "zone": config.zone, "model_id": ""}
    engine = build_engine(config)
    started = time.perf_counter()
    try:
        await engine.start()
        result["model_id"] = engine.model_id
        result["load_s"] = round(time.perf_counter() - started, 3)
        health = await engine.health()
        if not health.ok:
            raise SocleError(f"unhealthy: {health.detail}")
        probe = time.perf_counter()
        if "chat" in engine.capabilities:
            answer = await engine.chat(
                ChatInput(
                    config.name, ({"role": "user", "content": "Say hello."},), SamplingParams(max_tokens=4)
                )
            )
            result["probe"] = answer.text
        elif "embeddings" in engine.capabilities:
            vectors = await engine.embed(config.name, ["probe"])
            result["probe"] = f"{len(vectors.vectors[0])}-dimensional vector"
        result["probe_s"] = round(time.perf_counter() - probe, 3)
        result["ok"] = True
    except SocleError as exc:
        result.update(ok=False, error=exc.message)
    finally:
        await engine.aclose()
    return result
