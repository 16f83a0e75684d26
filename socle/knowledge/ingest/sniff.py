"""Which format a file really is, judged by its content (magic bytes), not by its name.

The extension is only a claim. Binary formats are recognised by their signatures (``%PDF-``, ZIP and
its entry names for OOXML/ODF, OLE2 and its stream names for MSG and legacy Office, ``{\\rtf``, image
and audio signatures). Text formats (plain text, Markdown, CSV, HTML, e-mail) cannot be told apart
reliably by content, so for text content the extension decides among them; only a text file that claims
a binary format (or the reverse) is a mismatch.
"""

from __future__ import annotations

import codecs
import zipfile
from dataclasses import dataclass
from pathlib import PurePath
from typing import IO

from socle.knowledge.ingest.errors import (
    CorruptDocumentError,
    EncryptedDocumentError,
    NeedsOcrError,
    TruncatedDocumentError,
    UnsupportedFormatError,
)

__all__ = [
    "MIME_TYPES",
    "TEXT_FORMATS",
    "Detected",
    "claimed_format",
    "decode_text",
    "detect",
    "text_encoding",
]

MIME_TYPES = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "odt": "application/vnd.oasis.opendocument.text",
    "rtf": "application/rtf",
    "msg": "application/vnd.ms-outlook",
    "eml": "message/rfc822",
    "html": "text/html",
    "markdown": "text/markdown",
    "csv": "text/csv",
    "text": "text/plain",
}
TEXT_FORMATS = frozenset({"text", "markdown", "csv", "html", "eml"})

_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".docm": "docx",
    ".dotx": "docx",
    ".pptx": "pptx",
    ".pptm": "pptx",
    ".ppsx": "pptx",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".odt": "odt",
    ".rtf": "rtf",
    ".msg": "msg",
    ".eml": "eml",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".rst": "text",
    ".org": "text",
}
# Recognised by content but not parsed: a clear "unsupported" beats garbage.
_LEGACY_OLE = {
    "WordDocument": "legacy Word (.doc)",
    "Workbook": "legacy Excel (.xls)",
    "Book": "legacy Excel (.xls)",
    "PowerPoint Document": "legacy PowerPoint (.ppt)",
}
_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_OTHER_BINARY = (
    (b"RIFF", "RIFF audio/video"),
    (b"ID3", "MP3 audio"),
    (b"\x1f\x8b", "gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (b"Rar!", "RAR archive"),
    (b"\x7fELF", "executable"),
    (b"MZ", "executable"),
)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ODF_MIMES = {
    b"application/vnd.oasis.opendocument.text": "odt",
    b"application/vnd.oasis.opendocument.spreadsheet": "OpenDocument spreadsheet (.ods)",
    b"application/vnd.oasis.opendocument.presentation": "OpenDocument presentation (.odp)",
    b"application/epub+zip": "EPUB",
}


@dataclass(frozen=True, slots=True)
class Detected:
    """The format found by content, and the one the file name claims (None: no known extension)."""

    format: str
    claimed: str | None

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]


def claimed_format(filename: str) -> str | None:
    return _EXTENSIONS.get(PurePath(filename).suffix.lower())


