"""`socle audit` on a stopped server's data: verify, prove, consistency, export and offline verification,
prune; a tampered database makes `verify` fail with status 1 and name the entry."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from socle.cli import cli
from socle.config import load_settings
from socle.governance.audit.events import InferenceRequest
from socle.governance.audit.log import AuditLog
from socle.storage.db import Database
from tests.governance.audit.test_log import sql


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data dir with a log of 120 entries, checkpoints every 50 (what a stopped server leaves)."""
    directory = tmp_path / "data"

    async def fill() -> None:
        settings = load_settings(None, environ={}, data_dir=directory, audit={"checkpoint_every": 50})
        db = Database(settings.sqlalchemy_url)
        await db.migrate()
        log = await AuditLog.open(db, settings)
        try:
            for i in range(120):
                await log.record(
                    InferenceRequest(actor="p", team="t", request_id=f"req_{i}", prompt_tokens=i)
                )
        finally:
            await log.aclose()
            await db.close()

    asyncio.run(fill())
    return directory


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_verify_prove_consistency(data_dir: Path) -> None:
    code, out = _run("audit", "verify", "--data-dir", str(data_dir))
    assert code == 0 and out.startswith("OK: 120 entries") and "signed up to 120" in out
    code, out = _run("audit", "prove", "42", "--data-dir", str(data_dir), "--json")
    proof = json.loads(out)
    assert code == 0 and proof["tree_size"] == 120 and proof["entry"]["request_id"] == "req_42"
    assert len(proof["proof"]) == 7
    code, out = _run("audit", "consistency", "50", "120", "--data-dir", str(data_dir))
    assert code == 0 and "extends" in out
    code, out = _run("audit", "consistency", "50", "77", "--data-dir", str(data_dir))
    assert code == 1 and "no checkpoint at size 77" in out


def test_export_then_verify_offline_with_a_pinned_key(data_dir: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "export"
    code, out = _run("audit", "export", "--out", str(out_dir), "--data-dir", str(data_dir))
    assert code == 0 and "exported 121 entries" in out  # the export recorded itself
    last = json.loads((out_dir / "entries.jsonl").read_text().splitlines()[-1])
    assert last["type"] == "audit.export" and last["data"]["destination"] == str(out_dir.resolve())
    pub = tmp_path / "audit.pub"
    pub.write_text((out_dir / "audit.pub").read_text())
    code, out = _run("audit", "verify", "--from-export", str(out_dir), "--public-key", str(pub), "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["signed_size"] == 121
    other = tmp_path / "other.pub"
    other.write_text("someone+00000000+AQ" + "A" * 42 + "\n")
    code, out = _run("audit", "verify", "--from-export", str(out_dir), "--public-key", str(other))
    assert code != 0


def test_a_tampered_database_fails_verification_naming_the_entry(data_dir: Path) -> None:
    url = f"sqlite:///{data_dir / 'socle.db'}"
    sql(
        url,
        "UPDATE audit_entries SET entry = "
        "CAST(REPLACE(CAST(entry AS TEXT), 'req_7\"', 'req_8\"') AS BLOB) WHERE seq = 7",
    )
    code, out = _run("audit", "verify", "--data-dir", str(data_dir))
    assert code == 1
    assert out.startswith("FAILED: entry 7: its content does not match its stored leaf hash")


def test_prune_does_nothing_before_the_retention(data_dir: Path) -> None:
    code, out = _run("audit", "prune", "--dry-run", "--data-dir", str(data_dir))
    assert code == 0 and "nothing to prune" in out


def test_verify_and_prove_with_a_database_url(database_url: str, tmp_path: Path) -> None:
    """PostgreSQL (and SQLite by URL): the log's database named directly, no data dir needed to verify."""

    async def fill() -> None:
        settings = load_settings(None, environ={}, data_dir=tmp_path / "keys", database_url=database_url)
        db = Database(settings.sqlalchemy_url)
        await db.migrate()
        log = await AuditLog.open(db, settings)
        try:
            for i in range(30):
                await log.record(InferenceRequest(actor="p", request_id=f"req_{i}"))
        finally:
            await log.aclose()
            await db.close()

    asyncio.run(fill())
    empty = tmp_path / "elsewhere"
    code, out = _run("audit", "verify", "--database-url", database_url, "--data-dir", str(empty))
    assert code == 0 and out.startswith("OK: 30 entries"), out
    code, out = _run(
        "audit", "prove", "29", "--database-url", database_url, "--data-dir", str(empty), "--json"
    )
    assert code == 0 and json.loads(out)["tree_size"] == 30
