"""Catalog queries on SQLite and PostgreSQL that the API builds listings from."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from socle.knowledge.catalog import Catalog
from socle.storage.db import Database
from socle.storage.models import KnowledgeDocumentRow
from tests.governance.tenancy import make_tenant

pytestmark = pytest.mark.anyio


async def test_status_counts_by_collection_counts_each_collection_in_one_query(database: Database) -> None:
    _, principal = await make_tenant(database)
    catalog = Catalog(database)
    first = await catalog.create_collection(principal, "first")
    second = await catalog.create_collection(principal, "second")
    empty = await catalog.create_collection(principal, "empty")
    docs = [
        await catalog.add_document(principal, first.id, f"{i}.txt", f"text {i}".encode()) for i in range(3)
    ]
    await catalog.add_document(principal, second.id, "other.txt", b"other text")
    async with database.session() as session:
        await session.execute(
            update(KnowledgeDocumentRow)
            .where(KnowledgeDocumentRow.id == docs[0][0].id)
            .values(status="corrupt")
        )
    counts = await catalog.status_counts_by_collection([first.id, second.id, empty.id])
    assert counts == {first.id: {"queued": 2, "corrupt": 1}, second.id: {"queued": 1}, empty.id: {}}
    assert counts[first.id] == await catalog.status_counts(first.id)
    assert await catalog.status_counts_by_collection([]) == {}
