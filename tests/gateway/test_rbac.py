"""RBAC: every route declares its action, and each role gets exactly what its actions allow."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from socle.config import load_settings
from socle.errors import BadRequestError
from socle.gateway.app import create_app
from socle.gateway.deps import declared_actions
from socle.governance.rbac import ACTIONS, ROLES, allowed, check_compatible
from socle.testing.server import RunningServer, run_server
from tests.conftest import ADMIN_KEY, fake_engines

# Routes FastAPI adds itself (schema and docs) and the console's static files are public by design.
FRAMEWORK_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/console/static"}
# Public routes: probes, and the console's shell and pre-login configuration (no data).
PUBLIC_ROUTES = {"/healthz", "/readyz", "/metrics", "/", "/console/config.json"}


def _api_routes() -> list[tuple[str, str, str | None]]:
    app = create_app(load_settings(None, environ={}))
    routes = []
    for path, route, declared in declared_actions(app.routes):
        if not isinstance(route, APIRoute):
            assert path in FRAMEWORK_ROUTES, f"unexpected non-API route {route}"
            continue
        assert len(declared) == 1, f"{path} must declare exactly one action, found {declared or 'none'}"
        action = declared.pop()
        routes.extend((method, path, action) for method in sorted(route.methods))
    return routes


ROUTES = _api_routes()


def test_every_route_declares_one_known_action() -> None:
    assert len(ROUTES) > 10
    for method, path, action in ROUTES:
        assert action is None or action in ACTIONS, (method, path, action)
        if action is None:
            assert path in PUBLIC_ROUTES, f"{path} is public but is not a probe or the console shell"


def test_roles_and_separation_of_duties() -> None:
    assert allowed(["admin"], "audit.read") and not allowed(["member"], "keys.manage")
    assert not allowed(["nonexistent"], "model.use") and not allowed(["admin"], "no.such.action")
    with pytest.raises(BadRequestError, match="Separation of duties"):
        check_compatible(["auditor", "admin"], [["auditor", "admin"]])
    with pytest.raises(BadRequestError, match="Unknown role"):
        check_compatible(["wizard"], [])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path_factory.mktemp("rbac"),
        admin_key=ADMIN_KEY,
        port=0,
        **fake_engines(),
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def role_keys(server: RunningServer) -> dict[str, str]:
    """One key per role, each for a fresh principal bound to that single role in team 'matrix'."""

    async def make() -> dict[str, str]:
        services = server.services
        admin = await services.keys.authenticate(ADMIN_KEY)
        directory = services.directory
        team = await directory.create_team(admin.org_id, "matrix")
        keys = {}
        for role in ROLES:
            principal = await directory.create_principal(admin.org_id, "user", f"{role}-user")
            await directory.bind(admin.org_id, team.id, principal.id, role)
            keys[role], _ = await services.keys.create_key(principal.id, team.id, f"{role} key")
        return keys

    return server.run(make())


def _body(path: str) -> dict[str, Any] | None:
    if path.endswith("/chat/completions"):
        return {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}]}
    if path.endswith("/completions"):
        return {"model": "fake-chat", "prompt": "x"}
    if path.endswith("/embeddings"):
        return {"model": "fake-chat", "input": "x"}
    return {}


@pytest.mark.parametrize("role", list(ROLES))
def test_role_route_matrix(server: RunningServer, role_keys: dict[str, str], role: str) -> None:
    headers = {"authorization": f"Bearer {role_keys[role]}"}
    for method, path, action in ROUTES:
        url = server.url + path.replace("{", "").replace("}", "")  # path parameters become literal names
        response = httpx.request(method, url, headers=headers, json=_body(path) if method != "GET" else None)
        assert response.status_code != 500, (role, method, path, response.text)
        denied = response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
        expected_denied = action is not None and not allowed([role], action)
        assert denied == expected_denied, (role, method, path, action, response.status_code, response.text)


def test_no_key_is_401_on_every_protected_route(server: RunningServer) -> None:
    for method, path, action in ROUTES:
        if action is None:
            continue
        response = httpx.request(method, server.url + path.replace("{", "").replace("}", ""))
        assert response.status_code == 401, (method, path, response.status_code)
