"""What a real `socle serve` process guarantees about usage records (docs/operations.md, Durability):
a graceful stop writes every answered request's record; kill -9 loses only the records still
buffered, fewer than `usage.flush_max_records` and none older than `usage.flush_interval_s`."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from socle.storage.db import Database
from socle.storage.models import UsageRow
from socle.testing.process import SocleProcess
from tests.conftest import ADMIN_KEY

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "un deux trois"}]}


@contextmanager
def serve(tmp_path: Path, database_url: str, interval_s: float, max_records: int) -> Iterator[SocleProcess]:
    (tmp_path / "socle.toml").write_text(
        f'database_url = "{database_url}"\n'
        f"[usage]\nflush_interval_s = {interval_s}\nflush_max_records = {max_records}\n"
        '[[engines]]\nkind = "fake"\nname = "fake"\n'
        '[[models]]\nname = "fake-chat"\nengines = ["fake"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCLE_")}
    env.update(SOCLE_ADMIN_KEY=ADMIN_KEY, PYTHONPATH=str(ROOT))  # this checkout's socle
    with SocleProcess(["serve"], env=env, cwd=tmp_path) as process:
        yield process


def chat(client: httpx.Client) -> str:
    """One answered request: its id."""
    response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    return response.headers["x-request-id"]


def written(database_url: str) -> list[str]:
    """The request ids of the records in the database, oldest first."""

    async def read() -> list[str]:
        async with Database(database_url) as db:
            rows = await db.fetch_all(select(UsageRow.request_id).order_by(UsageRow.created_at))
        return [row[0] for row in rows]

    return asyncio.run(read())


def client_for(process: SocleProcess) -> httpx.Client:
    return httpx.Client(base_url=process.url, headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_graceful_stop_writes_every_answered_request(
    tmp_path: Path, database_url: str, stop: signal.Signals
) -> None:
    with (
        serve(tmp_path, database_url, interval_s=3600, max_records=1000) as process,
        client_for(process) as client,
    ):
        answered = [chat(client) for _ in range(30)]
        time.sleep(0.5)
        assert written(database_url) == []  # still buffered: only the stop can write them
        assert process.process is not None
        process.process.send_signal(stop)
        # uvicorn re-raises the signal once it has shut down cleanly
        assert process.process.wait(timeout=60) in (0, -stop), process.output()
        output = process.output()
        assert "Application shutdown complete" in output
    assert sorted(written(database_url)) == sorted(answered), output


def test_kill_9_loses_only_what_was_buffered(tmp_path: Path, database_url: str) -> None:
    """Fewer than flush_max_records: the writer takes a batch as soon as that many wait."""
    with (
        serve(tmp_path, database_url, interval_s=3600, max_records=10) as process,
        client_for(process) as client,
    ):
        first = [chat(client) for _ in range(20)]  # two full batches: written at once
        deadline = time.monotonic() + 30
        while len(written(database_url)) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        last = [chat(client) for _ in range(7)]  # fewer than a batch, and the timer is an hour away
        time.sleep(0.5)
        assert process.process is not None
        process.process.kill()  # SIGKILL: no shutdown code runs
        process.process.wait(timeout=30)
    kept = written(database_url)
    assert sorted(kept) == sorted(first)  # all that was written before the crash survived
    lost = set(last) - set(kept)
    assert lost == set(last) and 0 < len(lost) < 10  # the buffered records, fewer than a batch


def test_kill_9_keeps_every_record_older_than_the_flush_interval(tmp_path: Path, database_url: str) -> None:
    interval = 0.5
    slack = 1.0  # the time one write may take on a loaded machine: documented as "plus one write"
    with (
        serve(tmp_path, database_url, interval_s=interval, max_records=100_000) as process,
        client_for(process) as client,
    ):
        answered: list[tuple[float, str]] = []
        start = time.monotonic()
        while time.monotonic() - start < 4:
            answered.append((time.monotonic(), chat(client)))
        assert process.process is not None
        process.process.kill()
        killed_at = time.monotonic()
        process.process.wait(timeout=30)
    kept = set(written(database_url))
    old_enough = [rid for at, rid in answered if at < killed_at - interval - slack]
    assert len(old_enough) >= 10  # the bound was really put to the test
    assert set(old_enough) <= kept
    assert kept <= {rid for _, rid in answered}
