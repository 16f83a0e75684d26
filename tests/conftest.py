"""Shared fixtures. Database fixtures (SQLite and PostgreSQL from pgserver) come from socle.testing."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from socle.config import FakeEngineConfig, ModelRoute, Settings, load_settings
from socle.testing.fixtures import (  # noqa: F401
    anyio_backend,
    database,
    database_url,
    module_database_url,
    pg_server,
)
from socle.testing.server import RunningServer, run_server

ADMIN_KEY = "sk-socle-" + secrets.token_urlsafe(32)


def fake_engines() -> dict[str, Any]:
    """Two fake chat engines behind one public model, for API tests that do not need a real model."""
    return {
        "engines": [
            FakeEngineConfig(name="fake-a", reply="Bonjour, je suis un moteur factice."),
            FakeEngineConfig(name="fake-b", reply="Bonjour, je suis un moteur factice."),
            FakeEngineConfig(name="slow", reply=" ".join(["mot"] * 400), token_delay_s=0.02),
        ],
        "models": [
            ModelRoute(name="fake-chat", engines=["fake-a", "fake-b"], aliases=["gpt-4o-mini"]),
            ModelRoute(name="slow-chat", engines=["slow"]),
        ],
    }


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"data_dir": tmp_path / "data", "admin_key": ADMIN_KEY, "port": 0}
        values.update(overrides)
        return load_settings(None, environ={}, **values)

    return make


REPLICA_CACHE_S = 1.0
"""``governance_cache_s`` of the second gateway of :func:`replicas`."""


@pytest.fixture
def replicas(
    make_settings: Callable[..., Settings],
    database_url: str,  # noqa: F811
) -> Iterator[tuple[RunningServer, RunningServer]]:
    """Two gateways with fake engines on one database (SQLite and PostgreSQL); the second reuses what
    it read for ``REPLICA_CACHE_S`` seconds."""
    with (
        run_server(make_settings(database_url=database_url, **fake_engines())) as first,
        run_server(
            make_settings(database_url=database_url, governance_cache_s=REPLICA_CACHE_S, **fake_engines())
        ) as second,
    ):
        yield first, second
