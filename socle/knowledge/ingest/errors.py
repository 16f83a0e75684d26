"""Why a document could not be ingested: one exception type per failure class.

Each class carries a ``status`` (``needs_ocr``, ``encrypted``, ``corrupt``, ``truncated``, ``zip_bomb``,
``too_large``, ``unsupported``, ``wrong_extension``) that the ingestion jobs store as the document's
status, and a message written for the person who uploaded the file. They are :class:`SocleError` s, so
an upload route that parses synchronously answers them as 4xx errors without extra mapping.
"""

from __future__ import annotations

from typing import ClassVar

from socle.errors import BadRequestError

__all__ = [
    "CorruptDocumentError",
    "DocumentTooLargeError",
    "EncryptedDocumentError",
    "IngestError",
    "NeedsOcrError",
    "TruncatedDocumentError",
    "UnsupportedFormatError",
    "WrongExtensionError",
    "ZipBombError",
]


class IngestError(BadRequestError):
    """A document cannot be parsed; ``status`` is the per-document status to record."""

    status: ClassVar[str] = "failed"
    default_code = "document_failed"

    def __init__(self, message: str, *, filename: str = "", detail: str | None = None) -> None:
        super().__init__(message, code=f"document_{self.status}", detail=detail)
        self.filename = filename


class NeedsOcrError(IngestError):
    """A scanned PDF (or an image) without a text layer: it needs OCR, which Socle does not run."""

    status = "needs_ocr"


class EncryptedDocumentError(IngestError):
    """The document is password-protected (or its content is encrypted)."""

    status = "encrypted"


class CorruptDocumentError(IngestError):
    """The content is damaged or malformed, or the parser failed on it."""

    status = "corrupt"


class TruncatedDocumentError(CorruptDocumentError):
    """The file is cut short (an interrupted upload or copy)."""

    status = "truncated"


class ZipBombError(IngestError):
    """A ZIP-based file (or attachment) would decompress to far more than its size allows."""

    status = "zip_bomb"


class DocumentTooLargeError(IngestError):
    """The file, its page count or its extracted text exceeds the configured limits."""

    status = "too_large"
    status_code = 413


class UnsupportedFormatError(IngestError):
    """The format is recognised but not supported (legacy .doc, audio, archives...)."""

    status = "unsupported"
    status_code = 415


class WrongExtensionError(IngestError):
    """The content is of a different format than the file name's extension claims."""

    status = "wrong_extension"
