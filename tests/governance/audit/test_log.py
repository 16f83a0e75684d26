"""The audit log on SQLite and PostgreSQL: appends, checkpoints, append-only triggers, verification and
tampering (each kind named at its place), concurrency across writers, fail closed and recovery, vault."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from socle.config import Settings, load_settings
from socle.errors import AuditUnavailableError, ConfigError
from socle.governance.alerts import Alerts
from socle.governance.audit.canonical import canonicalize
from socle.governance.audit.checkpoint import NoteVerifier
from socle.governance.audit.events import (
    EVENT_TYPES,
    AccessDenied,
    AdminChange,
    AuthFailure,
    Event,
    InferenceRequest,
)
from socle.governance.audit.log import AuditKeys, AuditLog
from socle.governance.audit.merkle import leaf_hash
from socle.governance.audit.verify import Report, read_database, verify
from socle.storage.db import Database
from socle.storage.dialects import sync_url

pytestmark = pytest.mark.anyio


def _settings(tmp_path: Path, **audit: Any) -> Settings:
    values = {"checkpoint_every": 10, "checkpoint_interval_s": 3600, **audit}
    return load_settings(None, environ={}, data_dir=tmp_path / "data", audit=values)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


@pytest.fixture
async def audit(database: Database, settings: Settings) -> AsyncIterator[AuditLog]:
    log = await AuditLog.open(database, settings)
    yield log
    await log.aclose()


def _event(i: int) -> Event:
    return InferenceRequest(
        actor=f"principal-{i % 3}",
        team="team-a" if i % 2 else "team-b",
        request_id=f"req_{i:04d}",
        model="fake-chat",
        engine="fake-a",
        zone="on-prem",
        prompt_tokens=i,
        status=200,
    )


def check(url: str, verifier_key: str | None = None) -> Report:
    rows, state, close = read_database(url)
    try:
        return verify(rows, state, NoteVerifier(verifier_key or state.verifier_key or ""))
    finally:
        close()


def sql(url: str, *statements: str, keep_triggers: bool = False) -> None:
    """Run raw SQL with the append-only triggers disabled: the tamperer's tool."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as connection:
            if keep_triggers:
                pass
            elif engine.dialect.name == "postgresql":
                for table in ("audit_entries", "audit_checkpoints", "audit_head"):
                    connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            else:
                names = connection.execute(
                    text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                ).scalars()
                for name in list(names):
                    connection.execute(text(f"DROP TRIGGER {name}"))
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


async def test_events_are_declared_data() -> None:
    assert len(EVENT_TYPES) >= 10
    for name, kind in EVENT_TYPES.items():
        assert kind.type == name and kind.description, name
        event = kind()
        assert set(event.data()) == set(kind.data_fields)
        canonicalize(event.data())  # every default is canonical JSON
    assert {"inference.request", "auth.failure", "access.denied", "admin.change", "audit.prune"} <= set(
        EVENT_TYPES
    )
    with pytest.raises(ValueError, match="denial reason"):
        AccessDenied(reason="whim")  # type: ignore[arg-type]


async def test_entries_are_canonical_numbered_and_verify(audit: AuditLog, database_url: str) -> None:
    receipts = await asyncio.gather(*(audit.record(_event(i)) for i in range(25)))
    assert sorted(r.seq for r in receipts) == list(range(25))
    await audit.record(AdminChange(actor="admin", object_type="team", object_id="t1", after={"name": "x"}))
    await audit.checkpoint(force=True)
    report = check(database_url)
    assert report.ok, report.problems
    assert (report.entries, report.size, report.signed_size) == (26, 26, 26)
    assert report.checkpoints_verified >= 3  # every 10 entries, and the forced one
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT seq, entry, leaf_hash FROM audit_entries ORDER BY seq")).all()
    engine.dispose()
    for seq, entry, stored in rows:
        entry = bytes(entry)
        assert canonicalize(json.loads(entry)) == entry
        assert leaf_hash(entry) == bytes(stored)
        content = json.loads(entry)
        assert content["seq"] == seq and content["v"] == 1 and content["time"].endswith("Z")
    assert json.loads(bytes(rows[25][1]))["data"]["after"] == {"name": "x"}


async def test_the_tables_are_append_only(audit: AuditLog, database_url: str) -> None:
    for i in range(12):
        await audit.record(_event(i))
    engine = create_engine(sync_url(database_url))
    try:
        for statement in (
            "UPDATE audit_entries SET type = 'x' WHERE seq = 3",
            "DELETE FROM audit_entries WHERE seq = 3",
            "UPDATE audit_checkpoints SET note = 'x'",
            "DELETE FROM audit_checkpoints",
            "DELETE FROM audit_head",
            "UPDATE audit_head SET size = 0",
            "UPDATE audit_head SET pruned_size = 5",  # pruning without the prune path...
        ):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text(statement))
                if "pruned_size" in statement:  # ...is allowed on the head, but deletes stay refused
                    connection.execute(text("DELETE FROM audit_entries WHERE seq = 7"))
        if engine.dialect.name == "postgresql":
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
                connection.execute(text("TRUNCATE audit_entries"))
    finally:
        engine.dispose()
    assert check(database_url).ok


