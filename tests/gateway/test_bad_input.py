"""Bad input gets a clear 4xx in OpenAI's error format, never a 500, and the server keeps serving."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from socle.testing.server import RunningServer, run_server
from tests.conftest import fake_engines

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    from socle.config import load_settings
    from tests.conftest import ADMIN_KEY

    settings = load_settings(
        None,
        environ={},
        data_dir=tmp_path_factory.mktemp("data"),
        admin_key=ADMIN_KEY,
        port=0,
        max_request_bytes=64 * 1024,
        max_tokens_limit=4096,
        **fake_engines(),
    )
    with run_server(settings) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    headers = {"authorization": f"Bearer {server.admin_key}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        yield client


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    assert body["error"]["message"]
    return dict(body["error"])


def _chat(**extra: Any) -> dict[str, Any]:
    return {"model": "fake-chat", "messages": [{"role": "user", "content": "x"}], **extra}


def test_missing_and_invalid_keys(server: RunningServer) -> None:
    missing = _error(httpx.post(server.url + CHAT, json=_chat()), 401)
    assert missing["code"] == "missing_api_key" and missing["type"] == "authentication_error"
    wrong = httpx.post(server.url + CHAT, json=_chat(), headers={"authorization": "Bearer sk-socle-nope"})
    assert _error(wrong, 401)["type"] == "authentication_error"
    basic = httpx.post(server.url + CHAT, json=_chat(), headers={"authorization": "Basic abc"})
    assert _error(basic, 401)["code"] == "invalid_authorization"


def test_malformed_json(http: httpx.Client) -> None:
    error = _error(
        http.post(
            CHAT,
            content=b'{"model": "fake-chat", "messages": [',
            headers={"content-type": "application/json"},
        ),
        400,
    )
    assert error["code"] == "invalid_json" and "Malformed JSON" in error["message"]


def test_missing_field(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, json={"model": "fake-chat"}), 400)
    assert error["param"] == "messages" and "Missing required parameter" in error["message"]
    assert _error(http.post(CHAT, json={"model": "fake-chat", "messages": []}), 400)["param"] == "messages"


def test_unknown_model(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, json=_chat(model="gpt-17")), 404)
    assert error["code"] == "model_not_found" and "gpt-17" in error["message"]


@pytest.mark.parametrize("value", [-1, 0, "lots", 10**12])
def test_bad_max_tokens(http: httpx.Client, value: Any) -> None:
    error = _error(http.post(CHAT, json=_chat(max_tokens=value)), 400)
    assert error["param"] == "max_tokens"


def test_other_bad_parameters(http: httpx.Client) -> None:
    assert _error(http.post(CHAT, json=_chat(n=2)), 400)["param"] == "n"
    assert _error(http.post(CHAT, json=_chat(temperature=7)), 400)["param"] == "temperature"
    assert _error(http.post(CHAT, json=_chat(stop=["a", "b", "c", "d", "e"])), 400)["param"] == "stop"
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
    assert "image_url" in _error(http.post(CHAT, json=_chat(messages=[image])), 400)["message"]
    bad_role = _error(http.post(CHAT, json=_chat(messages=[{"role": "robot", "content": "x"}])), 400)
    assert bad_role["param"] == "messages.0.role"
    emb = _error(http.post("/v1/embeddings", json={"model": "fake-chat", "input": []}), 400)
    assert emb["param"] == "input"


def test_body_too_large(http: httpx.Client) -> None:
    big = _chat(messages=[{"role": "user", "content": "x" * 70_000}])
    assert _error(http.post(CHAT, json=big), 413)["code"] == "request_too_large"

    def chunks() -> Iterator[bytes]:  # no content-length: the limit holds on actual bytes
        yield b'{"model": "fake-chat", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}]}'

    assert _error(http.post(CHAT, content=chunks(), headers={"content-type": "application/json"}), 413)


def test_unknown_path_and_method(http: httpx.Client) -> None:
    assert _error(http.get("/v1/nothing-here"), 404)["type"] == "invalid_request_error"
    assert _error(http.get(CHAT), 405)


def test_client_disconnect_mid_stream_cancels_engine_work(server: RunningServer, http: httpx.Client) -> None:
    slot = server.services.router.slots["slow"]
    with http.stream("POST", CHAT, json={**_chat(model="slow-chat"), "stream": True}) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        assert slot.in_flight == 1
    deadline = time.monotonic() + 10
    while slot.in_flight and time.monotonic() < deadline:
        time.sleep(0.05)
    assert slot.in_flight == 0, "the engine slot was not released after the client went away"
    assert http.post(CHAT, json=_chat()).status_code == 200


def test_server_still_serves_after_all_this(http: httpx.Client) -> None:
    r = http.post(CHAT, json=_chat())
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
