"""Plain text (streamed, paragraphs at blank lines) and RTF (striprtf, then as plain text)."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator

from socle.knowledge.ingest.formats._common import TextBudget, clean
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, ParseLimits
from socle.knowledge.ingest.sniff import decode_text, text_encoding
from socle.knowledge.ingest.source import Source

__all__ = ["parse_rtf", "parse_text", "text_paragraphs"]

_MAX_PARAGRAPH = 20_000  # characters; a text without blank lines is cut into blocks of this size


def text_paragraphs(lines: Iterable[str]) -> Iterator[Block]:
    """Blocks from lines of text: a blank line ends a paragraph."""
    current: list[str] = []
    size = 0
    for line in lines:
        if line.strip():
            current.append(line)
            size += len(line)
            if size < _MAX_PARAGRAPH:
                continue
        text = clean("\n".join(current))
        current, size = [], 0
        if text:
            yield Block("paragraph", text)
    text = clean("\n".join(current))
    if text:
        yield Block("paragraph", text)


def parse_text(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    encoding = text_encoding(source.head(8192)) or "cp1252"
    budget = TextBudget(info, limits)
    with source.open() as raw, io.TextIOWrapper(raw, encoding=encoding, errors="replace") as text:
        yield from map(budget, text_paragraphs(text))


def parse_rtf(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    from striprtf.striprtf import rtf_to_text

    data = source.read()
    text = rtf_to_text(decode_text(data, "cp1252"), errors="replace")  # type: ignore[no-untyped-call]
    budget = TextBudget(info, limits)
    yield from map(budget, text_paragraphs(text.splitlines()))
