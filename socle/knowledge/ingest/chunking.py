"""Structure-aware, token-bounded chunking with overlap.

Blocks are cut into units (a heading, a paragraph or the sentences of a long one, a list item, a table
row) and packed into chunks of at most ``max_tokens``. A heading closes the chunk before it (a chunk
of only headings goes on into the section's text), so chunks do not straddle sections, and an
attachment never shares a chunk with its parent. Consecutive chunks in a section overlap by up to
``overlap_tokens`` of whole trailing units (words of the last unit when it alone is longer; never part
of a table row). A table row is never split (unless it alone exceeds ``max_tokens``); when a table
continues in a new chunk, its header row is repeated first. Each chunk keeps the document title, its
section path (prefixed by the attachment name for attachments) and its page range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from socle.knowledge.ingest.model import Block
from socle.knowledge.ingest.tokens import Tokenizer, default_tokenizer

__all__ = ["ChunkDraft", "chunk", "iter_chunks"]

_SENTENCE = re.compile(r"(?<=[.!?;:。])\s+|\n+")


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A chunk ready to embed and store (``ordinal`` counts from 0 within the document)."""

    ordinal: int
    text: str
    title: str
    section_path: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    token_count: int


@dataclass(slots=True)
class _Unit:
    text: str
    tokens: int
    page: int | None
    heading: bool = False
    table: int = 0  # a table's sequence number for rows and headers, 0 otherwise
    header: bool = False
    row_header: _Unit | None = None


class _Packer:
    """Accumulates units into chunks; one instance per call to :func:`iter_chunks`."""

    def __init__(self, max_tokens: int, overlap_tokens: int, tokenizer: Tokenizer, title: str) -> None:
        if max_tokens < 8 or not 0 <= overlap_tokens < max_tokens // 2:
            raise ValueError("chunking needs max_tokens >= 8 and 0 <= overlap_tokens < max_tokens / 2")
        self.max, self.overlap, self.tokenizer, self.title = max_tokens, overlap_tokens, tokenizer, title
        self.units: list[_Unit] = []
        self.tokens = 0
        self.path: tuple[str, ...] = ()
        self.ordinal = 0
        self.tables = 0
        self.headed: set[int] = set()

    def add(self, unit: _Unit, path: tuple[str, ...]) -> Iterator[ChunkDraft]:
        first = unit.row_header
        if first is not None and first.table not in self.headed:
            self.headed.add(first.table)
            if first.tokens + unit.tokens > self.max:  # the header never fits with a row: alone, once
                yield from self.add(_Unit(first.text, first.tokens, first.page, table=first.table), path)
        header = self._header_for(unit)
        need = unit.tokens + (header.tokens if header is not None else 0)
        if self.units and self.tokens + need > self.max:
            carried = self._overlap(unit)
            yield from self.flush()
            header = self._header_for(unit)
            extra = header.tokens if header is not None else 0
            if sum(u.tokens for u in carried) + extra + unit.tokens > self.max:
                carried = []
            same = [u for u in carried if u.table and u.table == unit.table]
            others = [u for u in carried if not (u.table and u.table == unit.table)]
            for kept in others + ([header] if header is not None else []) + same:
                self._append(kept)
        elif header is not None:
            self._append(header)
        if not any(not u.heading for u in self.units):
            self.path = path
        self._append(unit)

    def _header_for(self, unit: _Unit) -> _Unit | None:
        """The header row to put before a table row, if this chunk lacks it and both fit."""
        header = unit.row_header
        if header is None or any(u is header for u in self.units):
            return None
        return header if header.tokens + unit.tokens <= self.max else None

    def _append(self, unit: _Unit) -> None:
        self.units.append(unit)
        self.tokens += unit.tokens

    def _overlap(self, following: _Unit) -> list[_Unit]:
        """Trailing units to repeat before ``following``; rows only if it continues their table."""
        if self.overlap == 0:
            return []
        kept: list[_Unit] = []
        total = 0
        for unit in reversed(self.units):
            foreign_row = unit.table and unit.table != following.table
            if unit.header or unit.heading or foreign_row or total + unit.tokens > self.overlap:
                if not kept and not unit.table and not unit.heading:
                    return self._tail_words(unit)
                break
            kept.insert(0, unit)
            total += unit.tokens
        return kept

    def _tail_words(self, unit: _Unit) -> list[_Unit]:
        words = unit.text.split()
        counts = self.tokenizer.count_many(words)
        total, start = 0, len(words)
        while start > 0 and total + counts[start - 1] <= self.overlap:
            start -= 1
            total += counts[start]
        return [_Unit(" ".join(words[start:]), total, unit.page)] if start < len(words) else []

    def section_break(self) -> Iterator[ChunkDraft]:
        """A heading or an attachment starts: close the chunk unless it holds only headings."""
        if any(not u.heading for u in self.units):
            yield from self.flush()

    def flush(self) -> Iterator[ChunkDraft]:
        if not self.units:
            return
        parts: list[str] = []
        for index, unit in enumerate(self.units):
            if index:
                same_table = unit.table and unit.table == self.units[index - 1].table
                parts.append("\n" if same_table else "\n\n")
            parts.append(unit.text)
        text = "".join(parts)
        pages = [u.page for u in self.units if u.page is not None]
        count = self.tokenizer.count(text)
        self.units, self.tokens = [], 0
        if not text.strip():
            return
        yield ChunkDraft(
            self.ordinal,
            text,
            self.title,
            self.path,
            min(pages, default=None),
            max(pages, default=None),
            count,
        )
        self.ordinal += 1


