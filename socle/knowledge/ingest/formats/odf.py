"""OpenDocument text (ODT): ``content.xml`` streamed with a hardened ``iterparse``.

Headings carry their outline level; lists their nesting; tables become Markdown tables. Elements are
cleared once emitted, so memory follows the largest top-level element, not the document.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from typing import Any

from socle.knowledge.ingest.formats._common import TextBudget, clean, markdown_table
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, Outline, ParseLimits
from socle.knowledge.ingest.source import Source

__all__ = ["parse_odt"]

_TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
_TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
_OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
_DC = "{http://purl.org/dc/elements/1.1/}"


def _text(element: Any) -> str:
    """An element's text, with ODF's space, tab and line-break elements rendered; notes left out."""
    parts = [element.text or ""]
    for child in element:
        tag = child.tag
        if tag == f"{_TEXT}s":
            parts.append(" " * int(child.get(f"{_TEXT}c", "1")))
        elif tag == f"{_TEXT}tab":
            parts.append("\t")
        elif tag == f"{_TEXT}line-break":
            parts.append("\n")
        elif tag not in (f"{_TEXT}note", f"{_OFFICE}annotation"):
            parts.append(_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _table(element: Any) -> str:
    rows = []
    for row in element.iter(f"{_TABLE}table-row"):
        cells = []
        for cell in row:
            if cell.tag not in (f"{_TABLE}table-cell", f"{_TABLE}covered-table-cell"):
                continue
            text = " ".join(
                clean(_text(p)) for p in cell if p.tag in (f"{_TEXT}p", f"{_TEXT}h", f"{_TEXT}list")
            )
            repeat = min(int(cell.get(f"{_TABLE}number-columns-repeated", "1")), 64)
            cells.extend([text] * repeat)
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            rows.append(cells)
    return markdown_table(rows)


def parse_odt(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    from defusedxml.ElementTree import iterparse, parse

    outline, budget = Outline(), TextBudget(info, limits)
    with source.open() as file, zipfile.ZipFile(file) as archive:
        if "meta.xml" in archive.namelist():
            with archive.open("meta.xml") as meta:
                title = parse(meta).getroot().find(f".//{_DC}title")
                info.title = clean(title.text or "") if title is not None else ""
        with archive.open("content.xml") as content:
            depth = {"table": 0, "list": 0}
            for event, element in iterparse(content, events=("start", "end")):
                block = _event(event, element, depth, outline)
                if block is not None:
                    yield budget(block)


def _event(event: str, element: Any, depth: dict[str, int], outline: Outline) -> Block | None:
    tag = element.tag
    kind = "table" if tag == f"{_TABLE}table" else "list" if tag == f"{_TEXT}list" else None
    if kind is not None:
        depth[kind] += 1 if event == "start" else -1
    if event != "end":
        return None
    block: Block | None = None
    if tag == f"{_TABLE}table" and depth["table"] == 0:
        text = _table(element)
        block = Block("table", text, 0, outline.path) if text else None
        element.clear()
    elif depth["table"] == 0 and tag in (f"{_TEXT}h", f"{_TEXT}p"):
        text = clean(_text(element))
        if text and tag == f"{_TEXT}h":
            level = int(element.get(f"{_TEXT}outline-level", "1"))
            block = Block("heading", text, level, outline.enter(level, text))
        elif text and depth["list"]:
            block = Block("list", f"- {text}", depth["list"], outline.path)
        elif text:
            block = Block("paragraph", text, 0, outline.path)
        if depth["list"] == 0:
            element.clear()
    return block
