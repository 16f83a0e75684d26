"""Test helpers for budgets and rate limits: teams with a member and a key, a clock, a redis-server."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from socle.governance.identity import KeyStore, Principal
from socle.storage.db import Database
from socle.storage.models import OrganisationRow, PrincipalRow, TeamMemberRow, TeamRow
from socle.storage.types import new_id, utcnow


class Clock:
    """A clock that tests move by hand."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime(2026, 3, 31, 23, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


async def make_tenant(
    db: Database, team: str = "research", *, member: str | None = None
) -> tuple[str, Principal]:
    """Team ``team`` (in the default organisation, created if missing) with one member and an API key:
    returns the key and the principal it authenticates as."""
    now = utcnow()
    async with db.session() as session:
        org = await session.scalar(select(OrganisationRow).where(OrganisationRow.name == "default"))
        if org is None:
            org = OrganisationRow(id=new_id(), name="default", created_at=now)
            session.add(org)
            await session.flush()
        team_row = TeamRow(id=new_id(), org_id=org.id, name=team, created_at=now)
        person = PrincipalRow(
            id=new_id(), org_id=org.id, kind="user", name=member or f"{team}-user", created_at=now
        )
        session.add_all([team_row, person])
        await session.flush()
        session.add(TeamMemberRow(team_id=team_row.id, principal_id=person.id, role="member", created_at=now))
    keys = KeyStore(db)
    try:
        raw, _ = await keys.create_key(person.id, team_row.id, f"{team} key")
        principal = await keys.authenticate(raw)
    finally:
        await keys.aclose()
    return raw, principal


@contextmanager
def redis_server(directory: Path) -> Iterator[str]:
    """A throwaway ``redis-server`` on a Unix socket in ``directory`` (no TCP port, no persistence)."""
    binary = shutil.which("redis-server")
    assert binary is not None
    socket = directory / "redis.sock"
    process = subprocess.Popen(
        [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not socket.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        yield f"unix://{socket}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def redis_missing() -> str | None:
    """Why the Redis tests cannot run here, or ``None``."""
    if shutil.which("redis-server") is None:
        return "redis-server is not installed (Debian: apt-get install redis-server)"
    try:
        import redis  # noqa: F401
    except ImportError:
        return "the redis Python package is not installed (pip install 'socle[redis]')"
    return None
