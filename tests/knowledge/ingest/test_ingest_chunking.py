"""Chunking properties over random documents (hypothesis) and on a real one: token bounds, overlap,
table rows never split and headers repeated, section paths, page ranges, nothing lost."""

from __future__ import annotations

import random
import re
import string
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.knowledge.ingest import Block, ChunkDraft, WhitespaceTokenizer, chunk, default_tokenizer, parse
from socle.knowledge.ingest.formats._common import markdown_table

WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzéàç", min_size=1, max_size=12)
SENTENCE = st.lists(WORDS, min_size=1, max_size=40).map(lambda w: " ".join(w) + ".")


@st.composite
def documents(draw: st.DrawFn) -> list[Block]:
    blocks: list[Block] = []
    page = 1
    path: tuple[str, ...] = ()
    for _ in range(draw(st.integers(1, 15))):
        page += draw(st.integers(0, 1))
        kind = draw(st.sampled_from(["heading", "paragraph", "paragraph", "list", "table"]))
        if kind == "heading":
            level = draw(st.integers(1, 3))
            title = draw(WORDS)
            path = (*path[: level - 1], title)
            blocks.append(Block("heading", title, level, path, page))
        elif kind == "table":
            width = draw(st.integers(1, 4))
            rows = draw(st.lists(st.lists(WORDS, min_size=width, max_size=width), min_size=1, max_size=20))
            blocks.append(Block("table", markdown_table(rows), 0, path, page))
        else:
            text = " ".join(draw(st.lists(SENTENCE, min_size=1, max_size=12)))
            blocks.append(Block(kind, text, int(kind == "list"), path, page))
    return blocks


@settings(max_examples=100, deadline=None, database=None)
@given(blocks=documents(), max_tokens=st.integers(16, 120), overlap=st.integers(0, 7))
def test_chunk_properties(blocks: list[Block], max_tokens: int, overlap: int) -> None:
    tokenizer = WhitespaceTokenizer()
    chunks = chunk(blocks, max_tokens=max_tokens, overlap_tokens=overlap, tokenizer=tokenizer, title="Doc")
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    pages = {b.page for b in blocks}
    paths = {b.section_path for b in blocks}
    for c in chunks:
        assert c.title == "Doc" and c.text.strip()
        assert c.token_count == tokenizer.count(c.text) <= max_tokens
        assert c.page_start in pages and c.page_end in pages and c.page_start <= c.page_end  # type: ignore[operator]
        assert c.section_path in paths
    _rows_are_whole_and_headed(blocks, chunks, max_tokens)
    _nothing_is_lost(blocks, chunks)


def _rows_are_whole_and_headed(blocks: list[Block], chunks: list[ChunkDraft], max_tokens: int) -> None:
    rows: set[str] = set()
    headers: dict[str, set[str]] = {}
    header_lines: set[str] = set()
    for block in blocks:
        if block.kind == "table":
            lines = block.text.split("\n")
            rows.update(lines)
            header_lines.update(lines[:2])
            for line in lines[2:]:  # the same row text may sit in several tables
                headers.setdefault(line, set()).add("\n".join(lines[:2]))
    for c in chunks:
        lines = c.text.split("\n")
        for index, line in enumerate(lines):
            if not line.startswith("|"):
                continue
            if line not in rows:  # only a row (or header) longer than a whole chunk may be cut
                assert any(line in row and len(row.split()) > max_tokens for row in rows), line
            candidates = set() if line in header_lines else headers.get(line, set())
            fitting = {h for h in candidates if len(h.split()) + len(line.split()) <= max_tokens}
            if fitting:
                before = "\n".join(lines[:index])
                assert any(h in before for h in fitting), "a table continued without its header"


def _nothing_is_lost(blocks: list[Block], chunks: list[ChunkDraft]) -> None:
    produced = " ".join(c.text for c in chunks).split()
    needed = [w for b in blocks for w in b.text.split()]
    assert set(needed) <= set(produced)


def test_consecutive_chunks_overlap_by_whole_trailing_text() -> None:
    sentences = [f"Sentence number {i} talks about topic {i}." for i in range(60)]
    block = Block("paragraph", " ".join(sentences), 0, ("Intro",), 1)
    tokenizer = WhitespaceTokenizer()
    chunks = chunk([block], max_tokens=40, overlap_tokens=10, tokenizer=tokenizer)
    assert len(chunks) > 5
    for before, after in zip(chunks, chunks[1:], strict=False):
        first = re.match(r"Sentence number \d+ talks about topic \d+\.", after.text)
        assert first is not None and first.group(0) in before.text  # starts with the last sentence before
        shared = first.group(0)
        assert tokenizer.count(shared) <= 10


