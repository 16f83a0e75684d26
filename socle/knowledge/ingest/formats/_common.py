"""Helpers every format parser shares: Markdown tables, whitespace, the text budget."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from socle.knowledge.ingest.errors import DocumentTooLargeError
from socle.knowledge.ingest.model import Block, DocumentInfo, ParseLimits

__all__ = ["TABLE_BATCH_ROWS", "TextBudget", "clean", "markdown_table", "table_blocks"]

_SPACES = re.compile(r"[ \t\r\f\v\u00a0\u200b]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
TABLE_BATCH_ROWS = 200
"""Long tables are emitted as several table blocks of this many rows, each with the header repeated,
so a million-row sheet streams in bounded memory."""


def clean(text: str) -> str:
    """Collapse runs of spaces, keep single line breaks, trim."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return _SPACES.sub(" ", text.replace("\r", " ").replace("\n", " ")).strip().replace("|", "\\|")


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """Render rows as a Markdown pipe table: one row per line, the first row as the header."""
    cells = [[_cell(v) for v in row] for row in rows]
    width = max((len(r) for r in cells), default=0)
    if width == 0:
        return ""
    lines = []
    for index, row in enumerate(cells):
        lines.append("| " + " | ".join(row + [""] * (width - len(row))) + " |")
        if index == 0:
            lines.append("|" + " --- |" * width)
    return "\n".join(lines)


def table_blocks(
    rows: Iterable[Sequence[object]], *, section_path: tuple[str, ...], page: int | None
) -> Iterator[Block]:
    """Stream rows as table blocks of at most :data:`TABLE_BATCH_ROWS` rows, header repeated."""
    header: list[object] | None = None
    batch: list[Sequence[object]] = []
    emitted = False
    for row in rows:
        if header is None:
            header = list(row)
            continue
        batch.append(row)
        if len(batch) >= TABLE_BATCH_ROWS:
            yield Block("table", markdown_table([header, *batch]), 0, section_path, page)
            batch, emitted = [], True
    if header is not None and (batch or not emitted):
        yield Block("table", markdown_table([header, *batch]), 0, section_path, page)


class TextBudget:
    """Counts extracted characters and stops a document that exceeds ``max_text_chars``."""

    __slots__ = ("_info", "_left")

    def __init__(self, info: DocumentInfo, limits: ParseLimits) -> None:
        self._info = info
        self._left = limits.max_text_chars

    def __call__(self, block: Block) -> Block:
        self._left -= len(block.text)
        if self._left < 0:
            name = self._info.filename
            raise DocumentTooLargeError(f"{name}: too much text (limit exceeded)", filename=name)
        return block
