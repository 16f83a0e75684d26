"""Parsing and chunking one document, in a separate process that cannot take the server down with it.

The ingestion worker sends a document's bytes here, through a one-process pool (``spawn``: no state
inherited from the server's threads), and gets back plain, picklable data: a :class:`Parsed` document or
a :class:`ParseFailure` with the per-document status. The child process limits its own address space
(``parse_memory_bytes``), so a document that would need more fails as ``too_large``; a crash of a
native parser library breaks only the pool, which the worker rebuilds (the document fails as
``corrupt``).

The parsers and chunker are :mod:`socle.knowledge.ingest`.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Draft", "ParseFailure", "Parsed", "limit_memory", "parse_document"]


@dataclass(frozen=True, slots=True)
class Draft:
    ordinal: int
    text: str
    title: str | None
    section_path: tuple[str, ...]
    page_start: int | None
    page_end: int | None
    token_count: int


@dataclass(frozen=True, slots=True)
class Parsed:
    title: str
    mime: str
    pages: int | None
    chunks: list[Draft]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ParseFailure:
    status: str
    message: str


def limit_memory(max_bytes: int) -> None:
    """Pool initializer: cap the child's address space (Linux; a no-op where it cannot be set)."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    except (ValueError, OSError):  # pragma: no cover - platform without RLIMIT_AS
        pass


_tokenizer: Any = None


def parse_document(
    data: bytes, filename: str, max_tokens: int, overlap_tokens: int, max_bytes: int
) -> Parsed | ParseFailure:
    """Parse and chunk ``data`` (runs in the child process)."""
    from socle.knowledge import ingest  # imported in the child only: the server never loads the parsers

    global _tokenizer
    try:
        if _tokenizer is None:
            _tokenizer = ingest.default_tokenizer()
        document = ingest.parse(data, filename, limits=ingest.ParseLimits(max_bytes=max_bytes))
        blocks = [*document.blocks, *_attachment_blocks(document)]
        drafts = ingest.chunk(
            blocks,
            max_tokens=max_tokens,
            overlap_tokens=overlap_tokens,
            tokenizer=_tokenizer,
            title=document.title,
        )
    except ingest.IngestError as exc:
        return ParseFailure(type(exc).status, exc.message)
    except MemoryError:
        return ParseFailure("too_large", f"{filename}: the document needs more memory than allowed to parse")
    chunks = [
        Draft(
            d.ordinal, d.text, d.title or None, tuple(d.section_path), d.page_start, d.page_end, d.token_count
        )
        for d in drafts
    ]
    return Parsed(document.title, document.mime, document.pages, chunks, dict(document.metadata))


def _attachment_blocks(document: Any) -> list[Any]:
    """Blocks of attachments (recursively), marked with their origin, after the body's."""
    from dataclasses import replace

    blocks: list[Any] = []
    for attachment in document.attachments:
        for block in [*attachment.blocks, *_attachment_blocks(attachment)]:
            blocks.append(replace(block, origin=(attachment.filename, *block.origin)))
    return blocks
