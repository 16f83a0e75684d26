"""Helpers for knowledge API tests: a server with fake engines, tenants with keys, waiting for ingestion."""

from __future__ import annotations

import time
from typing import Any

import httpx

from socle.config import FakeEngineConfig, KnowledgeSettings, ModelRoute, Settings, load_settings
from socle.testing.server import RunningServer
from tests.conftest import ADMIN_KEY

TERMINAL_WAIT_S = 60.0


def knowledge_engines(reply: str = "See [1] and also [7].") -> dict[str, Any]:
    """A fake chat model whose reply cites a real and a made-up source, and a fake embeddings model."""
    return {
        "engines": [FakeEngineConfig(name="fake", reply=reply)],
        "models": [ModelRoute(name="fake-chat", engines=["fake"])],
    }


def knowledge_settings(**overrides: Any) -> KnowledgeSettings:
    values: dict[str, Any] = {
        "embedding_model": "fake-chat",
        "answer_model": "fake-chat",
        "poll_interval_s": 0.05,
        "min_similarity": -1.0,
    }
    values.update(overrides)
    return KnowledgeSettings(**values)


def server_settings(data_dir: Any, **knowledge: Any) -> Settings:
    """Settings of a test server with the fake engines and the knowledge base (admin key ADMIN_KEY)."""
    return load_settings(
        None,
        environ={},
        data_dir=data_dir,
        admin_key=ADMIN_KEY,
        port=0,
        knowledge=knowledge_settings(**knowledge),
        **knowledge_engines(),
    )


def make_keys(server: RunningServer, spec: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Keys by name for ``{name: (team, role)}``: teams and principals are created as needed."""

    async def make() -> dict[str, str]:
        services = server.services
        admin = await services.keys.authenticate(server.admin_key)
        directory = services.directory
        teams = {t.name: t for t in await directory.list_teams(admin.org_id)}
        keys = {}
        for name, (team_name, role) in spec.items():
            if team_name not in teams:
                teams[team_name] = await directory.create_team(admin.org_id, team_name)
            principal = await directory.create_principal(admin.org_id, "user", f"{name}-{time.time_ns()}")
            await directory.bind(admin.org_id, teams[team_name].id, principal.id, role)
            keys[name], _ = await services.keys.create_key(principal.id, teams[team_name].id, name)
        return keys

    return server.run(make())


class Client:
    """A tiny API client bound to one key."""

    def __init__(self, server: RunningServer, key: str) -> None:
        self.http = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"}, timeout=60)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.http, name)

    def collection(self, name: str, **body: Any) -> dict[str, Any]:
        response = self.http.post("/v1/collections", json={"name": name, **body})
        assert response.status_code == 201, response.text
        return dict(response.json())

    def upload(self, collection: str, files: dict[str, bytes], **form: str) -> list[dict[str, Any]]:
        response = self.http.post(
            f"/v1/collections/{collection}/documents",
            files=[("file", (name, data)) for name, data in files.items()],
            data=form,
        )
        assert response.status_code == 202, response.text
        return list(response.json()["data"])

    def wait(self, collection: str, document: str, *, until: tuple[str, ...] = ()) -> dict[str, Any]:
        """Poll a document until its status leaves queued/processing (or is one of ``until``)."""
        deadline = time.monotonic() + TERMINAL_WAIT_S
        while True:
            body = self.http.get(f"/v1/collections/{collection}/documents/{document}").json()
            if body["status"] in until or (not until and body["status"] not in ("queued", "processing")):
                return dict(body)
            assert time.monotonic() < deadline, body
            time.sleep(0.05)

    def search(self, query: str, **body: Any) -> list[dict[str, Any]]:
        response = self.http.post("/v1/search", json={"query": query, **body})
        assert response.status_code == 200, response.text
        return list(response.json()["data"])