def _tamper_cases() -> dict[str, tuple[Callable[[dict[int, bytes]], list[str]], str]]:
    """name -> (SQL given the stored entries, what the first problem must say)."""

    def modify(entries: dict[int, bytes]) -> list[str]:
        changed = entries[13].replace(b'"prompt_tokens":13', b'"prompt_tokens":99')
        return [f"UPDATE audit_entries SET entry = {_blob(changed)} WHERE seq = 13"]

    def modify_rehash(entries: dict[int, bytes]) -> list[str]:
        changed = entries[13].replace(b'"prompt_tokens":13', b'"prompt_tokens":99')
        return [
            f"UPDATE audit_entries SET entry = {_blob(changed)}, leaf_hash = {_blob(leaf_hash(changed))} "
            "WHERE seq = 13"
        ]

    def delete(entries: dict[int, bytes]) -> list[str]:
        return ["DELETE FROM audit_entries WHERE seq = 13"]

    def reorder(entries: dict[int, bytes]) -> list[str]:
        a, b = entries[13], entries[17]
        return [
            f"UPDATE audit_entries SET entry = {_blob(b)}, leaf_hash = {_blob(leaf_hash(b))} WHERE seq = 13",
            f"UPDATE audit_entries SET entry = {_blob(a)}, leaf_hash = {_blob(leaf_hash(a))} WHERE seq = 17",
        ]

    def insert(entries: dict[int, bytes]) -> list[str]:
        forged = entries[13].replace(b'"prompt_tokens":13', b'"prompt_tokens":7')
        statements = ["UPDATE audit_entries SET seq = seq + 1000 WHERE seq >= 13"]
        statements.append("UPDATE audit_entries SET seq = seq - 999 WHERE seq >= 1000")
        statements.append(
            "INSERT INTO audit_entries (seq, created_at, type, actor, team_id, request_id, entry, leaf_hash) "
            f"SELECT 13, created_at, type, actor, team_id, request_id, {_blob(forged)}, "
            f"{_blob(leaf_hash(forged))} FROM audit_entries WHERE seq = 14"
        )
        return statements

    def swap_checkpoints(entries: dict[int, bytes]) -> list[str]:
        return [
            "UPDATE audit_checkpoints SET size = -size WHERE size IN (10, 20)",
            "UPDATE audit_checkpoints SET size = 20 WHERE size = -10",
            "UPDATE audit_checkpoints SET size = 10 WHERE size = -20",
        ]

    def truncate(entries: dict[int, bytes]) -> list[str]:
        return ["DELETE FROM audit_entries WHERE seq >= 18", "UPDATE audit_head SET size = 18"]

    def columns(entries: dict[int, bytes]) -> list[str]:
        return ["UPDATE audit_entries SET actor = 'someone-else' WHERE seq = 13"]

    return {
        "modify": (modify, "entry 13: its content does not match its stored leaf hash"),
        "modify and rehash": (modify_rehash, "checkpoint 20: the entries give root"),
        "delete": (delete, "entry 13: entries 13 are missing"),
        "reorder": (reorder, "entry 13: its content says seq 17"),
        "insert": (insert, "entry 14: its content says seq 13"),
        "swap checkpoints": (swap_checkpoints, "checkpoint 10: its signed note is for size 20"),
        "truncate": (truncate, "checkpoint 20: signed for 20 entries but the log has 18"),
        "columns": (columns, "entry 13: its type, actor, team or request id columns disagree"),
    }


def _blob(data: bytes) -> str:
    return f"X'{data.hex()}'"


TAMPERS = _tamper_cases()


@pytest.mark.parametrize("case", list(TAMPERS))
async def test_tampering_is_detected_and_placed(
    audit: AuditLog, database: Database, database_url: str, case: str
) -> None:
    for i in range(25):
        await audit.record(_event(i))
    await audit.checkpoint(force=True)
    assert check(database_url).ok
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        entries = {s: bytes(e) for s, e in connection.execute(text("SELECT seq, entry FROM audit_entries"))}
    engine.dispose()
    make, expected = TAMPERS[case]
    statements = make(entries)
    if database.backend == "postgresql":
        statements = [s.replace("X'", "'\\x") for s in statements]
    sql(database_url, *statements)
    report = check(database_url)
    assert not report.ok
    assert str(report.problems[0]).startswith(expected), [str(p) for p in report.problems]


