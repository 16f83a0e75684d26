"""HTML with the standard library's tokenizer: headings, paragraphs, lists, tables, code.

No DOM is built: the parser walks start and end tags, flushing text at each block-level boundary, so
memory follows the largest block, not the page. Scripts, styles, navigation chrome and forms are
skipped. Tables become Markdown tables (nested tables flatten into their cell's text).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from html.parser import HTMLParser

from socle.knowledge.ingest.formats._common import TextBudget, clean, markdown_table
from socle.knowledge.ingest.model import Attachment, Block, BlockKind, DocumentInfo, Outline, ParseLimits
from socle.knowledge.ingest.sniff import text_encoding
from socle.knowledge.ingest.source import Source

__all__ = ["HtmlBlocks", "html_blocks", "parse_html"]

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "head", "nav", "select", "button", "iframe"}
)
_BLOCKS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "footer", "aside", "blockquote", "form",
        "figure", "figcaption", "dl", "dt", "dd", "address", "center", "details", "summary", "hr", "body",
        "html", "fieldset", "caption",
    }
)  # fmt: skip
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BR = "\ue000"  # a private-use mark for <br>, so source newlines can be collapsed as whitespace
_VOID = frozenset({"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"})


class HtmlBlocks(HTMLParser):
    """Feed HTML text; collect blocks in ``ready`` as they complete."""

    def __init__(self, outline: Outline | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.outline = outline or Outline()
        self.ready: list[Block] = []
        self.title = ""
        self._text: list[str] = []
        self._kind: BlockKind = "paragraph"
        self._heading = 0
        self._skip: list[str] = []
        self._in_title = False
        self._lists: list[str] = []
        self._pre = 0
        self._tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip:
            if tag not in _VOID:
                self._skip.append(tag)
            return
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skip.append(tag)
        elif tag == "table":
            self._start_table()
        elif self._tables:
            self._table_tag(tag, start=True)
        elif tag in _HEADINGS:
            self._flush()
            self._heading = _HEADINGS[tag]
        elif tag in ("ul", "ol"):
            self._flush()
            self._lists.append(tag)
        elif tag == "li":
            self._flush()
            self._kind = "list"
        elif tag == "pre":
            self._flush()
            self._pre += 1
            self._kind = "code"
        elif tag == "br":
            self._text.append(_BR)
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if self._skip[-1] == tag:
                self._skip.pop()
            return
        if tag == "title":
            self._in_title = False
        elif tag == "table":
            self._end_table()
        elif self._tables:
            self._table_tag(tag, start=False)
        elif tag in _HEADINGS or tag == "li" or tag in _BLOCKS:
            self._flush()
        elif tag in ("ul", "ol"):
            self._flush()
            if self._lists:
                self._lists.pop()
        elif tag == "pre":
            self._flush()
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._in_title:
            self.title += data
        elif self._cell is not None:
            self._cell.append(data)
        else:
            self._text.append(data)

    def _start_table(self) -> None:
        if self._tables and self._cell is not None:
            self._tables.append([])  # nested: its cells land in the outer cell's text
            return
        self._flush()
        self._tables.append([])

    def _end_table(self) -> None:
        if not self._tables:
            return
        rows = self._tables.pop()
        if self._tables:
            if self._cell is not None:
                self._cell.append(" ".join(" ".join(r) for r in rows))
            return
        self._close_cell()
        rows = [r for r in rows if any(c.strip() for c in r)]
        text = markdown_table(rows)
        if text:
            self.ready.append(Block("table", text, 0, self.outline.path))

    def _table_tag(self, tag: str, *, start: bool) -> None:
        rows = self._tables[-1]
        if len(self._tables) > 1:
            if tag in ("td", "th", "br", "p", "div") and self._cell is not None:
                self._cell.append(" ")
            return
        if tag == "tr" and start:
            self._close_cell()
            rows.append([])
        elif tag in ("td", "th") and start:
            self._close_cell()
            if not rows:
                rows.append([])
            self._cell = []
        elif tag in ("td", "th"):
            self._close_cell()
        elif tag in ("br", "p", "div", "li") and self._cell is not None:
            self._cell.append(" ")

    def _close_cell(self) -> None:
        if self._cell is not None and self._tables and self._tables[-1]:
            self._tables[-1][-1].append(clean("".join(self._cell)).replace("\n", " "))
        self._cell = None

    def _flush(self) -> None:
        raw = "".join(self._text)
        self._text = []
        text = raw.strip("\n") if self._pre else clean(" ".join(raw.split()).replace(_BR, "\n"))
        kind, self._kind = self._kind, "paragraph"
        heading, self._heading = self._heading, 0
        if not text.strip():
            return
        if heading:
            text = " ".join(text.split())
            self.ready.append(Block("heading", text, heading, self.outline.enter(heading, text)))
        elif kind == "list":
            self.ready.append(Block("list", f"- {text}", max(1, len(self._lists)), self.outline.path))
        else:
            self.ready.append(Block(kind, text, 0, self.outline.path))

    def close(self) -> None:
        super().close()
        self._flush()


def html_blocks(text: str, outline: Outline | None = None) -> tuple[list[Block], str]:
    """Parse an HTML string (e-mail bodies); return its blocks and its <title>."""
    parser = HtmlBlocks(outline)
    parser.feed(text)
    parser.close()
    return parser.ready, clean(parser.title)


def parse_html(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    encoding = text_encoding(source.head(8192)) or "cp1252"
    parser = HtmlBlocks()
    budget = TextBudget(info, limits)
    with source.open() as file:
        decoder = _decoder(encoding)
        while chunk := file.read(1 << 16):
            parser.feed(decoder(chunk))
            yield from map(budget, parser.ready)
            parser.ready.clear()
    parser.close()
    info.title = clean(parser.title) or info.title
    yield from map(budget, parser.ready)


def _decoder(encoding: str) -> Callable[[bytes], str]:
    incremental = codecs.getincrementaldecoder(encoding)(errors="replace")
    return lambda data: incremental.decode(data)
