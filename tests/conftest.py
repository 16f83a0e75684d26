"""Shared fixtures. Database fixtures (SQLite and PostgreSQL from pgserver) come from socle.testing."""

from __future__ import annotations

import secrets
from collections.abc import Callable
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
