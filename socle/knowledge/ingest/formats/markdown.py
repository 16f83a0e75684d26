"""Markdown through markdown-it-py (CommonMark plus pipe tables): headings, lists, tables, code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from socle.knowledge.ingest.formats._common import TextBudget, clean, markdown_table
from socle.knowledge.ingest.formats.html import html_blocks
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, Outline, ParseLimits
from socle.knowledge.ingest.sniff import decode_text, text_encoding
from socle.knowledge.ingest.source import Source

__all__ = ["parse_markdown"]


def _inline(token: Any) -> str:
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "html_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append("\n" if child.type == "hardbreak" else " ")
        elif child.type == "image":
            parts.append(child.content)
    return clean("".join(parts))


def parse_markdown(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    from markdown_it import MarkdownIt

    data = source.read()
    text = decode_text(data, text_encoding(data[:8192]) or "cp1252")
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    outline, budget = Outline(), TextBudget(info, limits)
    lists = 0
    heading = 0
    table: list[list[str]] | None = None
    for token in tokens:
        kind = token.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            lists += 1
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists -= 1
        elif kind == "heading_open":
            heading = int(token.tag[1])
        elif kind == "table_open":
            table = []
        elif kind == "tr_open" and table is not None:
            table.append([])
        elif kind == "table_close" and table is not None:
            yield budget(Block("table", markdown_table(table), 0, outline.path))
            table = None
        elif kind in ("fence", "code_block") and token.content.strip():
            yield budget(Block("code", token.content.rstrip("\n"), 0, outline.path))
        elif kind == "html_block" and token.content.strip():
            yield from map(budget, html_blocks(token.content, outline)[0])
        elif kind == "inline":
            content = _inline(token)
            if table is not None:
                table[-1].append(content)
            elif heading:
                yield budget(Block("heading", content, heading, outline.enter(heading, content)))
                heading = 0
            elif content and lists:
                yield budget(Block("list", f"- {content}", lists, outline.path))
            elif content:
                yield budget(Block("paragraph", content, 0, outline.path))
