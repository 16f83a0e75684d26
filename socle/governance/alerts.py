"""Alerts: budget thresholds and limit hits, delivered once per threshold and period to the sinks.

An alert is identified by ``(kind, subject, threshold, period)``: for example
``("budget.threshold", "budget:<id>", 80, "2026-11")``. :meth:`Alerts.emit` inserts it into the
``alerts`` table, whose unique key makes delivery happen **once** across every replica: the replica
whose insert wins delivers, the others see the conflict and do nothing. Delivery runs in the
background, off the request path; a failed sink is logged and retried a few times, and the alert
row records which sinks succeeded.

Sinks:

- **log**: a WARNING on the ``socle.alerts`` logger (always on unless disabled);
- **webhook**: an internal URL receiving the alert as JSON, signed with HMAC-SHA256 over the exact
  body bytes: header ``X-Socle-Signature: sha256=<hex>`` and ``X-Socle-Timestamp`` (the signature covers
  ``timestamp + "." + body`` so that a captured request cannot be replayed later with a new date);
- **smtp**: an e-mail through the organisation's relay (STARTTLS when configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any, Protocol

import httpx
import orjson
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from socle import egress
from socle.config import AlertSettings
from socle.storage.db import Database
from socle.storage.models import AlertRow
from socle.storage.types import utcnow

__all__ = ["Alert", "AlertSink", "Alerts", "LogSink", "SmtpSink", "WebhookSink", "build_sinks", "sign"]

log = logging.getLogger("socle.alerts")
_ATTEMPTS = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    kind: str
    subject: str
    threshold: int
    period: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)

    def payload(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "threshold": self.threshold,
            "period": self.period,
            "message": self.message,
            "data": self.data,
            "created_at": self.created_at.isoformat(),
        }


class AlertSink(Protocol):
    name: str

    async def deliver(self, alert: Alert) -> None: ...


class LogSink:
    name = "log"

    async def deliver(self, alert: Alert) -> None:
        log.warning(
            "ALERT %s %s (%s%%, %s): %s",
            alert.kind,
            alert.subject,
            alert.threshold,
            alert.period,
            alert.message,
        )


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The webhook signature: hex HMAC-SHA256 of ``timestamp.body``."""
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSink:
    name = "webhook"

    def __init__(self, url: str, secret: str, timeout_s: float = 10.0) -> None:
        self._url = url
        self._secret = secret.encode()
        self._timeout = timeout_s

    async def deliver(self, alert: Alert) -> None:
        body = orjson.dumps(alert.payload())
        timestamp = str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "x-socle-timestamp": timestamp,
            "x-socle-signature": "sha256=" + sign(self._secret, timestamp, body),
        }
        egress.check_url(self._url, via="alert webhook")
        async with httpx.AsyncClient(timeout=self._timeout, trust_env=False) as client:
            response = await client.post(self._url, content=body, headers=headers)
            response.raise_for_status()


class SmtpSink:
    name = "smtp"

    def __init__(self, settings: AlertSettings) -> None:
        self._settings = settings

    async def deliver(self, alert: Alert) -> None:
        await asyncio.to_thread(self._send, alert)

    def _send(self, alert: Alert) -> None:
        s = self._settings
        assert s.smtp_host is not None and s.smtp_from is not None
        egress.check(s.smtp_host, s.smtp_port, via="alert smtp")
        message = EmailMessage()
        message["From"] = s.smtp_from
        message["To"] = ", ".join(s.smtp_to)
        message["Subject"] = f"[Socle] {alert.kind}: {alert.subject} at {alert.threshold}%"
        message.set_content(
            alert.message + "\n\n" + orjson.dumps(alert.payload(), option=orjson.OPT_INDENT_2).decode()
        )
        with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=10) as smtp:
            if s.smtp_starttls:
                smtp.starttls()
            if s.smtp_username and s.smtp_password:
                smtp.login(s.smtp_username, s.smtp_password.get_secret_value())
            smtp.send_message(message)


def build_sinks(settings: AlertSettings) -> list[AlertSink]:
    sinks: list[AlertSink] = []
    if settings.log:
        sinks.append(LogSink())
    if settings.webhook_url:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else ""
        sinks.append(WebhookSink(settings.webhook_url, secret))
    if settings.smtp_host and settings.smtp_from and settings.smtp_to:
        sinks.append(SmtpSink(settings))
    return sinks


class Alerts:
    """Emits alerts once, delivers them in the background, lists them for the API."""

    def __init__(self, db: Database, sinks: Sequence[AlertSink], *, retry_delay_s: float = 1.0) -> None:
        self._db = db
        self._sinks = list(sinks)
        self._retry_delay = retry_delay_s
        self._tasks: set[asyncio.Task[None]] = set()

    async def emit(self, alert: Alert) -> bool:
        """Record the alert; deliver it if this is its first emission. Returns whether it was new."""
        row = AlertRow(
            kind=alert.kind,
            subject=alert.subject,
            threshold=alert.threshold,
            period=alert.period,
            message=alert.message,
            data=alert.data,
            created_at=alert.created_at,
        )
        try:
            async with self._db.session() as session:
                session.add(row)
        except IntegrityError:
            return False
        task = asyncio.create_task(self._deliver(row.id, alert), name=f"socle-alert-{row.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _deliver(self, alert_id: str, alert: Alert) -> None:
        delivered: list[str] = []
        for sink in self._sinks:
            for attempt in range(1, _ATTEMPTS + 1):
                try:
                    await sink.deliver(alert)
                    delivered.append(sink.name)
                    break
                except (OSError, httpx.HTTPError, smtplib.SMTPException) as exc:
                    log.error(
                        "alert %s: sink %s failed (attempt %d/%d): %s",
                        alert_id,
                        sink.name,
                        attempt,
                        _ATTEMPTS,
                        exc,
                    )
                    if attempt < _ATTEMPTS:
                        await asyncio.sleep(self._retry_delay * attempt)
        async with self._db.session() as session:
            await session.execute(
                update(AlertRow).where(AlertRow.id == alert_id).values(delivered_to=delivered)
            )

    async def drain(self) -> None:
        """Wait for deliveries under way (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.drain(), 15)

    async def list(self, *, kind: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        query = select(AlertRow).order_by(AlertRow.created_at.desc()).limit(limit)
        if kind is not None:
            query = query.where(AlertRow.kind == kind)
        async with self._db.session() as session:
            rows = await session.scalars(query)
            return [
                {
                    "id": r.id,
                    "object": "alert",
                    "kind": r.kind,
                    "subject": r.subject,
                    "threshold": r.threshold,
                    "period": r.period,
                    "message": r.message,
                    "data": r.data,
                    "created_at": r.created_at,
                    "delivered_to": r.delivered_to,
                }
                for r in rows
            ]
