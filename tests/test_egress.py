"""The egress policy: the allow-list derived from the configuration, Socle's own clients refusing other
hosts (in-process), and process-wide enforcement (audit hook and guarded uvloop) in a subprocess set up
exactly as ``socle serve`` sets itself up; then ``socle serve`` itself with the policy on.

Loopback has many addresses (127.0.0.0/8): with ``allow_loopback = false`` and only 127.0.0.1 allowed,
a mock listening on 127.0.0.2 stands for a host outside the allow-list, and proves on the wire that a
refused connection sent nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

import socle
from socle import egress
from socle.config import OpenAICompatEngineConfig, load_settings
from socle.engines.base import ChatInput, SamplingParams
from socle.engines.openai_compat import OpenAICompatEngine
from socle.errors import EngineError
from socle.governance.alerts import Alert, WebhookSink
from socle.testing.mock_upstream import mock_upstream
from socle.testing.process import SocleProcess
from tests.conftest import ADMIN_KEY

REQUEST = ChatInput("m", ({"role": "user", "content": "EGRESS-MARKER"},), SamplingParams(max_tokens=4))
ROOT = Path(socle.__file__).resolve().parents[1]


class Sink:
    def __init__(self) -> None:
        self.refusals: list[egress.EgressRefusal] = []

    def egress_refused(self, refusal: egress.EgressRefusal) -> None:
        self.refusals.append(refusal)


def test_policy_matches_names_addresses_networks_and_loopback() -> None:
    policy = egress.EgressPolicy(["VLLM.internal.", "10.1.0.0/16", "192.0.2.7", "[2001:db8::1]"])
    assert policy.allows("vllm.internal") and policy.allows(b"vllm.INTERNAL")
    assert policy.allows("10.1.200.3") and not policy.allows("10.2.0.1")
    assert policy.allows("192.0.2.7") and policy.allows("2001:db8::1") and not policy.allows("192.0.2.8")
    assert policy.allows("127.0.0.1") and policy.allows("localhost") and policy.allows("::1")
    assert not policy.allows("huggingface.co") and not policy.allows("vllm.internal.evil.com")
    assert not policy.allows("198.51.100.9")
    policy.learn("vllm.internal", ["198.51.100.9"])
    policy.learn("evil.com", ["203.0.113.1"])  # only allowed names' addresses are learned
    assert policy.allows("198.51.100.9") and not policy.allows("203.0.113.1")
    strict = egress.EgressPolicy([], allow_loopback=False)
    assert not strict.allows("127.0.0.1") and not strict.allows("localhost") and strict.allows(None)


def test_allow_list_is_derived_from_the_configuration() -> None:
    settings = load_settings(
        None,
        environ={},
        engines=[
            {
                "kind": "openai_compat",
                "name": "a",
                "zone": "eu",
                "base_url": "https://api.mistral.example/v1",
            },
            {"kind": "openai_compat", "name": "b", "zone": "on-prem", "base_url": "http://10.0.0.5:8000/v1"},
            {"kind": "fake", "name": "f"},
        ],
        alerts={"webhook_url": "https://hooks.internal/socle", "smtp_host": "smtp.internal"},
        oidc={"issuer": "https://idp", "audience": "socle", "jwks_url": "https://idp.internal/jwks"},
        database_url="postgresql://u:p@db1.internal:5432,db2.internal/socle?host=/run/postgresql",
        redis_url="redis://:pw@redis.internal:6379/0",
        residency={"egress": {"allow_hosts": ["proxy.internal", "10.9.0.0/24"]}},
    )
    assert egress.allowed_hosts(settings) == [
        "10.0.0.5",
        "10.9.0.0/24",
        "api.mistral.example",
        "db1.internal",
        "db2.internal",
        "hooks.internal",
        "idp.internal",
        "proxy.internal",
        "redis.internal",
        "smtp.internal",
    ]
    assert egress.allowed_hosts(load_settings(None, environ={})) == []  # the embedded defaults: nothing


@pytest.fixture
def guard() -> Iterator[tuple[egress.EgressGuard, Sink]]:
    sink = Sink()
    active = egress.EgressGuard(egress.EgressPolicy(["127.0.0.1"], allow_loopback=False), sink)
    egress.activate(active)
    try:
        yield active, sink
    finally:
        egress.deactivate()


@pytest.mark.anyio
async def test_socles_clients_refuse_hosts_outside_the_list(guard: tuple[egress.EgressGuard, Sink]) -> None:
    _, sink = guard
    with mock_upstream(host="127.0.0.1") as allowed, mock_upstream(host="127.0.0.2") as outside:
        outside.state.received = bytearray()
        engines = {
            name: OpenAICompatEngine(OpenAICompatEngineConfig(name=name, zone="on-prem", base_url=url))
            for name, url in [
                ("allowed", allowed.base_url),
                ("outside", outside.base_url),
                ("tls", f"https://127.0.0.2:{outside.port}/v1"),
            ]
        }
        for engine in engines.values():
            await engine.start()
        try:
            assert (await engines["allowed"].chat(REQUEST)).text
            for name in ("outside", "tls"):
                with pytest.raises(EngineError, match="egress policy"):
                    await engines[name].chat(REQUEST)
            with pytest.raises(egress.EgressRefusedError):
                await WebhookSink(f"http://127.0.0.2:{outside.port}/hook", "s").deliver(
                    Alert(kind="k", subject="s", threshold=1, period="p", message="m")
                )
        finally:
            for engine in engines.values():
                await engine.aclose()
        assert outside.state.received == b""
    assert [(r.host, r.via) for r in sink.refusals] == [
        ("127.0.0.2", "engine http client"),
        ("127.0.0.2", "engine tls"),
        ("127.0.0.2", "alert webhook"),
    ]


_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket, sys, urllib.request
    import httpx, uvloop
    from socle import egress
    from socle.config import load_settings

    allowed_port, outside_port = int(sys.argv[1]), int(sys.argv[2])
    settings = load_settings(None, environ={}, engines=[{"kind": "openai_compat", "name": "up",
        "zone": "eu", "base_url": f"http://127.0.0.1:{allowed_port}/v1"}],
        residency={"egress": {"allow_loopback": False}})

    class Sink:
        def egress_refused(self, refusal):
            print(json.dumps({"refused": refusal.host, "via": refusal.via}), flush=True)

    guard = egress.enforce(settings, Sink())
    results = {}

    def outcome(exc):
        refused = "egress policy" in str(exc) or "egress policy" in str(getattr(exc, "reason", ""))
        return "refused" if refused else type(exc).__name__

    def attempt(name, fn):
        try:
            fn()
            results[name] = "ok"
        except (OSError, httpx.HTTPError) as exc:
            results[name] = outcome(exc)

    attempt("socket_allowed", lambda: socket.create_connection(("127.0.0.1", allowed_port), 5).close())
    attempt("socket_outside", lambda: socket.create_connection(("127.0.0.2", outside_port), 5).close())
    attempt("connect_outside", lambda: socket.socket().connect(("127.0.0.2", outside_port)))
    attempt("lookup_outside", lambda: socket.getaddrinfo("huggingface.co", 443))
    attempt("lookup_localhost", lambda: socket.getaddrinfo("localhost", 80))
    attempt("urllib_outside", lambda: urllib.request.urlopen(f"http://127.0.0.2:{outside_port}/", timeout=5))
    attempt("httpx_outside", lambda: httpx.get(f"http://127.0.0.2:{outside_port}/v1/models", timeout=5))

    async def loop_checks():
        async def connect(host, port):
            reader, writer = await asyncio.open_connection(host, port)
            writer.close()
        for name, host, port in [("loop_allowed", "127.0.0.1", allowed_port),
                                 ("loop_outside", "127.0.0.2", outside_port),
                                 ("loop_lookup_outside", "huggingface.co", 443)]:
            try:
                await connect(host, port)
                results[name] = "ok"
            except OSError as exc:
                results[name] = outcome(exc)
        results["loop_class"] = type(asyncio.get_running_loop()).__name__

    with asyncio.Runner(loop_factory=egress.guarded_loop(uvloop.Loop)) as runner:
        runner.run(loop_checks())
    print(json.dumps({"results": results, "refusals": guard.refusals}), flush=True)
    """
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCLE_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def test_process_wide_enforcement_refuses_and_reports() -> None:
    with mock_upstream(host="127.0.0.1") as allowed, mock_upstream(host="127.0.0.2") as outside:
        outside.state.received = bytearray()
        run = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(allowed.port), str(outside.port)],
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert outside.state.received == b""
        assert allowed.state.connections == 2  # the plain socket and the event loop's
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    summary: dict[str, Any] = lines[-1]
    assert summary["results"] == {
        "socket_allowed": "ok",
        "socket_outside": "refused",
        "connect_outside": "refused",
        "lookup_outside": "refused",
        "lookup_localhost": "refused",
        "urllib_outside": "refused",
        "httpx_outside": "refused",
        "loop_allowed": "ok",
        "loop_outside": "refused",
        "loop_lookup_outside": "refused",
        "loop_class": "GuardedLoop",
    }
    refused = [(line["refused"], line["via"]) for line in lines[:-1]]
    assert refused == [
        ("127.0.0.2", "socket.getaddrinfo"),  # create_connection resolves first, even an address
        ("127.0.0.2", "socket.connect"),
        ("huggingface.co", "socket.getaddrinfo"),
        ("localhost", "socket.getaddrinfo"),
        ("127.0.0.2", "socket.getaddrinfo"),  # urllib
        ("127.0.0.2", "socket.getaddrinfo"),  # httpx (sync)
        ("127.0.0.2", "loop.create_connection"),
        ("huggingface.co", "loop.create_connection"),
    ]
    assert summary["refusals"] == len(refused)


def test_serve_enforces_the_policy_and_reaches_allowed_engines(tmp_path: Path) -> None:
    with mock_upstream(host="127.0.0.1") as upstream:
        (tmp_path / "socle.toml").write_text(
            textwrap.dedent(
                f"""
                [[engines]]
                kind = "openai_compat"
                name = "up"
                zone = "eu"
                base_url = "{upstream.base_url}"

                [residency.egress]
                allow_loopback = false
                """
            )
        )
        env = _env() | {"SOCLE_ADMIN_KEY": ADMIN_KEY}
        with SocleProcess(["serve", "--data-dir", str(tmp_path / "data")], env=env, cwd=tmp_path) as server:
            client = openai.OpenAI(base_url=server.url + "/v1", api_key=ADMIN_KEY, max_retries=0)
            answer = client.chat.completions.create(model="up", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
            output = server.output()
    assert "Egress policy: enforced; allowed hosts: 127.0.0.1." in output
    assert upstream.state.requests == 1