def test_headings_open_chunks_and_sections_do_not_mix() -> None:
    blocks = [
        Block("heading", "Chapter 1", 1, ("Chapter 1",), 1),
        Block("heading", "Part A", 2, ("Chapter 1", "Part A"), 1),
        Block("paragraph", "Alpha text.", 0, ("Chapter 1", "Part A"), 1),
        Block("heading", "Part B", 2, ("Chapter 1", "Part B"), 2),
        Block("paragraph", "Beta text.", 0, ("Chapter 1", "Part B"), 3),
    ]
    chunks = chunk(blocks, max_tokens=100, overlap_tokens=10, tokenizer=WhitespaceTokenizer(), title="T")
    assert [(c.text, c.section_path, c.page_start, c.page_end) for c in chunks] == [
        ("Chapter 1\n\nPart A\n\nAlpha text.", ("Chapter 1", "Part A"), 1, 1),
        ("Part B\n\nBeta text.", ("Chapter 1", "Part B"), 2, 3),
    ]


def test_attachments_get_their_own_chunks_with_their_name_in_the_path() -> None:
    blocks = [
        Block("paragraph", "Body.", 0, ("Subject",)),
        Block("paragraph", "Attached text.", 0, (), 1, origin=("a.pdf",)),
    ]
    chunks = chunk(blocks, max_tokens=50, overlap_tokens=0, tokenizer=WhitespaceTokenizer())
    assert [(c.text, c.section_path, c.page_start) for c in chunks] == [
        ("Body.", ("Subject",), None),
        ("Attached text.", ("a.pdf",), 1),
    ]


def test_default_tokenizer_is_the_minilm_wordpiece_tokenizer(docs: Path) -> None:
    tokenizer = default_tokenizer()
    # WordPiece, no special tokens: soc ##le ing ##est ##s documents .
    assert tokenizer.count("Socle ingests documents.") == 7
    doc = parse(docs / "docling/tests/data/docx/sources/word_sample.docx", "word_sample.docx")
    chunks = chunk(doc.blocks, max_tokens=48, overlap_tokens=8, title=doc.title)
    assert all(c.token_count == tokenizer.count(c.text) <= 48 for c in chunks)
    table_chunks = [c for c in chunks if "| Grain |" in c.text]
    assert table_chunks and all(c.text.split("\n").count("| --- | --- | --- |") == 1 for c in table_chunks)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(4, 0), (64, 40), (64, -1)])
def test_bad_bounds_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk([], max_tokens=max_tokens, overlap_tokens=overlap, tokenizer=WhitespaceTokenizer())


class _CountingTokenizer:
    """The default tokenizer, counting the characters it is given (the chunker's work)."""

    def __init__(self) -> None:
        self.inner = default_tokenizer()
        self.chars = 0

    def count(self, text: str) -> int:
        self.chars += len(text)
        return self.inner.count(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.chars += sum(map(len, texts))
        return self.inner.count_many(texts)

    def spans(self, text: str) -> list[tuple[int, int]]:
        self.chars += len(text)
        return self.inner.spans(text)


def _one_sentence(size: int) -> str:
    """``size`` characters of words and no punctuation at all: one sentence."""
    rng = random.Random(size)
    vocabulary = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 11))) for _ in range(3000)]
    words: list[str] = []
    length = 0
    while length < size:
        words.append(rng.choice(vocabulary))
        length += len(words[-1]) + 1
    return " ".join(words)


def test_a_2_mb_sentence_chunks_in_linear_time_and_stays_token_bounded() -> None:
    runs = []
    for size in (512 * 1024, 2 * 1024 * 1024):  # 1x and 4x
        text = _one_sentence(size)
        tokenizer = _CountingTokenizer()
        started = time.process_time()
        chunks = chunk([Block("paragraph", text)], max_tokens=254, overlap_tokens=32, tokenizer=tokenizer)
        runs.append((time.process_time() - started, tokenizer.chars / len(text), len(chunks)))
        exact = default_tokenizer()
        assert all(c.token_count == exact.count(c.text) <= 254 for c in chunks[:: max(1, len(chunks) // 50)])
        produced = " ".join(c.text for c in chunks).split()
        assert set(produced) == set(text.split())  # every word kept, none invented
    (small_s, small_work, small_n), (large_s, large_work, large_n) = runs
    assert 3.5 < large_n / small_n < 4.5
    assert large_work < 2.75 and abs(large_work - small_work) < 0.1  # each character tokenized ~2.5 times
    assert large_s / small_s < 8, runs  # linear: ~4 (quadratic would be ~16)


@pytest.mark.parametrize("kind", ["blob", "unspaced"])
def test_unspaced_text_is_cut_within_token_and_character_bounds(kind: str) -> None:
    rng = random.Random(7)
    if kind == "blob":  # one "word" of 300,000 characters: a single [UNK] for WordPiece
        text = "".join(rng.choices("0123456789abcdef", k=300_000))
    else:  # thousands of tokens and no word boundary
        text = "-".join(str(rng.randint(0, 99)) for _ in range(20_000))
    tokenizer = default_tokenizer()
    chunks = chunk([Block("paragraph", text)], max_tokens=100, overlap_tokens=10, tokenizer=tokenizer)
    assert len(chunks) > 1
    assert all(c.token_count == tokenizer.count(c.text) <= 100 and len(c.text) <= 100 * 32 for c in chunks)
    assert text.startswith(chunks[0].text) and text.endswith(chunks[-1].text)
