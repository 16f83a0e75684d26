"""What parsing produces: blocks of text with their place in the document, and the limits it obeys.

A parser turns a file into a flat sequence of :class:`Block` s in reading order. Structure survives as
data on each block (its kind, heading level, section path and page), not as a tree, so documents of any
size can be streamed block by block and chunked without holding the whole document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Attachment", "Block", "BlockKind", "DocumentInfo", "Outline", "ParseLimits", "ParsedDocument"]

BlockKind = Literal["heading", "paragraph", "list", "table", "code", "caption"]


@dataclass(frozen=True, slots=True)
class Block:
    """One unit of content in reading order.

    ``level`` is the heading level (1 = top) for headings, the nesting depth (1 = top) for list items,
    and 0 otherwise. ``section_path`` lists the headings the block sits under; a heading's own path ends
    with itself. ``page`` is 1-based where the format has pages (PDF pages, PPTX slides, XLSX sheets
    count as pages too: see docs/ingestion.md), else None. Tables are Markdown pipe tables, one row per
    line, the header row first then the ``| --- |`` separator. ``origin`` is empty for the document
    itself and names the attachment chain (e.g. ``("report.pdf",)``) for blocks of attachments.
    """

    kind: BlockKind
    text: str
    level: int = 0
    section_path: tuple[str, ...] = ()
    page: int | None = None
    origin: tuple[str, ...] = ()


@dataclass(slots=True)
class ParsedDocument:
    """A whole parsed document; ``attachments`` are parsed recursively (e-mail attachments)."""

    title: str
    mime: str
    pages: int | None
    blocks: list[Block]
    attachments: list[ParsedDocument] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    filename: str = ""


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds that keep parsing safe on hostile or huge files (defaults suit a single server).

    ``on_extension_mismatch``: ``"refuse"`` raises :class:`~.errors.WrongExtensionError` when the content
    is a different format than the extension claims; ``"parse"`` parses by content and records the
    mismatch in ``metadata["extension_mismatch"]``.
    """

    max_bytes: int = 200 * 1024 * 1024
    max_pages: int = 10_000
    max_text_chars: int = 100_000_000
    max_unpacked_bytes: int = 1024 * 1024 * 1024
    max_compression_ratio: float = 200.0
    max_archive_entries: int = 20_000
    max_attachment_depth: int = 3
    max_attachments: int = 100
    on_extension_mismatch: Literal["refuse", "parse"] = "refuse"


@dataclass(slots=True)
class DocumentInfo:
    """Document-level facts a parser fills in as it goes (final once its blocks are exhausted)."""

    filename: str
    mime: str
    title: str = ""
    pages: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Attachment:
    """An embedded file a parser found (e-mail attachment); parsed recursively by the caller."""

    filename: str
    data: bytes


class Outline:
    """The stack of open headings, turning heading levels into section paths."""

    __slots__ = ("_stack",)

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        """Open a heading of ``level``; return its section path (ending with itself)."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, title))
        return self.path

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(title for _, title in self._stack)

    def reset(self) -> None:
        self._stack.clear()