async def test_a_checkpoint_signed_by_another_key_or_verified_with_another_key_fails(
    audit: AuditLog, database_url: str, tmp_path: Path
) -> None:
    for i in range(10):
        await audit.record(_event(i))
    other = AuditKeys.load(tmp_path / "other-keys", "socle.test/other")
    other_vkey = other.signer.verifier.text
    report = check(database_url, other_vkey)
    assert not report.ok and "signature" in str(report.problems[0])
    forged = other.signer.sign(b"x")
    assert forged  # a forged note cannot carry the log's key hash and a valid signature at once


async def test_a_replica_with_another_signing_key_refuses_to_start(
    database: Database, audit: AuditLog, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="signing key"):
        await AuditLog.open(database, _settings(tmp_path / "replica"))


async def test_concurrent_writers_share_one_gapless_sequence(
    database_url: str, database: Database, settings: Settings
) -> None:
    """Two services on two connection pools (as two processes would be), writing at once."""
    second_db = Database(database_url)
    keys = AuditKeys.for_settings(settings)
    first = await AuditLog.open(database, settings, keys=keys)
    second = await AuditLog.open(second_db, settings, keys=keys)
    try:
        receipts = await asyncio.gather(
            *(log.record(_event(i)) for i in range(150) for log in (first, second)),
        )
    finally:
        await first.aclose()
        await second.aclose()
        await second_db.close()
    assert sorted(r.seq for r in receipts) == list(range(300))
    report = check(database_url)
    assert report.ok, report.problems
    assert report.signed_size == 300


async def test_fail_closed_alert_and_recovery(database: Database, database_url: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, retry_s=0.1)
    alerts = Alerts(database, [])
    audit = await AuditLog.open(database, settings, alerts=alerts)
    try:
        await audit.record(_event(0))
        sql(database_url, "ALTER TABLE audit_entries RENAME TO audit_entries_away", keep_triggers=True)
        with pytest.raises(AuditUnavailableError) as raised:
            await audit.record(_event(1))
        assert raised.value.status_code == 503
        assert not audit.available
        for _ in range(3):
            with pytest.raises(AuditUnavailableError):
                audit.ensure_available()
        await asyncio.sleep(0.3)  # still failing: the recovery keeps retrying
        assert not audit.available
        sql(database_url, "ALTER TABLE audit_entries_away RENAME TO audit_entries", keep_triggers=True)
        for _ in range(100):
            if audit.available:
                break
            await asyncio.sleep(0.05)
        assert audit.available
        await audit.record(_event(2))
        await alerts.drain()
        kinds = [a["kind"] for a in await alerts.list()]
        assert "audit.unavailable" in kinds and "audit.recovered" in kinds
    finally:
        await audit.aclose()
    report = check(database_url)
    assert report.ok, report.problems
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        types = list(connection.execute(text("SELECT type FROM audit_entries ORDER BY seq")).scalars())
        outage = json.loads(
            bytes(connection.execute(text("SELECT entry FROM audit_entries WHERE seq = 1")).scalar_one())
        )
    engine.dispose()
    assert types == ["inference.request", "audit.outage", "inference.request"]
    assert outage["data"]["refused"] >= 3 and "audit_entries" in outage["data"]["error"]


async def test_contents_are_sealed_for_configured_teams_and_erasure_keeps_the_log_verifiable(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, store_content_teams=["team-a"])
    audit = await AuditLog.open(database, settings)
    try:
        content = {"prompt": [{"role": "user", "content": "secret question"}], "response": "secret answer"}
        await audit.record(_event(1), content=content)  # team-a: kept
        await audit.record(_event(2), content=content)  # team-b: not kept
        assert await audit.content("req_0001") == content
        assert await audit.content("req_0002") is None
        engine = create_engine(sync_url(database_url))
        with engine.connect() as connection:
            sealed = bytes(connection.execute(text("SELECT ciphertext FROM audit_contents")).scalar_one())
            log_bytes = b"".join(
                bytes(e) for e in connection.execute(text("SELECT entry FROM audit_entries")).scalars()
            )
        engine.dispose()
        assert b"secret" not in sealed and b"secret" not in log_bytes
        assert await audit.erase(actor="dpo", request_id="req_0001") == 1
        assert await audit.content("req_0001") is None
    finally:
        await audit.aclose()
    report = check(database_url)
    assert report.ok and report.entries == 3


async def test_auth_and_denial_events_carry_their_fields(audit: AuditLog, database_url: str) -> None:
    await audit.record(AuthFailure(actor="anonymous", reason="invalid_api_key", credential="api_key"))
    await audit.record(
        AccessDenied(actor="p", team="t", reason="budget", code="insufficient_quota", status=429)
    )
    engine = create_engine(sync_url(database_url))
    with engine.connect() as connection:
        entries = [
            json.loads(bytes(e))
            for e in connection.execute(text("SELECT entry FROM audit_entries ORDER BY seq")).scalars()
        ]
    engine.dispose()
    assert entries[0]["type"] == "auth.failure" and entries[0]["data"]["reason"] == "invalid_api_key"
    assert entries[1]["data"]["reason"] == "budget" and entries[1]["team"] == "t"
