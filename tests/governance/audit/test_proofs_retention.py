"""Proofs from the store, export and offline verification, and pruning that keeps later checkpoints
verifiable, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from socle.config import Settings
from socle.errors import NotFoundError
from socle.governance.audit.checkpoint import Checkpoint, NoteVerifier
from socle.governance.audit.export import export
from socle.governance.audit.log import AuditLog
from socle.governance.audit.merkle import verify_consistency, verify_inclusion
from socle.governance.audit.reader import AuditReader, EventFilter
from socle.governance.audit.retention import prune
from socle.governance.audit.verify import read_database, read_export, verify
from socle.storage.db import Database
from socle.storage.types import utcnow
from tests.governance.audit.test_log import _event, _settings, check, sql

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path, checkpoint_every=100)


async def _fill(audit: AuditLog, n: int, start: int = 0) -> None:
    for first in range(start, start + n, 50):  # batches of 50 concurrent records, as a busy gateway would
        await asyncio.gather(*(audit.record(_event(i)) for i in range(first, min(first + 50, start + n))))


async def test_inclusion_and_consistency_proofs_from_the_store(
    database: Database, settings: Settings
) -> None:
    audit = await AuditLog.open(database, settings)
    try:
        await _fill(audit, 700)
    finally:
        await audit.aclose()
    reader = AuditReader(database)
    verifier = NoteVerifier(audit.verifier_key)
    latest = await reader.latest_checkpoint()
    assert latest is not None and latest.size == 700
    signed = Checkpoint.open(latest.note, verifier)
    for seq in (0, 1, 255, 256, 257, 511, 512, 699):
        entry = await reader.entry(seq)
        proof = await reader.inclusion_proof(seq, signed.size)
        verify_inclusion(seq, signed.size, entry.leaf_hash, proof, signed.root_hash)
    old = Checkpoint.open((await reader.checkpoint(300)).note, verifier)
    proof = await reader.consistency_proof(300, 700)
    verify_consistency(300, 700, old.root_hash, signed.root_hash, proof)
    with pytest.raises(NotFoundError):
        await reader.inclusion_proof(3, 701)
    fresh = AuditReader(database)  # a cold cache gives the same proofs
    assert await fresh.inclusion_proof(600, 700) == await reader.inclusion_proof(600, 700)
    found = await reader.events(EventFilter(team_id="team-a", actor="principal-1"), after=100, limit=5)
    assert [e.seq for e in found] == [103, 109, 115, 121, 127]
    assert all(e.content()["team"] == "team-a" for e in found)
    assert [e.seq for e in await reader.events(EventFilter(request_id="req_0042"))] == [42]


async def test_export_verifies_offline_and_tampering_in_the_export_is_named(
    database: Database, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    audit = await AuditLog.open(database, settings)
    try:
        await _fill(audit, 250)
    finally:
        await audit.aclose()
    out = tmp_path / "export"
    summary = await asyncio.to_thread(export, database_url, out)
    assert (summary.entries, summary.checkpoints) == (250, 3)
    vkey = (out / "audit.pub").read_text().strip()
    assert vkey == audit.verifier_key
    rows, state = read_export(out)
    report = verify(rows, state, NoteVerifier(vkey))
    assert report.ok and report.signed_size == 250
    lines = (out / "entries.jsonl").read_bytes().split(b"\n")
    lines[123] = lines[123].replace(b'"prompt_tokens":123', b'"prompt_tokens":124')
    (out / "entries.jsonl").write_bytes(b"\n".join(lines))
    rows, state = read_export(out)
    report = verify(rows, state, NoteVerifier(vkey))
    assert str(report.problems[0]).startswith("checkpoint 200: the entries give root")
    assert "from 100 to 199" in str(report.problems[0])


async def test_pruning_keeps_later_checkpoints_and_proofs_verifiable(
    database: Database, database_url: str, settings: Settings
) -> None:
    audit = await AuditLog.open(database, settings)
    try:
        await _fill(audit, 350)
        assert await prune(database, audit, actor="ops", now=utcnow()) is None  # nothing is old enough
        later = utcnow() + timedelta(days=200)
        dry = await prune(database, audit, actor="ops", now=later, dry_run=True)
        assert dry is not None and not dry.done and dry.pruned_size == 300
        assert check(database_url).entries == 350  # a dry run removes nothing
        result = await prune(database, audit, actor="ops", now=later)
        assert result is not None and result.pruned_size == 300 and result.previous_pruned_size == 0
        await _fill(audit, 160, start=350)
    finally:
        await audit.aclose()
    report = check(database_url)
    assert report.ok, report.problems
    assert (report.pruned_size, report.entries, report.size) == (300, 211, 511)  # 50 + prune entry + 160
    reader = AuditReader(database)
    latest = await reader.latest_checkpoint()
    assert latest is not None and latest.size == 511
    root = Checkpoint.open(latest.note, NoteVerifier(audit.verifier_key)).root_hash
    for seq in (300, 301, 350, 510):
        proof = await reader.inclusion_proof(seq, 511)
        verify_inclusion(seq, 511, (await reader.entry(seq)).leaf_hash, proof, root)
    old = Checkpoint.open((await reader.checkpoint(300)).note, NoteVerifier(audit.verifier_key))
    verify_consistency(300, 511, old.root_hash, root, await reader.consistency_proof(300, 511))
    with pytest.raises(NotFoundError, match="pruned"):
        await reader.inclusion_proof(5, 511)
    with pytest.raises(NotFoundError, match="no audit entry"):
        await reader.entry(5)
    prune_entries = await reader.events(EventFilter(type="audit.prune"))
    assert [e.content()["data"]["pruned_size"] for e in prune_entries] == [300]


async def test_removing_a_prefix_without_the_prune_path_is_detected(
    database: Database, database_url: str, settings: Settings
) -> None:
    audit = await AuditLog.open(database, settings)
    try:
        await _fill(audit, 250)
    finally:
        await audit.aclose()
    # The tamperer computes the right frontier but cannot write an audit.prune entry under a checkpoint.
    rows, state, close = read_database(database_url)
    frontier = state.pruned.copy()
    for seq, _, leaf, _ in rows:
        if seq == 100:
            break
        assert leaf is not None
        frontier.append(leaf)
    close()
    hashes = ", ".join(f'"{h.hex()}"' for h in frontier.hashes)
    sql(
        database_url,
        f"UPDATE audit_head SET pruned_size = 100, pruned_frontier = '[{hashes}]'",
        "DELETE FROM audit_entries WHERE seq < 100",
    )
    report = check(database_url)
    assert [str(p) for p in report.problems] == [
        "entries below 100 were removed without an audit.prune entry recording it"
    ]
