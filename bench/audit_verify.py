"""Audit log at scale: full verification of 1,000,000 entries from SQLite and from an export.

Builds a log of N entries (default 1,000,000) in a fresh SQLite database, in bulk, with exactly the
bytes the gateway writes (``encode_entry``: realistic ``inference.request`` entries with HMACs, ~600
bytes each) and a signed checkpoint every 1,000 entries. Then it times:

- ``socle audit verify`` on the database (every leaf hash recomputed and compared, every entry parsed
  and its columns checked, the whole tree, every checkpoint signature and root, the head row);
- ``socle audit export`` and ``socle audit verify --from-export`` on the export;
- the floor: reading the export and hashing every entry once, with nothing else (what any verifier
  must pay), printed as the ratio verification / floor;
- the writer: entries per second through ``AuditLog.record`` (group commit), 200 concurrent callers.

Goal (issue 4): full verification of one million entries in under 10 s on the 2-core machine.

    python bench/audit_verify.py            # 1,000,000 entries
    python bench/audit_verify.py --quick    # 100,000 entries
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import machine_line  # noqa: E402
from socle.config import load_settings  # noqa: E402
from socle.governance.audit.checkpoint import Checkpoint, NoteVerifier  # noqa: E402
from socle.governance.audit.events import InferenceRequest  # noqa: E402
from socle.governance.audit.export import export  # noqa: E402
from socle.governance.audit.log import AuditKeys, AuditLog, encode_entry  # noqa: E402
from socle.governance.audit.merkle import Frontier, leaf_hash  # noqa: E402
from socle.governance.audit.verify import read_database, read_export, verify  # noqa: E402
from socle.storage.db import Database  # noqa: E402

CHECKPOINT_EVERY = 1000
_CHUNK = 50_000


def build(path: Path, keys: AuditKeys, n: int) -> float:
    """Write ``n`` entries and their checkpoints in bulk (one transaction, sqlite3 directly)."""
    url = f"sqlite:///{path}"

    async def migrate() -> None:
        db = Database(url)
        await db.migrate()
        await db.close()

    asyncio.run(migrate())
    started = time.perf_counter()
    when = datetime.now(UTC)
    created = when.strftime("%Y-%m-%d %H:%M:%S.%f")
    signer = keys.signer
    hmac = keys.pseudonyms
    frontier = Frontier()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA synchronous = NORMAL")
    connection.execute("BEGIN")
    for start in range(0, n, _CHUNK):
        rows, checkpoints = [], []
        for seq in range(start, min(start + _CHUNK, n)):
            event = InferenceRequest(
                actor=f"01J{seq % 500:023d}",
                team=f"01T{seq % 20:023d}",
                request_id=f"req_{seq:032x}",
                key_id=f"01K{seq % 800:023d}",
                endpoint="/v1/chat/completions",
                model="mistral-small",
                engine="vllm-a" if seq % 2 else "vllm-b",
                zone="on-prem",
                model_ref="sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                policy_version="cfg-0123456789abcdef",
                prompt_hmac=hmac.text(f"prompt {seq}"),
                response_hmac=hmac.text(f"response {seq}"),
                prompt_tokens=100 + seq % 50,
                completion_tokens=200 + seq % 70,
                cost_nano_eur=1_234_000 + seq,
                status=200,
                routing={"engine": "vllm-a", "zone": "on-prem"},
            )
            prefix, suffix = encode_entry(event, when)
            entry = prefix + str(seq).encode() + suffix
            leaf = leaf_hash(entry)
            frontier.append(leaf)
            rows.append((seq, created, event.type, event.actor, event.team, event.request_id, entry, leaf))
            if frontier.size % CHECKPOINT_EVERY == 0:
                note = Checkpoint(signer.name, frontier.size, frontier.root()).sign(signer)
                checkpoints.append((frontier.size, frontier.root(), note, created))
        connection.executemany(
            "INSERT INTO audit_entries (seq, created_at, type, actor, team_id, request_id, entry, leaf_hash) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.executemany(
            "INSERT INTO audit_checkpoints (size, root_hash, note, created_at) VALUES (?, ?, ?, ?)",
            checkpoints,
        )
    connection.execute(
        "UPDATE audit_head SET size = ?, frontier = ?, checkpoint_size = ?, checkpoint_at = ?, "
        "verifier_key = ? WHERE id = 1",
        (
            frontier.size,
            "[" + ",".join(f'"{h.hex()}"' for h in frontier.hashes) + "]",
            n - n % CHECKPOINT_EVERY,
            created,
            signer.verifier.text,
        ),
    )
    connection.execute("COMMIT")
    connection.close()
    return time.perf_counter() - started


def time_verify_database(path: Path, vkey: str) -> tuple[float, float, int]:
    """Wall and CPU seconds (CPU: what an idle machine would take, since verification is one thread)."""
    started, cpu = time.perf_counter(), time.process_time()
    rows, state, close = read_database(f"sqlite:///{path}")
    try:
        report = verify(rows, state, NoteVerifier(vkey))
    finally:
        close()
    assert report.ok, report.summary()
    return time.perf_counter() - started, time.process_time() - cpu, report.checkpoints_verified


def time_verify_export(directory: Path, vkey: str) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    rows, state = read_export(directory)
    report = verify(rows, state, NoteVerifier(vkey))
    assert report.ok, report.summary()
    return time.perf_counter() - started, time.process_time() - cpu


def time_floor(directory: Path) -> float:
    """Read every entry of the export and hash it once: the least any verifier does (CPU seconds)."""
    started = time.process_time()
    sha = hashlib.sha256
    with (directory / "entries.jsonl").open("rb") as lines:
        for line in lines:
            sha(b"\x00" + line.rstrip(b"\n")).digest()
    return time.process_time() - started


async def time_writer(directory: Path, total: int, concurrency: int = 200) -> float:
    settings = load_settings(
        None, environ={}, data_dir=directory, audit={"checkpoint_every": CHECKPOINT_EVERY, "batch_max": 1000}
    )
    db = Database(settings.sqlalchemy_url)
    await db.migrate()
    log = await AuditLog.open(db, settings)
    started = time.perf_counter()
    try:
        for start in range(0, total, concurrency):
            await asyncio.gather(
                *(
                    log.record(InferenceRequest(actor="bench", request_id=f"req_{i}", status=200))
                    for i in range(start, min(start + concurrency, total))
                )
            )
        elapsed = time.perf_counter() - started
    finally:
        await log.aclose()
        await db.close()
    return total / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries instead of 1,000,000")
    parser.add_argument("--entries", type=int, default=None)
    args = parser.parse_args()
    n = args.entries or (100_000 if args.quick else 1_000_000)
    print(f"# audit verification, {n:,} entries — {machine_line()}")
    with tempfile.TemporaryDirectory(prefix="socle-bench-audit-") as tmp:
        root = Path(tmp)
        keys = AuditKeys.load(root / "keys", "bench.socle/audit")
        vkey = keys.signer.verifier.text
        db_path = root / "audit.db"
        built = build(db_path, keys, n)
        size_mb = db_path.stat().st_size / 1e6
        print(
            f"built {n:,} entries and {n // CHECKPOINT_EVERY:,} checkpoints in {built:.1f} s "
            f"({size_mb:.0f} MB)"
        )
        seconds, cpu, checkpoints = time_verify_database(db_path, vkey)
        print(f"verify (SQLite): {seconds:.2f} s wall, {cpu:.2f} s CPU, {checkpoints:,} checkpoints")
        started = time.perf_counter()
        export(f"sqlite:///{db_path}", root / "export")
        print(f"export: {time.perf_counter() - started:.2f} s wall")
        export_seconds, export_cpu = time_verify_export(root / "export", vkey)
        print(f"verify (export): {export_seconds:.2f} s wall, {export_cpu:.2f} s CPU")
        floor = time_floor(root / "export")
        print(
            f"floor (read + one sha256 per entry): {floor:.2f} s CPU; verify/floor (CPU): "
            f"SQLite {cpu / floor:.1f}x, export {export_cpu / floor:.1f}x"
        )
        rate = asyncio.run(time_writer(root / "writer", 20_000 if not args.quick else 5_000))
        print(f"writer (AuditLog.record, 200 concurrent, SQLite): {rate:,.0f} entries/s")
        budget = 10 * n / 1_000_000
        wall_met = "met" if max(seconds, export_seconds) < budget else "NOT met"
        cpu_met = "met" if max(cpu, export_cpu) < budget else "NOT met"
        print(f"goal < 10 s per million entries: wall {wall_met}, CPU {cpu_met} (wall depends on the load)")


if __name__ == "__main__":
    main()
