"""``socle audit``: verify, prove, export and prune the audit log, on the data itself (no server needed).

These commands read the database directly (``--data-dir`` for the embedded SQLite, ``--database-url``
for PostgreSQL), so an auditor can check a stopped server's data, or a copy of it; ``verify
--from-export`` needs no database at all. ``export`` and ``prune`` also write to the log (an
``audit.export`` or ``audit.prune`` entry), so they need the log's signing key (in the key directory).
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import orjson

from socle.cli.options import config_options, json_option, settings_from
from socle.config import Settings
from socle.errors import SocleError
from socle.governance.audit.checkpoint import Checkpoint, NoteError, NoteVerifier
from socle.governance.audit.events import AuditExport
from socle.governance.audit.export import export as export_log
from socle.governance.audit.log import AuditLog
from socle.governance.audit.merkle import ProofError, verify_consistency, verify_inclusion
from socle.governance.audit.reader import AuditReader
from socle.governance.audit.retention import prune as prune_log
from socle.governance.audit.verify import Problem, Report, read_database, read_export, verify
from socle.storage.db import Database

__all__ = ["audit"]

F = TypeVar("F", bound=Callable[..., Any])


@click.group()
def audit() -> None:
    """Verify, prove, export and prune the tamper-evident audit log (works on a stopped server's data)."""


def _database_options(fn: F) -> F:
    fn = click.option(
        "--database-url",
        default=None,
        help="Database of the log, e.g. postgresql://... [default: the configuration's, else SQLite in "
        "the data dir].",
    )(fn)
    return config_options(fn)


def _settings(config_file: Path | None, data_dir: Path | None, database_url: str | None) -> Settings:
    return settings_from(config_file, data_dir=data_dir, database_url=database_url)


def _run(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except SocleError as exc:
        raise click.ClickException(exc.message + (f" ({exc.detail})" if exc.detail else "")) from exc


def _echo_json(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[Database]:
    db = await Database.open(settings.sqlalchemy_url)
    try:
        yield db
    finally:
        await db.close()


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


# verify -----------------------------------------------------------------------------------------------
@audit.command("verify")
@_database_options
@click.option(
    "--from-export",
    "export_dir",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    default=None,
    help="Verify an export directory instead of a database.",
)
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Verifier key file (audit.pub) obtained out of band [default: the key recorded with the log].",
)
@json_option
def verify_command(
    config_file: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    export_dir: Path | None,
    public_key: Path | None,
    as_json: bool,
) -> None:
    """Recompute every leaf hash and the tree, check every checkpoint's signature and root; name the first
    bad entry. Exits with status 1 if anything is wrong."""
    pinned = public_key.read_text(encoding="utf-8").strip() if public_key else None
    if export_dir is not None:
        rows, state = read_export(export_dir)
        vkey = pinned or (export_dir / "audit.pub").read_text(encoding="utf-8").strip()
        report = _verify(rows, state, vkey)
    else:
        settings = _settings(config_file, data_dir, database_url)
        try:
            rows, state, close = read_database(settings.sqlalchemy_url)
        except Exception as exc:  # any driver error: say which database could not be read
            raise click.ClickException(f"cannot read the audit log: {exc}") from exc
        try:
            recorded = pinned or state.verifier_key
            if not recorded:
                raise click.ClickException("the log has no key yet (no entry was ever written)")
            report = _verify(rows, state, recorded)
        finally:
            close()
        if pinned and state.verifier_key and pinned != state.verifier_key:
            report.problems.insert(0, Problem("the key recorded with the log is not the public key given"))
    if as_json:
        _echo_json(report.as_dict())
    else:
        click.echo(report.summary())
        for problem in report.problems[1:]:
            click.echo(f"  also: {problem}")
        if not pinned:
            click.echo(
                "(checked with the key recorded with the log; pass --public-key for an independent check)"
            )
    if not report.ok:
        raise SystemExit(1)


def _verify(rows: Any, state: Any, vkey: str) -> Report:
    try:
        verifier = NoteVerifier(vkey)
    except NoteError as exc:
        raise click.ClickException(f"invalid public key: {exc}") from exc
    return verify(rows, state, verifier)


# prove, consistency -----------------------------------------------------------------------------------
@audit.command("prove")
@click.argument("seq", type=click.IntRange(min=0))
@_database_options
@json_option
def prove(
    config_file: Path | None, data_dir: Path | None, database_url: str | None, seq: int, as_json: bool
) -> None:
    """Print the inclusion proof of entry SEQ against the latest signed checkpoint (checked first)."""
    settings = _settings(config_file, data_dir, database_url)
    result = _run(_prove(settings, seq))
    if as_json:
        _echo_json(result)
        return
    click.echo(f"entry {seq}: leaf hash {result['leaf_hash']}")
    click.echo(f"included in the tree of {result['tree_size']} entries, root {result['root_hash']}:")
    for i, node in enumerate(result["proof"]):
        click.echo(f"  {i}: {node}")
    click.echo("signed checkpoint:\n" + result["checkpoint"])


async def _prove(settings: Settings, seq: int) -> dict[str, Any]:
    async with _database(settings) as db:
        reader = AuditReader(db)
        head = await reader.head()
        latest = await reader.latest_checkpoint()
        if latest is None or head.verifier_key is None:
            raise click.ClickException("the log has no signed checkpoint yet")
        if seq >= latest.size:
            raise click.ClickException(f"entry {seq} is not covered by the latest checkpoint ({latest.size})")
        checkpoint = Checkpoint.open(latest.note, NoteVerifier(head.verifier_key))
        entry = await reader.entry(seq)
        proof = await reader.inclusion_proof(seq, checkpoint.size)
    try:
        verify_inclusion(seq, checkpoint.size, entry.leaf_hash, proof, checkpoint.root_hash)
    except ProofError as exc:
        raise click.ClickException(f"the proof does not verify: {exc}; run 'socle audit verify'") from exc
    return {
        "seq": seq,
        "leaf_hash": entry.leaf_hash.hex(),
        "tree_size": checkpoint.size,
        "root_hash": checkpoint.root_hash.hex(),
        "proof": [p.hex() for p in proof],
        "checkpoint": latest.note,
        "verifier_key": head.verifier_key,
        "entry": entry.content(),
    }


@audit.command("consistency")
@click.argument("old_size", type=click.IntRange(min=1))
@click.argument("new_size", type=click.IntRange(min=1))
@_database_options
@json_option
def consistency(
    config_file: Path | None,
    data_dir: Path | None,
    database_url: str | None,
    old_size: int,
    new_size: int,
    as_json: bool,
) -> None:
    """Print the consistency proof between the checkpoints at OLD_SIZE and NEW_SIZE (checked before printing):
    the later log extends the earlier one, nothing was rewritten."""
    settings = _settings(config_file, data_dir, database_url)
    result = _run(_consistency(settings, old_size, new_size))
    if as_json:
        _echo_json(result)
        return
    click.echo(f"the log of {new_size} entries (root {result['new_root']}) extends")
    click.echo(f"the log of {old_size} entries (root {result['old_root']}); proof:")
    for i, node in enumerate(result["proof"]):
        click.echo(f"  {i}: {node}")


async def _consistency(settings: Settings, old: int, new: int) -> dict[str, Any]:
    if old > new:
        raise click.ClickException("OLD_SIZE must not be larger than NEW_SIZE")
    async with _database(settings) as db:
        reader = AuditReader(db)
        head = await reader.head()
        verifier = NoteVerifier(head.verifier_key or "")
        first = Checkpoint.open((await reader.checkpoint(old)).note, verifier)
        second = Checkpoint.open((await reader.checkpoint(new)).note, verifier)
        proof = await reader.consistency_proof(old, new)
    try:
        verify_consistency(old, new, first.root_hash, second.root_hash, proof)
    except ProofError as exc:
        raise click.ClickException(f"the checkpoints are NOT consistent: {exc}") from exc
    return {
        "old_size": old,
        "new_size": new,
        "old_root": first.root_hash.hex(),
        "new_root": second.root_hash.hex(),
        "proof": [p.hex() for p in proof],
    }


# export, prune ----------------------------------------------------------------------------------------
@audit.command("export")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory to write."
)
@_database_options
def export(config_file: Path | None, data_dir: Path | None, database_url: str | None, out: Path) -> None:
    """Write the log, its checkpoints and public key (JSONL) to a directory that `socle audit verify
    --from-export` checks on any machine. The export itself is recorded in the log."""
    settings = _settings(config_file, data_dir, database_url)
    _run(_record_export(settings, str(out.resolve())))
    summary = export_log(settings.sqlalchemy_url, out)
    click.echo(
        f"exported {summary.entries} entries and {summary.checkpoints} checkpoints to {summary.directory} "
        f"(public key in {summary.directory / 'audit.pub'})"
    )


async def _record_export(settings: Settings, out: str) -> None:
    async with _database(settings) as db:
        log = await AuditLog.open(db, settings)
        try:
            head = await AuditReader(db).head()
            await log.record(AuditExport(actor=_actor(), destination=out, size=head.size + 1))
        finally:
            await log.aclose()  # signs a checkpoint over everything, the export entry included


@audit.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be pruned, remove nothing.")
@_database_options
def prune(config_file: Path | None, data_dir: Path | None, database_url: str | None, dry_run: bool) -> None:
    """Remove entries older than the retention (audit.retention_days, at least 183), up to a signed
    checkpoint; later checkpoints stay verifiable (see docs/audit.md)."""
    settings = _settings(config_file, data_dir, database_url)
    result = _run(_prune(settings, dry_run))
    if result is None:
        click.echo(f"nothing to prune: no signed segment is older than {settings.audit.retention_days} days")
        return
    verb = "would prune" if dry_run else "pruned"
    click.echo(
        f"{verb} entries {result.previous_pruned_size} to {result.pruned_size - 1} (older than "
        f"{result.cutoff:%Y-%m-%d %H:%M} UTC, up to the checkpoint at {result.pruned_size})"
    )


async def _prune(settings: Settings, dry_run: bool) -> Any:
    async with _database(settings) as db:
        log = await AuditLog.open(db, settings)
        try:
            return await prune_log(db, log, actor=_actor(), dry_run=dry_run)
        finally:
            await log.aclose()
