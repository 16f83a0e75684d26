"""Each class of bad file ends in its own typed error (and status) with a clear message. Zip bombs,
truncated and corrupt files are built here from real documents."""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from socle.errors import SocleError
from socle.knowledge.ingest import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EncryptedDocumentError,
    IngestError,
    NeedsOcrError,
    ParseLimits,
    TruncatedDocumentError,
    UnsupportedFormatError,
    WrongExtensionError,
    ZipBombError,
    parse,
)

DOCX = "docling/tests/data/docx/sources/word_sample.docx"
PDF = "docling/tests/data/pdf/sources/multi_page.pdf"
EX = "unstructured/example-docs"


def _raises(error: type[IngestError], data: bytes | Path, filename: str, **limits: object) -> IngestError:
    with pytest.raises(error) as caught:
        parse(data, filename, limits=ParseLimits(**limits))  # type: ignore[arg-type]
    assert type(caught.value) is error
    assert caught.value.message.startswith(filename) and caught.value.filename == filename
    assert caught.value.code == f"document_{error.status}"
    return caught.value


def test_errors_are_socle_errors_with_one_status_each() -> None:
    errors = [
        NeedsOcrError, EncryptedDocumentError, CorruptDocumentError, TruncatedDocumentError,
        ZipBombError, DocumentTooLargeError, UnsupportedFormatError, WrongExtensionError,
    ]  # fmt: skip
    assert all(issubclass(e, SocleError) and 400 <= e.status_code < 500 for e in errors)
    assert len({e.status for e in errors}) == len(errors)


@pytest.mark.parametrize(
    "relative",
    [
        "pypdf/resources/encryption/r4-user-password.pdf",
        "pypdf/resources/encryption/r6-user-password.pdf",
        f"{EX}/pdf/password.pdf",
        f"{EX}/password_protected.xlsx",
        f"{EX}/fake-encrypted.msg",
        f"{EX}/eml/fake-encrypted.eml",
    ],
)
def test_encrypted(docs: Path, relative: str) -> None:
    error = _raises(EncryptedDocumentError, docs / relative, Path(relative).name)
    assert "password" in error.message or "encrypted" in error.message


@pytest.mark.parametrize(
    "relative",
    ["pypdf/resources/encryption/r2-empty-password.pdf", "pypdf/resources/encryption/r4-owner-password.pdf"],
)
def test_pdfs_with_an_empty_user_password_or_only_permissions_are_read(docs: Path, relative: str) -> None:
    assert parse(docs / relative, Path(relative).name).blocks
    assert parse(docs / f"{EX}/pdf/copy-protected.pdf", "copy-protected.pdf").blocks


def test_scanned_pdf_and_images_need_ocr(docs: Path) -> None:
    scan = _scanned_pdf(docs / PDF)
    assert "OCR" in _raises(NeedsOcrError, scan, "scan.pdf").message
    _raises(NeedsOcrError, docs / f"{EX}/img/DA-1p.png", "DA-1p.png")
    _raises(NeedsOcrError, docs / f"{EX}/img/example.jpg", "example.jpg")


def _scanned_pdf(source: Path) -> bytes:
    """A real page rendered to pixels and put back into a PDF: a scan without a text layer."""
    import pypdfium2 as pdfium

    original = pdfium.PdfDocument(source)
    bitmap = original[0].render(scale=0.5).to_pil()
    out = io.BytesIO()
    bitmap.convert("RGB").save(out, format="PDF")
    original.close()
    return out.getvalue()


