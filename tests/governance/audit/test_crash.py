"""A process killed with SIGKILL while writing heavily leaves a log that still verifies, and that the
next process extends (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select

from socle.governance.audit.events import InferenceRequest
from socle.governance.audit.log import AuditLog
from socle.storage.db import Database
from socle.storage.dialects import sync_url
from socle.storage.models import AuditEntryRow
from tests.governance.audit.test_log import _settings, check

WRITER = """
import asyncio, sys
from socle.config import load_settings
from socle.governance.audit.events import InferenceRequest
from socle.governance.audit.log import AuditLog
from socle.storage.db import Database

async def main(url, data_dir):
    settings = load_settings(None, environ={}, data_dir=data_dir, database_url=url,
                             audit={"checkpoint_every": 50, "checkpoint_interval_s": 0.2})
    db = Database(settings.sqlalchemy_url)
    await db.migrate()
    log = await AuditLog.open(db, settings)
    batch = 0
    while True:
        await asyncio.gather(*(log.record(InferenceRequest(actor="writer", request_id=f"r{batch}-{j}"))
                               for j in range(40)))
        batch += 1

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _count(url: str) -> int:
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(AuditEntryRow)).scalar_one())
    except Exception:  # the table may not exist yet
        return 0
    finally:
        engine.dispose()


def test_kill_9_while_writing_leaves_a_verifiable_log(database_url: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": str(root)}
    log_path = tmp_path / "writer.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, database_url, str(tmp_path / "data")],
            cwd=root,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while _count(database_url) < 600:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the writer wrote too little"
                time.sleep(0.05)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    report = check(database_url)
    assert report.ok, report.problems
    assert report.entries >= 600 and report.signed_size >= 550

    async def extend() -> None:
        db = Database(database_url)
        log = await AuditLog.open(db, _settings(tmp_path))  # the same key directory: data_dir/
        try:
            for i in range(5):
                await log.record(InferenceRequest(actor="after", request_id=f"after-{i}"))
        finally:
            await log.aclose()
            await db.close()

    asyncio.run(extend())
    after = check(database_url)
    assert after.ok, after.problems
    assert after.entries == report.entries + 5 == after.signed_size


pytestmark = pytest.mark.timeout(300)
