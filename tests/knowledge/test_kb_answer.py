"""Citations are checked against the sources given, fusion keys cannot collide, access rules hold."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from socle.governance.identity import Principal
from socle.knowledge.access import (
    AccessEntry,
    CollectionAccess,
    can_manage,
    can_read,
    can_write,
    document_allows,
    higher_classification,
)
from socle.knowledge.answer import CitationStream, build_context, relevant, resolve_citations
from socle.knowledge.catalog import CollectionRecord, DocumentRecord
from socle.knowledge.retrieve import Hit, rrf
from socle.knowledge.stores.base import Chunk, Scored

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def hit(n: int, similarity: float | None = 0.5, text: str = "passage") -> Hit:
    chunk = Chunk(n, f"chunk{n}", f"doc{n}", "col", 0, f"{text} {n}", f"Title {n}", (), n, n + 1, 3)
    document = DocumentRecord(
        f"doc{n}", "col", f"f{n}.pdf", None, None, 1, "x", 1, "ready", None, 1.0, None, 1, None, None, {},
        NOW, NOW, NOW,
    )  # fmt: skip
    collection = CollectionRecord("col", "org", "team", "c", None, "internal", False, (), "p", NOW, NOW)
    return Hit(chunk, 1.0, document, collection, similarity, None)


def test_markers_naming_no_given_source_are_removed_and_counted() -> None:
    sources = [hit(1), hit(2)]
    cited = resolve_citations("Yes [1]. Also [2][3]. See [0], [1, 4] and [2; 2].", sources)
    assert cited.text == "Yes [1]. Also [2]. See, [1] and [2, 2]."
    assert cited.removed == 3
    assert {n: h.chunk.id for n, h in cited.citations.items()} == {1: "chunk1", 2: "chunk2"}
    assert resolve_citations("No markers here.", sources).citations == {}
    assert (
        resolve_citations("Only [9].", []).text == "Only." and resolve_citations("Only [9].", []).removed == 1
    )


PIECES = st.sampled_from(
    [
        "[",
        "]",
        "1",
        "2",
        "7",
        "12",
        ",",
        ";",
        " ",
        "\n",
        "word",
        ".",
        "[1]",
        " [2]",
        "[3, 1]",
        "[0]",
        " [9]",
        "x[2",
    ]
)


@settings(max_examples=500, deadline=None, database=None)
@given(pieces=st.lists(PIECES, max_size=40), cuts=st.lists(st.integers(0, 200), max_size=12))
def test_a_streamed_answer_is_checked_exactly_as_the_whole_answer(pieces: list[str], cuts: list[int]) -> None:
    text = "".join(pieces)
    sources = [hit(1), hit(2), hit(3)]
    stream = CitationStream(sources)
    bounds = sorted({0, len(text), *(c for c in cuts if c < len(text))})
    streamed = [stream.feed(text[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)]
    streamed.append(stream.close())
    whole = resolve_citations(text, sources)
    assert "".join(streamed) == whole.text == stream.cited().text
    assert stream.cited().citations == whole.citations and stream.removed == whole.removed


def test_only_a_possible_marker_is_held_back() -> None:
    stream = CitationStream([hit(1)])
    assert stream.feed("The rule applies") == "The rule applies"
    assert stream.feed(" [") == ""  # could become " [1]" or " [9]" (removed with its space)
    assert stream.feed("9") == ""
    assert stream.feed("] everywhere [1") == " everywhere"
    assert stream.feed("]. [x]") == " [1]. [x]"
    assert stream.close() == "" and stream.removed == 1 and list(stream.citations) == [1]


def test_context_numbers_sources_within_the_budget() -> None:
    hits = [hit(i, text="word " * 50) for i in range(1, 6)]
    context, used = build_context("What is the policy?", hits, max_tokens=200)
    assert "[1] Title 1 (pp. 1-2):" in context and len(used) < 5 and used == hits[: len(used)]
    french, _ = build_context("Quelle est la règle pour les congés ?", hits, 1000)
    assert french.startswith("Réponds")


def test_relevance_needs_one_similar_enough_chunk() -> None:
    assert relevant([hit(1, 0.1), hit(2, None)], 0.3) == []
    assert len(relevant([hit(1, 0.1), hit(2, 0.35)], 0.3)) == 2


def test_rrf_fuses_by_unique_chunk_keys() -> None:
    fused = rrf([[Scored(10, 9.0), Scored(11, 8.0)], [Scored(11, 0.9), Scored(12, 0.8)]], k=60)
    assert [s.key for s in fused] == [11, 10, 12]
    assert fused[0].score == 1 / 62 + 1 / 61


def principal(user: str, team: str, *roles: str, org: str = "org") -> Principal:
    return Principal(
        key_id="k", principal_id=user, org_id=org, team_id=team, team_name=team, name=user, kind="user",
        roles=frozenset(roles), allowed_models=None,
    )  # fmt: skip


def test_access_rules() -> None:
    entries = (
        AccessEntry(kind="team", id="t1", permission="write"),
        AccessEntry(kind="user", id="u9"),
        AccessEntry(kind="role", id="auditor"),
    )
    collection = CollectionAccess("c", "org", "t1", False, entries, created_by="creator")
    member, outsider = principal("u1", "t1", "member"), principal("u2", "t2", "member")
    assert can_read(collection, member) and can_write(collection, member)
    assert not can_read(collection, outsider) and not can_write(collection, outsider)
    assert can_read(collection, principal("u9", "t2")) and not can_write(collection, principal("u9", "t2"))
    assert can_read(collection, principal("u3", "t1", "auditor"))
    assert not can_read(collection, principal("u3", "t3", "auditor"))  # roles count in the owning team only
    assert not can_read(collection, principal("u1", "t1", "member", org="other"))
    admin = principal("a", "t9", "admin")
    assert can_manage(collection, admin) and not can_read(collection, admin)  # admins manage, not read
    assert can_manage(collection, principal("x", "t1", "team-admin")) and not can_manage(collection, member)
    assert can_manage(collection, principal("creator", "t5"))
    assert can_read(CollectionAccess("c", "org", "t1", True, ()), outsider)
    assert document_allows(None, outsider, "t1")
    assert not document_allows((AccessEntry(kind="user", id="u9"),), member, "t1")
    assert higher_classification("internal", None, "secret", "public") == "secret"
    assert higher_classification() == "public"


def test_weighted_fusion_follows_the_embedding_models_languages() -> None:
    from socle.config import KnowledgeSettings
    from socle.knowledge.retrieve import Retriever

    fused = rrf([[Scored(1, 1.0)], [Scored(2, 1.0)]], k=60, weights=[1.0, 0.2])
    assert [s.key for s in fused] == [1, 2] and fused[1].score == 0.2 / 61
    retriever = Retriever(None, None, None, KnowledgeSettings())  # type: ignore[arg-type]
    assert retriever.fusion("Which proteins bind the receptor?") == (60, 1.0)
    assert retriever.fusion("Quelles sont les aides pour le logement ?") == (5, 0.5)
    both = Retriever(None, None, None, KnowledgeSettings(embedding_languages=["en", "fr"]))  # type: ignore[arg-type]
    assert both.fusion("Quelles sont les aides pour le logement ?") == (60, 1.0)
