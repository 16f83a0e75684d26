"""Export: the log, its checkpoints and its public key as files another machine verifies alone.

An export directory holds:

- ``entries.jsonl``: one entry per line, the exact canonical bytes that were hashed (canonical JSON
  has no raw newline), in sequence order;
- ``checkpoints.jsonl``: one ``{"size", "root_hash" (hex), "note"}`` per line, the signed notes as stored;
- ``log.json``: the origin, sizes, and the frontier kept for pruned entries;
- ``audit.pub``: the verifier key (``<name>+<hash>+<key>``), to compare with a copy obtained out of band.

``socle audit verify --from-export DIR --public-key FILE`` checks it without any database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from socle.governance.audit.checkpoint import NoteVerifier
from socle.governance.audit.verify import read_database

__all__ = ["ExportSummary", "export"]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    directory: Path
    entries: int
    checkpoints: int
    pruned_size: int


def export(url: str, directory: Path) -> ExportSummary:
    """Write the log in the database at ``url`` to ``directory`` (blocking; see the module docs)."""
    rows, state, close = read_database(url)
    directory.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with (directory / "entries.jsonl").open("wb") as out:
            for _, entry, _, _ in rows:
                out.write(entry + b"\n")
                count += 1
    finally:
        close()
    with (directory / "checkpoints.jsonl").open("wb") as out:
        for checkpoint in state.checkpoints:
            out.write(
                orjson.dumps(
                    {
                        "size": checkpoint.size,
                        "root_hash": checkpoint.root_hash.hex(),
                        "note": checkpoint.note,
                    }
                )
                + b"\n"
            )
    vkey = state.verifier_key or ""
    meta = {
        "origin": NoteVerifier(vkey).name if vkey else None,
        "size": state.pruned.size + count,
        "pruned_size": state.pruned.size,
        "pruned_frontier": [h.hex() for h in state.pruned.hashes],
        "verifier_key": vkey,
    }
    (directory / "log.json").write_bytes(orjson.dumps(meta, option=orjson.OPT_INDENT_2) + b"\n")
    (directory / "audit.pub").write_text(vkey + "\n", encoding="utf-8")
    return ExportSummary(directory, count, len(state.checkpoints), state.pruned.size)