def test_truncated_pdf_and_docx(docs: Path) -> None:
    pdf = (docs / PDF).read_bytes()
    _raises(TruncatedDocumentError, pdf[: len(pdf) // 2], "half.pdf")
    docx = (docs / DOCX).read_bytes()
    _raises(TruncatedDocumentError, docx[: len(docx) // 2], "half.docx")


def test_corrupt_pdf_docx_and_msg(docs: Path) -> None:
    pdf = (docs / PDF).read_bytes()
    garbled = pdf[:16] + bytes(range(256)) * 200 + pdf[-64:]
    _raises(CorruptDocumentError, garbled, "garbled.pdf")
    docx = _rezip(docs / DOCX, {"word/document.xml": b"<w:document><unclosed"})
    error = _raises(CorruptDocumentError, docx, "broken.docx")
    assert error.detail  # the parser's own message is kept for operators
    msg = (docs / f"{EX}/fake-email.msg").read_bytes()
    _raises(CorruptDocumentError, msg[:512] + b"\xff" * (len(msg) - 512), "broken.msg")


def _rezip(source: Path, replace: dict[str, bytes], add: dict[str, bytes] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as copy:
        for entry in original.infolist():
            copy.writestr(entry.filename, replace.get(entry.filename, original.read(entry.filename)))
        for name, data in (add or {}).items():
            copy.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return out.getvalue()


def _bomb(docs: Path) -> bytes:
    """A real DOCX with a 64 MiB entry of zeros (about 64 KiB compressed: a 1000:1 ratio)."""
    return _rezip(docs / DOCX, {}, {"word/media/image9.bin": bytes(64 * 1024 * 1024)})


def test_zip_bomb_is_refused_before_unpacking(docs: Path) -> None:
    bomb = _bomb(docs)
    assert len(bomb) < 1024 * 1024
    assert "zip bomb" in _raises(ZipBombError, bomb, "bomb.docx").message
    _raises(ZipBombError, docs / DOCX, "word_sample.docx", max_unpacked_bytes=10_000)
    _raises(ZipBombError, docs / DOCX, "word_sample.docx", max_archive_entries=3)


def test_zip_bomb_attached_to_an_email_is_skipped_and_reported(docs: Path) -> None:
    message = EmailMessage()
    message["Subject"] = "Quarterly report"
    message["From"] = "alice@example.org"
    message.set_content("The report is attached.")
    message.add_attachment(
        _bomb(docs), maintype="application", subtype="octet-stream", filename="report.docx"
    )
    doc = parse(message.as_bytes(), "mail.eml")
    assert "The report is attached." in doc.blocks[1].text
    assert doc.attachments == []
    [skipped] = doc.metadata["skipped_attachments"]
    assert (skipped["filename"], skipped["status"]) == ("report.docx", "zip_bomb")


def test_attachments_are_depth_limited(docs: Path) -> None:
    inner = (docs / f"{EX}/eml/fake-email-attachment.eml").read_bytes()
    message = EmailMessage()
    message["Subject"] = "Forward"
    message.set_content("See below.")
    message.add_attachment(inner, maintype="application", subtype="octet-stream", filename="inner.eml")
    doc = parse(message.as_bytes(), "outer.eml", limits=ParseLimits(max_attachment_depth=1))
    [inner_doc] = doc.attachments
    assert inner_doc.title == "Fake email with attachment" and inner_doc.attachments == []
    assert inner_doc.metadata["skipped_attachments"][0]["status"] == "too_large"


def test_too_large(docs: Path) -> None:
    _raises(DocumentTooLargeError, docs / PDF, "multi_page.pdf", max_bytes=1000)
    _raises(DocumentTooLargeError, docs / f"{EX}/language-docs/fr_olap.pdf", "fr_olap.pdf", max_pages=10)
    _raises(DocumentTooLargeError, docs / f"{EX}/fake-text.txt", "fake-text.txt", max_text_chars=20)


@pytest.mark.parametrize(
    ("relative", "what"),
    [
        (f"{EX}/fake.doc", "legacy Word"),
        (f"{EX}/tests-example.xls", "legacy Excel"),
        (f"{EX}/fake-power-point.ppt", "legacy PowerPoint"),
        (f"{EX}/simple.zip", "ZIP archive"),
        (f"{EX}/CantinaBand3.wav", "not a supported format"),
        ("docling/tests/data/docx/sources/Strict.docx", "Strict Open XML"),
    ],
)
def test_unsupported(docs: Path, relative: str, what: str) -> None:
    assert what in _raises(UnsupportedFormatError, docs / relative, Path(relative).name).message


def test_wrong_extension_is_refused_by_default_or_parsed_by_content(docs: Path) -> None:
    pdf = (docs / PDF).read_bytes()
    error = _raises(WrongExtensionError, pdf, "report.docx")
    assert "the content is PDF, not DOCX" in error.message
    _raises(WrongExtensionError, (docs / f"{EX}/fake-text.txt").read_bytes(), "notes.pdf")
    doc = parse(pdf, "report.docx", limits=ParseLimits(on_extension_mismatch="parse"))
    assert doc.mime == "application/pdf" and doc.pages == 5
    assert "not DOCX" in doc.metadata["extension_mismatch"]


def test_text_families_follow_the_extension_and_unknown_extensions_follow_the_content(docs: Path) -> None:
    html = (docs / "docling/tests/data/html/sources/example_01.html").read_bytes()
    assert parse(html, "page.txt").mime == "text/plain"
    assert parse(html, "page").mime == "text/html"
    assert parse((docs / PDF).read_bytes(), "download.bin").mime == "application/pdf"
    eml = (docs / f"{EX}/eml/fake-email.eml").read_bytes()
    assert parse(eml, "message").mime == "message/rfc822"