def iter_chunks(
    blocks: Iterable[Block],
    *,
    max_tokens: int = 254,
    overlap_tokens: int = 32,
    tokenizer: Tokenizer | None = None,
    title: str = "",
) -> Iterator[ChunkDraft]:
    """Stream chunks from a stream of blocks (see the module docstring for the rules)."""
    packer = _Packer(max_tokens, overlap_tokens, tokenizer or default_tokenizer(), title)
    origin: tuple[str, ...] = ()
    for block in blocks:
        path = (*block.origin, *block.section_path)
        if block.origin != origin:
            yield from packer.flush()
            origin = block.origin
        elif block.kind == "heading":
            yield from packer.section_break()
        for unit in _units(block, packer):
            yield from packer.add(unit, path)
    yield from packer.flush()


def chunk(
    blocks: Iterable[Block],
    *,
    max_tokens: int = 254,
    overlap_tokens: int = 32,
    tokenizer: Tokenizer | None = None,
    title: str = "",
) -> list[ChunkDraft]:
    """All chunks of a document's blocks (:func:`iter_chunks` collected)."""
    return list(
        iter_chunks(
            blocks, max_tokens=max_tokens, overlap_tokens=overlap_tokens, tokenizer=tokenizer, title=title
        )
    )


def _units(block: Block, packer: _Packer) -> Iterator[_Unit]:
    tokenizer, limit = packer.tokenizer, packer.max
    if block.kind == "table":
        yield from _table_units(block, packer)
        return
    tokens = tokenizer.count(block.text)
    if tokens <= limit:
        yield _Unit(block.text, tokens, block.page, heading=block.kind == "heading")
        return
    yield from _split(block.text, block.page, tokenizer, limit)


def _split(text: str, page: int | None, tokenizer: Tokenizer, limit: int) -> Iterator[_Unit]:
    """A text longer than ``limit``: its sentences, and windows of words for overlong sentences."""
    sentences = [s for s in _SENTENCE.split(text) if s.strip()]
    for sentence, tokens in zip(sentences, tokenizer.count_many(sentences), strict=True):
        if tokens <= limit:
            yield _Unit(sentence, tokens, page)
            continue
        words = sentence.split()
        window: list[str] = []
        total = 0
        for word, count in zip(words, tokenizer.count_many(words), strict=True):
            if window and total + count > limit:
                yield _Unit(" ".join(window), total, page)
                window, total = [], 0
            if count > limit:  # a single "word" longer than a chunk (a hash, a URL): cut by characters
                yield from _cut_word(word, page, tokenizer, limit)
                continue
            window.append(word)
            total += count
        if window:
            yield _Unit(" ".join(window), total, page)


def _cut_word(word: str, page: int | None, tokenizer: Tokenizer, limit: int) -> Iterator[_Unit]:
    size = max(1, len(word) * limit // max(tokenizer.count(word), 1))
    while word:
        piece, size_now = word[:size], size
        while tokenizer.count(piece) > limit and size_now > 1:
            size_now //= 2
            piece = word[:size_now]
        yield _Unit(piece, tokenizer.count(piece), page)
        word = word[len(piece) :]


def _table_units(block: Block, packer: _Packer) -> Iterator[_Unit]:
    lines = block.text.split("\n")
    packer.tables += 1
    table = packer.tables
    has_header = len(lines) > 1 and set(lines[1].replace("|", "").split()) <= {"---"}
    header_text = "\n".join(lines[:2]) if has_header else ""
    rows = lines[2:] if has_header else lines
    header: _Unit | None = None
    if header_text:
        tokens = packer.tokenizer.count(header_text)
        if tokens > packer.max:
            yield from _table_pieces(header_text, block.page, packer, table)
        elif not rows:
            yield _Unit(header_text, tokens, block.page, table=table)
        else:
            header = _Unit(header_text, tokens, block.page, table=table, header=True)
    counts = packer.tokenizer.count_many(rows)
    for row, tokens in zip(rows, counts, strict=True):
        if tokens <= packer.max:
            yield _Unit(row, tokens, block.page, table=table, row_header=header)
        else:  # a row longer than a whole chunk: the only case where a row is split
            yield from _table_pieces(row, block.page, packer, table)


def _table_pieces(text: str, page: int | None, packer: _Packer, table: int) -> Iterator[_Unit]:
    for piece in _split(text, page, packer.tokenizer, packer.max):
        piece.table = table  # never the source of a word-level overlap
        yield piece
