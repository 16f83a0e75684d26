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
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from socle.knowledge.ingest.model import Block
from socle.knowledge.ingest.tokens import Tokenizer, default_tokenizer

__all__ = ["ChunkDraft", "chunk", "iter_chunks"]

_SENTENCE = re.compile(r"(?<=[.!?;:。])\s+|\n+")
_CHARS_PER_TOKEN = 32
"""A unit's character cap per token of ``max_tokens``: text averages 4-6 characters a token, but a
WordPiece tokenizer reads a 2 MB unspaced blob as one ``[UNK]``, which must not become a 2 MB chunk."""


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
        self.chars = 0
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
        full = self.chars + len(unit.text) > self.max * _CHARS_PER_TOKEN
        if self.units and (self.tokens + need > self.max or full):
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
        self.chars += len(unit.text)

    def _overlap(self, following: _Unit) -> list[_Unit]:
        """Trailing units to repeat before ``following``; rows only if it continues their table."""
        if self.overlap == 0:
            return []
        kept: list[_Unit] = []
        total = chars = 0
        for unit in reversed(self.units):
            foreign_row = unit.table and unit.table != following.table
            too_long = (
                total + unit.tokens > self.overlap or chars + len(unit.text) > self.overlap * _CHARS_PER_TOKEN
            )
            if unit.header or unit.heading or foreign_row or too_long:
                if not kept and not unit.table and not unit.heading:
                    return self._tail_words(unit)
                break
            kept.insert(0, unit)
            total += unit.tokens
            chars += len(unit.text)
        return kept

    def _tail_words(self, unit: _Unit) -> list[_Unit]:
        """The longest tail of ``unit`` that starts a word and fits the overlap. Only the unit's end is
        tokenized (``overlap`` x 8 characters), unless the overlap could reach further back."""
        text, max_chars = unit.text, self.overlap * _CHARS_PER_TOKEN
        for size in (self.overlap * 8, len(text)):
            offset = max(0, len(text) - size)
            piece = text[offset:]
            spans = self.tokenizer.spans(piece)
            tail = len(spans)
            for index in range(len(spans) - 1, -1, -1):
                if len(spans) - index > self.overlap or len(piece) - spans[index][0] > max_chars:
                    break  # the overlap is full: the tail found so far is the answer
                if spans[index][0] > (spans[index - 1][1] if index else 0) or offset == index == 0:
                    tail = index  # a token that starts a word
            else:
                if offset:  # reached the start of the piece: the overlap may reach further back
                    continue
            return [_Unit(piece[spans[tail][0] :], len(spans) - tail, unit.page)] if tail < len(spans) else []
        return []  # pragma: no cover - the last size is the whole unit

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
        self.units, self.tokens, self.chars = [], 0, 0
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
    spans = tokenizer.spans(block.text)
    if len(spans) <= limit and len(block.text) <= limit * _CHARS_PER_TOKEN:
        yield _Unit(block.text, len(spans), block.page, heading=block.kind == "heading")
        return
    yield from _split(block.text, block.page, tokenizer, limit, spans)


def _split(
    text: str, page: int | None, tokenizer: Tokenizer, limit: int, spans: list[tuple[int, int]] | None = None
) -> Iterator[_Unit]:
    """A text longer than ``limit``: its sentences, and windows of words for overlong sentences.

    One tokenizer pass gives every token's character range; sentences and windows are then ranges of
    tokens, found by bisection and one scan, so the time is linear in the text however long its
    sentences (re-tokenizing each sentence and then each word of an overlong one cost five passes).
    """
    spans = tokenizer.spans(text) if spans is None else spans
    starts = [start for start, _ in spans]
    position = 0
    for separator in [*_SENTENCE.finditer(text), None]:
        end = separator.start() if separator is not None else len(text)
        if text[position:end].strip():
            first, last = bisect_left(starts, position), bisect_left(starts, end)
            if last - first <= limit and end - position <= limit * _CHARS_PER_TOKEN:
                yield _Unit(text[position:end], last - first, page)
            else:
                yield from _windows(text, spans, first, last, page, tokenizer, limit)
        position = separator.end() if separator is not None else end


def _windows(
    text: str,
    spans: list[tuple[int, int]],
    first: int,
    last: int,
    page: int | None,
    tokenizer: Tokenizer,
    limit: int,
) -> Iterator[_Unit]:
    """Tokens ``first..last`` of ``text`` in windows of at most ``limit`` tokens and ``limit *
    _CHARS_PER_TOKEN`` characters, each ending at a word boundary (a gap between two tokens) when the
    window has one; only a "word" longer than a window (a hash, an unspaced script) is cut inside, and
    those pieces are counted again (a word's tail tokenizes differently alone)."""
    max_chars = limit * _CHARS_PER_TOKEN
    done = spans[first][0]  # tokens may share characters (byte-level BPE): never emit one twice
    while first < last:
        begin = max(spans[first][0], done)
        stop = first + 1
        while stop < last and stop - first < limit and spans[stop][1] - begin <= max_chars:
            stop += 1
        cut = stop
        while cut > first + 1 and cut < last and spans[cut][0] <= spans[cut - 1][1]:
            cut -= 1  # back to the last word boundary in the window
        inside = cut < last and spans[cut][0] <= spans[cut - 1][1]
        if inside:
            cut = stop
        end = max(spans[cut - 1][1], begin)
        if inside or end - begin > max_chars:
            yield from _counted(text, begin, end, page, tokenizer, limit)
        else:
            yield _Unit(text[begin:end], cut - first, page)
        first, done = cut, end


def _counted(
    text: str, begin: int, end: int, page: int | None, tokenizer: Tokenizer, limit: int
) -> Iterator[_Unit]:
    """``text[begin:end]`` in pieces of at most ``limit`` tokens (counted) and the character cap."""
    max_chars = limit * _CHARS_PER_TOKEN
    while begin < end:
        size = min(end - begin, max_chars)
        count = tokenizer.count(text[begin : begin + size])
        while count > limit and size > 1:
            size //= 2
            count = tokenizer.count(text[begin : begin + size])
        yield _Unit(text[begin : begin + size], count, page)
        begin += size


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