def text_encoding(head: bytes) -> str | None:
    """The encoding of text content starting with ``head``, or None if it looks binary."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    if b"\x00" in head:
        return _bomless_utf16(head)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return "cp1252" if controls <= len(head) // 100 else None


def _bomless_utf16(head: bytes) -> str | None:
    even, odd = head[0::2], head[1::2]
    if odd.count(0) > len(odd) * 0.4 and even.count(0) < len(even) * 0.1:
        return "utf-16-le"
    if even.count(0) > len(even) * 0.4 and odd.count(0) < len(odd) * 0.1:
        return "utf-16-be"
    return None


def decode_text(data: bytes, encoding: str) -> str:
    """Decode with ``encoding``; cp1252 leaves undefined bytes as replacement characters."""
    return data.decode(encoding, errors="replace")


def detect(head: bytes, filename: str, open_binary: IO[bytes] | None) -> Detected:
    """Detect the format from the first bytes (``open_binary`` is the seekable file, for ZIP and OLE).

    Raises the typed error for formats that are recognised but cannot be ingested.
    """
    claimed = claimed_format(filename)
    if head.startswith(b"{\\rtf"):
        return Detected("rtf", claimed)
    if b"%PDF-" in head[:1024]:
        return Detected("pdf", claimed)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Detected(_zip_format(open_binary, filename), claimed)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return Detected(_ole_format(open_binary, filename), claimed)
    _refuse_other_binary(head, filename)
    encoding = text_encoding(head[:8192])
    if encoding is None:
        raise UnsupportedFormatError(f"{filename}: binary content of an unknown format", filename=filename)
    if claimed in TEXT_FORMATS:
        return Detected(claimed, claimed)
    return Detected(_text_kind(decode_text(head[:4096], encoding)), claimed)


def _refuse_other_binary(head: bytes, filename: str) -> None:
    for magic, name in _IMAGES:
        if head.startswith(magic):
            raise NeedsOcrError(
                f"{filename}: a {name} image has no text layer; it needs OCR, which Socle does not run",
                filename=filename,
            )
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        raise NeedsOcrError(f"{filename}: a HEIC image has no text layer; it needs OCR", filename=filename)
    for magic, name in _OTHER_BINARY:
        if head.startswith(magic):
            raise UnsupportedFormatError(f"{filename}: {name} is not a supported format", filename=filename)


def _text_kind(sample: str) -> str:
    start = sample.lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")) or (start.startswith("<?xml") and "<html" in start):
        return "html"
    lines = sample.splitlines()[:8]
    headers = sum(
        1
        for line in lines
        if line.split(":", 1)[0].lower()
        in ("from", "to", "subject", "date", "received", "mime-version", "return-path", "message-id")
    )
    return "eml" if headers >= 2 else "text"


def _zip_format(file: IO[bytes] | None, filename: str) -> str:
    assert file is not None
    try:
        with zipfile.ZipFile(file) as archive:
            names = set(archive.namelist())
            mimetype = archive.read("mimetype")[:100].strip() if "mimetype" in names else b""
    except zipfile.BadZipFile as exc:
        raise TruncatedDocumentError(
            f"{filename}: the ZIP container is incomplete (no central directory); the file is cut short",
            filename=filename,
            detail=str(exc),
        ) from exc
    except (OSError, ValueError, EOFError, zipfile.LargeZipFile, NotImplementedError) as exc:
        raise CorruptDocumentError(f"{filename}: the ZIP container is damaged", filename=filename) from exc
    if "[Content_Types].xml" in names:
        for prefix, kind in (("word/", "docx"), ("ppt/", "pptx"), ("xl/", "xlsx")):
            if any(n.startswith(prefix) for n in names):
                return kind
    if mimetype in _ODF_MIMES:
        kind = _ODF_MIMES[mimetype]
        if kind == "odt":
            return kind
        raise UnsupportedFormatError(f"{filename}: {kind} is not a supported format", filename=filename)
    raise UnsupportedFormatError(
        f"{filename}: a ZIP archive is not a document; upload its files one by one", filename=filename
    )


def _ole_format(file: IO[bytes] | None, filename: str) -> str:
    import olefile

    assert file is not None
    try:
        with olefile.OleFileIO(file) as ole:
            streams = {"/".join(entry) for entry in ole.listdir(streams=True, storages=True)}
    except (OSError, ValueError, IndexError, KeyError) as exc:
        raise CorruptDocumentError(f"{filename}: the OLE2 container is damaged", filename=filename) from exc
    if not streams:
        raise CorruptDocumentError(
            f"{filename}: the OLE2 container is damaged (no streams)", filename=filename
        )
    if "EncryptedPackage" in streams or "EncryptionInfo" in streams:
        raise EncryptedDocumentError(
            f"{filename}: the Office document is password-protected; remove the password and upload again",
            filename=filename,
        )
    if any(s.startswith("__substg1.0_") for s in streams):
        return "msg"
    for stream, name in _LEGACY_OLE.items():
        if stream in streams:
            raise UnsupportedFormatError(
                f"{filename}: {name} is not supported; save it as a current Office format", filename=filename
            )
    raise UnsupportedFormatError(f"{filename}: an OLE2 file of an unknown kind", filename=filename)
