"""Every supported format parsed from real documents: text, structure (headings and section paths),
pages, tables as Markdown rows, attachments; and the whole test corpus never crashes the parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from socle.knowledge.ingest import IngestError, ParsedDocument, parse

DOCLING = "docling/tests/data"
UNSTRUCTURED = "unstructured/example-docs"


def _parse(docs: Path, relative: str) -> ParsedDocument:
    path = docs / relative
    return parse(path, path.name)


def _block(doc: ParsedDocument, contains: str) -> tuple[str, tuple[str, ...], int | None]:
    for block in doc.blocks:
        if contains in block.text:
            return block.kind, block.section_path, block.page
    raise AssertionError(f"no block contains {contains!r}: {[b.text[:60] for b in doc.blocks]}")


def test_pdf_pages_headings_and_section_paths(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/pdf/sources/multi_page.pdf")
    assert (doc.mime, doc.pages, doc.title) == ("application/pdf", 5, "The Evolution of the Word Processor")
    assert _block(doc, "The Birth of Word Processing")[0] == "heading"
    kind, path, page = _block(doc, "WordStar was one of the first")
    assert (kind, path, page) == ("list", ("The Rise of Personal Computers (1980s)",), 1)
    assert _block(doc, "Microsoft Office Suite")[2] == 2
    assert all(b.page is not None and 1 <= b.page <= 5 for b in doc.blocks)


def test_french_pdf_keeps_accents_nested_sections_and_rejoins_hyphenated_words(docs: Path) -> None:
    doc = _parse(docs, f"{UNSTRUCTURED}/language-docs/fr_olap.pdf")
    assert doc.pages == 12
    kind, path, page = _block(doc, "3.1 Définitions préliminaires")
    assert (kind, path, page) == ("heading", ("3 Le langage QSL", "3.1 Définitions préliminaires"), 3)
    assert "l’exploitation et la fouille" in _text(doc)


def test_docx_headings_lists_and_tables(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/docx/sources/word_sample.docx")
    assert doc.title == "Swimming in the lake" and doc.metadata["author"] == "Christoph Auer"
    assert _block(doc, "Let’s eat")[:2] == ("heading", ("Let’s swim!", "Let’s eat"))
    assert _block(doc, "Paddle about")[0] == "list"
    table = next(b.text for b in doc.blocks if b.kind == "table").split("\n")
    assert table[:3] == [
        "|  | Food | Calories per portion |",
        "| --- | --- | --- |",
        "| Leaves | Ash, Elm, Maple | 50 |",
    ]


def test_pptx_slides_are_pages_with_titles_tables_and_notes(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/pptx/sources/powerpoint_sample.pptx")
    assert doc.pages == 3
    assert _block(doc, "Second slide title")[::2] == ("heading", 2)
    assert _block(doc, "A rectangle shape")[1:] == (("Second slide title",), 2)
    assert _block(doc, "Notes: Some notes on the second slide.")[2] == 2
    assert _block(doc, "| --- |")[0] == "table"


def test_xlsx_sheets_become_pages_and_tables(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/xlsx/sources/xlsx_01.xlsx")
    assert doc.pages == 4 and doc.title == "xlsx_01"
    kind, path, page = _block(doc, "| first | second | third |")
    assert (kind, path, page) == ("table", ("Sheet1",), 1)
    assert "| 1 | 5 | 9 |" in _text(doc)


@pytest.mark.parametrize(
    ("relative", "row"),
    [
        (f"{DOCLING}/csv/sources/csv-comma.csv", "| 1 | DD37Cf93aecA6Dc | Sheryl | Baxter |"),
        (f"{DOCLING}/csv/sources/csv-semicolon.csv", "| 1 | DD37Cf93aecA6Dc | Sheryl | Baxter |"),
        (f"{UNSTRUCTURED}/stanley-cups-utf-16.csv", "| Blues | STL | 1 |"),
        (f"{UNSTRUCTURED}/stanley-cups.tsv", "| Blues | STL | 1 |"),
    ],
)
def test_delimited_text_dialects_and_encodings(docs: Path, relative: str, row: str) -> None:
    doc = _parse(docs, relative)
    assert doc.mime == "text/csv"
    assert row in _text(doc)


def test_html_title_headings_lists_and_tables(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/html/sources/wiki_duck.html")
    assert doc.mime == "text/html" and doc.title.startswith("Duck")
    assert _block(doc, "Taxonomy")[:2] == ("heading", ("Duck", "Taxonomy"))
    tables = _parse(docs, f"{DOCLING}/html/sources/table_01.html")
    assert any(b.kind == "table" and b.text.count("\n") >= 2 for b in tables.blocks)


def test_markdown_structure_including_embedded_html(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/md/sources/mixed.md")
    assert doc.title == "Title"
    assert _block(doc, "Famous ducks")[:2] == ("heading", ("Title", "Famous ducks"))
    kind, path, _ = _block(doc, "Name in German")
    assert (kind, path) == ("table", ("Title", "Famous ducks"))


@pytest.mark.parametrize(
    "relative", [f"{UNSTRUCTURED}/fake-text.txt", f"{UNSTRUCTURED}/fake-text-utf-16-be.txt"]
)
def test_plain_text_in_any_encoding(docs: Path, relative: str) -> None:
    doc = _parse(docs, relative)
    assert doc.mime == "text/plain"
    assert "This is a test document to use for unit tests." in _text(doc)


def test_rtf(docs: Path) -> None:
    doc = _parse(docs, f"{UNSTRUCTURED}/fake-doc.rtf")
    assert doc.mime == "application/rtf" and "My first paragraph." in _text(doc)


def test_odt_heading_levels_nested_lists_and_tables(docs: Path) -> None:
    doc = _parse(docs, f"{DOCLING}/odf/sources/text_document_01.odt")
    assert _block(doc, "Heading level 2: A")[:2] == ("heading", ("heading level 1.0", "Heading level 2: A"))
    levels = {b.text: b.level for b in doc.blocks if b.kind == "list"}
    assert levels["- bullet list 2.2.1"] == 3
    tables = _parse(docs, f"{DOCLING}/odf/sources/text_document_03.odt")
    assert any(b.kind == "table" for b in tables.blocks)


@pytest.mark.parametrize(
    "relative", [f"{UNSTRUCTURED}/eml/fake-email-attachment.eml", f"{UNSTRUCTURED}/fake-email-attachment.msg"]
)
def test_email_headers_body_and_attachments_parsed_recursively(docs: Path, relative: str) -> None:
    doc = _parse(docs, relative)
    assert doc.title == "Fake email with attachment"
    assert doc.blocks[0].text.startswith("From: Mallori Harrell")
    assert "Here's the attachments!" in _text(doc)
    [attachment] = doc.attachments
    assert attachment.filename == "fake-attachment.txt" and attachment.mime == "text/plain"
    assert "Lots of whitespace" in _text(doc) or attachment.blocks


def test_streaming_flattens_attachments_with_their_origin(docs: Path) -> None:
    from socle.knowledge.ingest import iter_blocks

    path = docs / f"{UNSTRUCTURED}/eml/fake-email-attachment.eml"
    blocks = list(iter_blocks(path, path.name))
    assert blocks[0].origin == ()
    assert {b.origin for b in blocks} == {(), ("fake-attachment.txt",)}


def test_multipart_digest_messages_are_attachments(docs: Path) -> None:
    doc = _parse(docs, f"{UNSTRUCTURED}/eml/mime-multipart-digest.eml")
    assert [a.filename for a in doc.attachments] == [
        "First Message.eml",
        "Second Message.eml",
        "Third Message.eml",
    ]
    assert all(a.mime == "message/rfc822" for a in doc.attachments)


def test_the_whole_corpus_parses_or_fails_with_a_typed_error(docs: Path) -> None:
    """Every file under shared/data/documents (bar the two huge PDFs, tested for memory elsewhere)."""
    outcomes: dict[str, int] = {}
    for path in sorted(docs.rglob("*")):
        if (
            not path.is_file()
            or "groundtruth" in path.parts
            or path.name.startswith(("DA-619p", "pdf2image"))
        ):
            continue
        try:
            parse(path, path.name)
            status = "ok"
        except IngestError as exc:
            status = type(exc).status
            assert exc.message.startswith(path.name), exc.message
        outcomes[status] = outcomes.get(status, 0) + 1
    assert outcomes["ok"] > 350
    assert set(outcomes) <= {"ok", "needs_ocr", "unsupported", "encrypted"}, outcomes


def _text(doc: ParsedDocument) -> str:
    return "\n".join(b.text for b in doc.blocks) + "\n".join(_text(a) for a in doc.attachments)
