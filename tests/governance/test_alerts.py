"""Alerts: delivered once per (kind, subject, threshold, period), signed webhooks, real SMTP, on both DBs."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator
from email import message_from_bytes
from typing import Any

import orjson
import pytest
from aiosmtpd.controller import Controller

from socle.config import AlertSettings
from socle.governance.alerts import Alert, Alerts, LogSink, SmtpSink, WebhookSink, build_sinks, sign
from socle.storage.db import Database
from socle.testing.server import free_port

pytestmark = pytest.mark.anyio
SECRET = "webhook-secret"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["content-length"]))
            received.append({"body": body, "headers": dict(self.headers)})
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp() -> Iterator[tuple[int, list[bytes]]]:
    messages: list[bytes] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            messages.append(envelope.content)
            return "250 OK"

    port = free_port()
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port, messages
    controller.stop()


def _alert(threshold: int = 80, period: str = "2026-11") -> Alert:
    return Alert(
        kind="budget.threshold",
        subject="budget:research-monthly",
        threshold=threshold,
        period=period,
        message="Team research has used 80% of its monthly budget (40.00 of 50.00 EUR).",
        data={"team": "research", "spent_eur": "40.00"},
    )


async def test_delivered_once_per_threshold_and_period(database: Database, webhook: Any, smtp: Any) -> None:
    url, received = webhook
    port, mails = smtp
    settings = AlertSettings(
        webhook_url=url,
        webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=port,
        smtp_from="socle@example.eu",
        smtp_to=["ops@example.eu"],
    )
    sinks = build_sinks(settings)
    assert [type(s) for s in sinks] == [LogSink, WebhookSink, SmtpSink]
    alerts = Alerts(database, sinks)
    results = await asyncio.gather(*(alerts.emit(_alert()) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert await alerts.emit(_alert(threshold=100)) is True
    assert await alerts.emit(_alert(period="2026-12")) is True
    await alerts.drain()
    assert len(received) == 3 and len(mails) == 3
    first = received[0]
    body, headers = first["body"], {k.lower(): v for k, v in first["headers"].items()}
    assert headers["x-socle-signature"] == "sha256=" + sign(
        SECRET.encode(), headers["x-socle-timestamp"], body
    )
    assert orjson.loads(body)["subject"] == "budget:research-monthly"
    mail = message_from_bytes(mails[0])
    assert mail["To"] == "ops@example.eu" and "budget.threshold" in mail["Subject"]
    listed = await alerts.list()
    assert len(listed) == 3 and all(a["delivered_to"] == ["log", "webhook", "smtp"] for a in listed)


async def test_a_failing_sink_is_retried_then_recorded(database: Database) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    alerts = Alerts(database, [LogSink(), WebhookSink(dead, SECRET)], retry_delay_s=0.01)
    assert await alerts.emit(_alert())
    await alerts.drain()
    [recorded] = await alerts.list()
    assert recorded["delivered_to"] == ["log"]
