"""Property test of access control inside search: over 10,000 random (user, access lists, query) cases,
no result is outside the user's permissions, and filtered recall is at least 0.98 of a brute-force
search over exactly what the user may read.

The world: one organisation, teams, users with roles, collections with random access lists (users,
teams, roles, org-wide read) and documents that randomly narrow them; chunks of random words with
word-bag embeddings. Every 500 cases the access lists are redrawn. Each case picks a principal (a user
acting for one of their teams), a query and a method, searches through the real retriever (catalog
scope + store), and compares with brute force computed here from the access rules.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

import numpy as np
import pytest
from sqlalchemy import update

from socle.config import KnowledgeSettings
from socle.errors import NotFoundError, PermissionDeniedError
from socle.governance.identity import Principal
from socle.knowledge.access import AccessEntry, CollectionAccess, can_read, document_allows, entries_to_json
from socle.knowledge.analysis import index_terms, query_terms
from socle.knowledge.catalog import Catalog
from socle.knowledge.retrieve import Retriever
from socle.knowledge.stores import build_store
from socle.knowledge.stores.base import ChunkInput
from socle.storage.db import Database
from socle.storage.models import (
    KnowledgeCollectionRow,
    KnowledgeDocumentRow,
    OrganisationRow,
    PrincipalRow,
    TeamRow,
)
from socle.storage.types import new_id, utcnow

pytestmark = pytest.mark.anyio

CASES = 10_000
REDRAW_EVERY = 500
K = 10
DIM = 16
WORDS = [f"w{i}" for i in range(60)]
ROLES = ("member", "team-admin", "service")


def embed_text(text: str) -> list[float]:
    vector = np.zeros(DIM)
    for word in text.split():
        digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
        vector[digest[0] % DIM] += 1 + digest[1] / 255
    norm = np.linalg.norm(vector)
    return list(vector / norm) if norm else [1.0] + [0.0] * (DIM - 1)


async def fake_embed(texts: list[str]) -> list[list[float]]:
    return [embed_text(t) for t in texts]


@dataclass
class World:
    org: str
    teams: list[str]
    users: dict[str, dict[str, set[str]]]  # user -> team -> roles
    collections: dict[str, CollectionAccess]
    documents: dict[str, tuple[str, tuple[AccessEntry, ...] | None]]  # doc -> (collection, narrowing)
    chunks: dict[int, tuple[str, str, str, list[float]]]  # key -> (collection, doc, text, vector)


def random_entries(rng: random.Random, world: World, team: str) -> list[AccessEntry]:
    entries = []
    for _ in range(rng.randint(0, 3)):
        kind = rng.choice(["user", "team", "role"])
        ident = {"user": lambda: rng.choice(list(world.users)), "team": lambda: rng.choice(world.teams)}.get(
            kind, lambda: rng.choice(ROLES)
        )()
        entries.append(AccessEntry(kind=kind, id=ident, permission=rng.choice(["read", "write"])))  # type: ignore[arg-type]
    return entries


async def build_world(db: Database, rng: random.Random) -> World:
    now = utcnow()
    org = OrganisationRow(id=new_id(), name="org", created_at=now)
    teams = [TeamRow(id=new_id(), org_id=org.id, name=f"t{i}", created_at=now) for i in range(4)]
    users = {}
    for _ in range(12):
        memberships = {
            t.id: set(rng.sample(ROLES, rng.randint(1, 2))) for t in rng.sample(teams, rng.randint(1, 2))
        }
        users[new_id()] = memberships
    async with db.session() as session:
        session.add(org)
        await session.flush()
        session.add_all(teams)
        session.add_all(PrincipalRow(id=u, org_id=org.id, kind="user", name=u, created_at=now) for u in users)
    world = World(org.id, [t.id for t in teams], users, {}, {}, {})
    store = build_store(db)
    await store.start()
    for c in range(8):
        team = rng.choice(world.teams)
        collection = KnowledgeCollectionRow(
            id=new_id(), org_id=org.id, team_id=team, name=f"c{c}", classification="internal",
            org_read=False, access=[], created_by=new_id(), created_at=now, updated_at=now,
        )  # fmt: skip
        async with db.session() as session:
            session.add(collection)
        world.collections[collection.id] = CollectionAccess(collection.id, org.id, team, False, ())
        for d in range(6):
            doc = KnowledgeDocumentRow(
                id=new_id(), collection_id=collection.id, filename=f"d{c}-{d}.txt", size_bytes=1,
                content_sha256=new_id(), version=1, status="ready", progress=1.0, chunk_count=4,
                created_by=new_id(), created_at=now, updated_at=now, attempts=0,
            )  # fmt: skip
            async with db.session() as session:
                session.add(doc)
            world.documents[doc.id] = (collection.id, None)
            inputs = []
            for i in range(4):
                text = " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
                inputs.append(ChunkInput(ordinal=i, text=text, embedding=embed_text(text)))
            for stored, given in zip(
                await store.replace_document(doc.id, collection.id, inputs), inputs, strict=True
            ):
                world.chunks[stored.key] = (collection.id, doc.id, given.text, list(given.embedding))
    await store.aclose()
    return world


async def redraw_access(db: Database, world: World, rng: random.Random) -> None:
    async with db.session() as session:
        for cid, old in list(world.collections.items()):
            entries = tuple(random_entries(rng, world, old.team_id))
            org_read = rng.random() < 0.15
            world.collections[cid] = CollectionAccess(cid, old.org_id, old.team_id, org_read, entries)
            await session.execute(
                update(KnowledgeCollectionRow)
                .where(KnowledgeCollectionRow.id == cid)
                .values(access=entries_to_json(entries), org_read=org_read)
            )
        for did, (cid, _) in list(world.documents.items()):
            narrowing = tuple(random_entries(rng, world, "")) if rng.random() < 0.3 else None
            world.documents[did] = (cid, narrowing)
            await session.execute(
                update(KnowledgeDocumentRow)
                .where(KnowledgeDocumentRow.id == did)
                .values(access=None if narrowing is None else entries_to_json(narrowing))
            )


def principal_for(world: World, user: str, team: str) -> Principal:
    return Principal(
        key_id="k", principal_id=user, org_id=world.org, team_id=team, team_name=team, name=user,
        kind="user", roles=frozenset(world.users[user][team]), allowed_models=None,
    )  # fmt: skip


def allowed_chunks(world: World, principal: Principal, collections: set[str]) -> set[int]:
    readable = {c for c in collections if can_read(world.collections[c], principal)}
    docs = {
        d
        for d, (c, narrowing) in world.documents.items()
        if c in readable and document_allows(narrowing, principal, world.collections[c].team_id)
    }
    return {k for k, (_, d, _, _) in world.chunks.items() if d in docs}


async def test_search_never_leaks_and_recall_matches_brute_force(database: Database) -> None:
    rng = random.Random(20261123)
    world = await build_world(database, rng)
    settings = KnowledgeSettings(candidates=K)
    store = build_store(database)
    await store.start()
    retriever = Retriever(Catalog(database), store, fake_embed, settings)
    cases = CASES if database.backend == "sqlite" else CASES // 10  # PostgreSQL: same checks, fewer cases
    found = expected = leaks = refused = 0
    try:
        for case in range(cases):
            if case % REDRAW_EVERY == 0:
                await redraw_access(database, world, rng)
            user = rng.choice(list(world.users))
            principal = principal_for(world, user, rng.choice(list(world.users[user])))
            query = " ".join(rng.sample(WORDS, rng.randint(1, 3)))
            method = rng.choice(["bm25", "dense"])
            named = rng.sample(list(world.collections), rng.randint(1, 3)) if rng.random() < 0.5 else None
            try:
                hits = await retriever.search(principal, query, collections=named, k=K, method=method)
            except (NotFoundError, PermissionDeniedError):  # 403 for a manager who may not read
                refused += 1
                assert named and not all(can_read(world.collections[c], principal) for c in named)
                continue
            if named is not None:
                assert all(can_read(world.collections[c], principal) for c in named)
            allowed = allowed_chunks(world, principal, set(named or world.collections))
            keys = {h.chunk.key for h in hits}
            leaks += len(keys - allowed)
            truth = brute_force(world, allowed, query, method)
            expected += len(truth)
            found += len(keys & truth)
    finally:
        await store.aclose()
    assert leaks == 0
    assert refused > 0 and expected > 0
    assert found / expected >= 0.98, (found, expected)


def brute_force(world: World, allowed: set[int], query: str, method: str) -> set[int]:
    """The top k by exact cosine (dense), or up to k of the chunks sharing a term when fewer than k do
    (keyword: which k of more than k is the ranking's business, not the filter's)."""
    if method == "dense":
        q = embed_text(query)
        scored = sorted(
            allowed, key=lambda k: (-sum(a * b for a, b in zip(world.chunks[k][3], q, strict=True)), k)
        )
        return set(scored[:K]) if len(scored) <= K else _top_without_ties(scored, world, q)
    terms = set(query_terms(query))
    matching = {k for k in allowed if terms & set(index_terms(world.chunks[k][2]))}
    return matching if len(matching) <= K else set()


def _top_without_ties(scored: list[int], world: World, q: list[float]) -> set[int]:
    def score(k: int) -> float:
        return sum(a * b for a, b in zip(world.chunks[k][3], q, strict=True))

    # Chunks tied with the k-th (same words: same vector) may come in any order: count only those above it.
    cut = score(scored[K - 1])
    return {k for k in scored[:K] if not math.isclose(score(k), cut, abs_tol=1e-6)}
