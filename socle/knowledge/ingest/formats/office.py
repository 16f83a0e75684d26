"""Word (DOCX) and PowerPoint (PPTX) documents, through python-docx and python-pptx.

The container has passed the ZIP checks before these libraries open it. Word headings come from the
paragraph style (``Title``, ``Heading N`` and its translations) or an explicit outline level; list items
from numbering properties. Each slide is a page: its title is a level-1 heading, then its text frames
and tables in reading order (top to bottom, left to right), then its speaker notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from socle.knowledge.ingest.errors import UnsupportedFormatError
from socle.knowledge.ingest.formats._common import TextBudget, clean, markdown_table
from socle.knowledge.ingest.model import Attachment, Block, DocumentInfo, Outline, ParseLimits
from socle.knowledge.ingest.source import Source

__all__ = ["parse_docx", "parse_pptx"]

_HEADING_STYLE = re.compile(
    r"^(?:heading|titre|überschrift|kop|título|titolo|rubrik|nagłówek)\s*(\d)$", re.IGNORECASE
)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_M = "{http://schemas.openxmlformats.org/officeDocument/2006/math}"
_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"


def parse_docx(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    import docx
    from docx.text.paragraph import Paragraph

    with source.open() as file:
        try:
            document = docx.Document(file)
        except KeyError as exc:  # no officeDocument relationship of the Transitional namespace
            raise UnsupportedFormatError(
                f"{info.filename}: Strict Open XML documents are not supported; save as a regular .docx",
                filename=info.filename,
            ) from exc
    props = document.core_properties
    info.title = (props.title or "").strip()
    info.metadata.update({k: v for k, v in (("author", props.author), ("subject", props.subject)) if v})
    if props.created is not None:
        info.metadata["created"] = props.created.isoformat()
    outline, budget = Outline(), TextBudget(info, limits)
    for element in _body_elements(document.element.body):
        if element.tag == f"{_W}tbl":
            text = markdown_table(_docx_rows(element))
            if text:
                yield budget(Block("table", text, 0, outline.path))
            continue
        block = _docx_paragraph(Paragraph(element, document), outline)
        if block is not None:
            yield budget(block)


def _body_elements(parent: Any) -> Iterator[Any]:
    """Paragraphs and tables of the body in order, including those inside content controls."""
    for child in parent.iterchildren():
        if child.tag in (f"{_W}p", f"{_W}tbl"):
            yield child
        elif child.tag == f"{_W}sdt":
            content = child.find(f"{_W}sdtContent")
            if content is not None:
                yield from _body_elements(content)


def _xml_text(element: Any) -> str:
    """All the text under an element: runs, text boxes, drawings, equations; tabs and breaks kept.
    The VML fallback of a text box repeats its DrawingML text, so it is skipped."""
    parts: list[str] = []
    _collect_text(element, parts)
    return "".join(parts)


def _collect_text(node: Any, parts: list[str]) -> None:
    tag = node.tag
    if tag == _FALLBACK:
        return
    if tag in (f"{_W}t", f"{_M}t"):
        parts.append(node.text or "")
    elif tag in (f"{_W}tab", f"{_W}br", f"{_W}cr", f"{_W}p"):
        parts.append(" " if tag == f"{_W}tab" else "\n")
    for child in node.iterchildren():
        _collect_text(child, parts)


def _docx_rows(table: Any) -> list[list[str]]:
    """Rows of a Word table read from its XML (sturdier than python-docx's grid on odd tables);
    a cell spanning columns is repeated in each, as it reads in the grid."""
    rows = []
    for tr in table.iterchildren(f"{_W}tr"):
        cells = []
        for tc in tr.iterchildren(f"{_W}tc"):
            text = _xml_text(tc)
            span = tc.find(f"{_W}tcPr/{_W}gridSpan")
            repeat = int(span.get(f"{_W}val", "1")) if span is not None else 1
            cells.extend([clean(text)] * min(max(repeat, 1), 64))
        rows.append(cells)
    return rows


def _docx_paragraph(paragraph: Any, outline: Outline) -> Block | None:
    text = clean(_xml_text(paragraph._p))
    if not text:
        return None
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    level = _heading_level(style, paragraph._p)
    if level:
        return Block("heading", text, level, outline.enter(level, text))
    ppr = paragraph._p.pPr
    numbering = ppr.numPr if ppr is not None else None
    if numbering is not None or style.lower().startswith("list"):
        depth = 1
        if numbering is not None and numbering.ilvl is not None and numbering.ilvl.val is not None:
            depth = int(numbering.ilvl.val) + 1
        return Block("list", f"- {text}", depth, outline.path)
    return Block("paragraph", text, 0, outline.path)


def _heading_level(style: str, element: Any) -> int:
    if style.lower() in ("title", "titre", "titel"):
        return 1
    match = _HEADING_STYLE.match(style.strip())
    if match:
        return max(1, int(match.group(1)))
    found = element.find(f"{_W}pPr/{_W}outlineLvl")
    if found is not None:
        value = found.get(f"{_W}val", "9")
        if value.isdigit() and int(value) < 9:
            return int(value) + 1
    return 0


def parse_pptx(source: Source, info: DocumentInfo, limits: ParseLimits) -> Iterator[Block | Attachment]:
    import pptx

    with source.open() as file:
        presentation = pptx.Presentation(file)
    props = presentation.core_properties
    info.title = (props.title or "").strip()
    if props.author:
        info.metadata["author"] = props.author
    info.pages = len(presentation.slides)
    budget = TextBudget(info, limits)
    for number, slide in enumerate(presentation.slides, start=1):
        for block in _slide(slide, number):
            yield budget(block)


def _slide(slide: Any, number: int) -> Iterator[Block]:
    title_shape = slide.shapes.title
    title = (
        clean(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
    )
    path: tuple[str, ...] = (title,) if title else ()
    if title:
        yield Block("heading", title, 1, path, number)
    for shape in _ordered(slide.shapes):
        if title_shape is not None and shape.shape_id == title_shape.shape_id:
            continue
        yield from _shape(shape, path, number)
    if slide.has_notes_slide:
        notes = clean(slide.notes_slide.notes_text_frame.text if slide.notes_slide.notes_text_frame else "")
        if notes:
            yield Block("paragraph", f"Notes: {notes}", 0, path, number)


def _ordered(shapes: Any) -> list[Any]:
    return sorted(shapes, key=lambda s: ((s.top or 0) // 20000, s.left or 0))


def _shape(shape: Any, path: tuple[str, ...], page: int) -> Iterator[Block]:
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [[cell.text for cell in row.cells] for row in shape.table.rows]
        text = markdown_table(rows)
        if text:
            yield Block("table", text, 0, path, page)
        return
    try:
        kind = shape.shape_type
    except NotImplementedError:  # a shape python-pptx does not model: its text is still read below
        kind = None
    if kind is not None and int(kind) == 6:  # a group: its shapes in order
        for child in _ordered(shape.shapes):
            yield from _shape(child, path, page)
        return
    if not getattr(shape, "has_text_frame", False) or not shape.has_text_frame:
        return
    for paragraph in shape.text_frame.paragraphs:
        text = clean("".join(run.text for run in paragraph.runs) or paragraph.text)
        if not text:
            continue
        bulleted = (
            paragraph.level > 0
            or paragraph._p.find(
                "{http://schemas.openxmlformats.org/drawingml/2006/main}pPr/"
                "{http://schemas.openxmlformats.org/drawingml/2006/main}buChar"
            )
            is not None
        )
        if bulleted:
            yield Block("list", f"- {text}", paragraph.level + 1, path, page)
        else:
            yield Block("paragraph", text, 0, path, page)
