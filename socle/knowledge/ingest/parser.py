"""Parse any supported document: detect its real format, pick the parser, bound it, type its errors.

``open_document`` checks the file up front (size, format by content, extension, ZIP safety) and returns
a :class:`DocumentStream` whose iteration yields blocks one at a time, attachments included (depth
limited), so a 619-page PDF is never held whole. ``parse`` collects a stream into a
:class:`ParsedDocument` tree. Whatever a third-party parser raises becomes an :class:`IngestError`: a
bad file never crashes the caller.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import PurePath

from socle.knowledge.ingest.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    IngestError,
    TruncatedDocumentError,
    WrongExtensionError,
)
from socle.knowledge.ingest.model import (
    Attachment,
    Block,
    DocumentInfo,
    ParsedDocument,
    ParseLimits,
)
from socle.knowledge.ingest.sniff import MIME_TYPES, Detected, detect
from socle.knowledge.ingest.source import Source, check_zip

__all__ = ["DocumentStream", "iter_blocks", "open_document", "parse"]

Parser = Callable[[Source, DocumentInfo, ParseLimits], Iterator[Block | Attachment]]
_PARSERS = {
    "pdf": "pdf:parse_pdf",
    "docx": "office:parse_docx",
    "pptx": "office:parse_pptx",
    "xlsx": "sheets:parse_xlsx",
    "csv": "sheets:parse_csv",
    "odt": "odf:parse_odt",
    "html": "html:parse_html",
    "markdown": "markdown:parse_markdown",
    "text": "text:parse_text",
    "rtf": "text:parse_rtf",
    "eml": "mail:parse_eml",
    "msg": "mail:parse_msg",
}
_ZIPPED = frozenset({"docx", "pptx", "xlsx", "odt"})
_PLAIN = frozenset({"text", "csv", "markdown"})
_DEFAULT_LIMITS = ParseLimits()


class DocumentStream:
    """A document opened for parsing. Iterate it for blocks (attachments' blocks follow the body's, with
    ``origin`` set); ``info`` (title, pages, metadata) is complete once iteration is over. Attachments
    that cannot be parsed are skipped and listed in ``info.metadata["skipped_attachments"]``."""

    def __init__(
        self, source: Source, detected: Detected, info: DocumentInfo, limits: ParseLimits, depth: int
    ) -> None:
        self.source, self.detected, self.info, self.limits, self._depth = (
            source,
            detected,
            info,
            limits,
            depth,
        )
        self.attachments: list[DocumentStream] = []

    def __iter__(self) -> Iterator[Block]:
        for item in self.items():
            if isinstance(item, Block):
                yield item
            else:
                yield from self._attachment_blocks(item)

    def _attachment_blocks(self, child: DocumentStream) -> Iterator[Block]:
        name = child.info.filename
        try:
            for block in child:
                yield _with_origin(block, (name, *block.origin))
        except IngestError as exc:  # a bad attachment is skipped; the message goes on
            self._skip(name, exc)

    def _skip(self, filename: str, error: IngestError) -> None:
        skipped: list[dict[str, str]] = self.info.metadata.setdefault("skipped_attachments", [])
        skipped.append({"filename": filename, "status": type(error).status, "message": error.message})

    def items(self) -> Iterator[Block | DocumentStream]:
        """Blocks of this document, and a stream per attachment (not flattened), for :func:`parse`."""
        for item in self._items():
            if isinstance(item, Block):
                yield item
            else:
                child = self._open_attachment(item)
                if child is not None:
                    yield child
        self._finish()

    def _items(self) -> Iterator[Block | Attachment]:
        parser = _parser(self.detected.format)
        name = self.info.filename
        try:
            for item in parser(self.source, self.info, self.limits):
                if not self.info.title and isinstance(item, Block) and item.kind == "heading":
                    self.info.title = item.text
                yield item
        except IngestError:
            raise
        except MemoryError as exc:
            raise DocumentTooLargeError(f"{name}: parsing ran out of memory", filename=name) from exc
        except (EOFError, TruncatedError) as exc:
            raise TruncatedDocumentError(f"{name}: the file is cut short", filename=name) from exc
        except Exception as exc:  # noqa: BLE001 - any parser failure is a property of the file
            raise CorruptDocumentError(
                f"{name}: the {self.detected.format.upper()} file is damaged or malformed and cannot be read",
                filename=name,
                detail=f"{type(exc).__name__}: {exc}",
            ) from exc

    def _open_attachment(self, item: Attachment) -> DocumentStream | None:
        opened = len(self.attachments) + len(self.info.metadata.get("skipped_attachments", []))
        try:
            if self._depth >= self.limits.max_attachment_depth:
                raise DocumentTooLargeError(f"{item.filename}: attachments nested too deeply")
            if opened >= self.limits.max_attachments:
                raise DocumentTooLargeError(
                    f"{item.filename}: more than {self.limits.max_attachments} attachments"
                )
            child = open_document(item.data, item.filename, limits=self.limits, _depth=self._depth + 1)
        except IngestError as exc:
            self._skip(item.filename, exc)
            return None
        self.attachments.append(child)
        return child

    def _finish(self) -> None:
        if not self.info.metadata.get("skipped_attachments"):
            self.info.metadata.pop("skipped_attachments", None)
        if not self.info.title:
            self.info.title = PurePath(self.info.filename).stem or self.info.filename


class TruncatedError(Exception):
    """Raised by a format parser that sees its input end early (mapped to TruncatedDocumentError)."""


def _with_origin(block: Block, origin: tuple[str, ...]) -> Block:
    return Block(block.kind, block.text, block.level, block.section_path, block.page, origin)


def _parser(kind: str) -> Parser:
    module, _, function = _PARSERS[kind].partition(":")
    parser: Parser = getattr(importlib.import_module(f"socle.knowledge.ingest.formats.{module}"), function)
    return parser


def open_document(
    source: str | os.PathLike[str] | bytes,
    filename: str,
    *,
    limits: ParseLimits = _DEFAULT_LIMITS,
    _depth: int = 0,
) -> DocumentStream:
    """Check a document and open it for streaming; raises an :class:`IngestError` for a bad file."""
    src = Source(source, filename)
    try:
        size = src.size
    except OSError as exc:
        raise CorruptDocumentError(f"{filename}: the file cannot be read", filename=filename) from exc
    if size > limits.max_bytes:
        raise DocumentTooLargeError(f"{filename}: {size} bytes (limit {limits.max_bytes})", filename=filename)
    if size == 0:
        detected = Detected("text", "text")
    else:
        with src.open() as file:
            detected = detect(file.read(8192), filename, file)
    info = DocumentInfo(filename=filename, mime=MIME_TYPES[detected.format])
    _check_claim(detected, info, limits)
    if detected.format in _ZIPPED:
        with src.open() as file:
            check_zip(file, filename, limits, archive_size=size)
    return DocumentStream(src, detected, info, limits, _depth)


def _check_claim(detected: Detected, info: DocumentInfo, limits: ParseLimits) -> None:
    claimed = detected.claimed
    if claimed is None or claimed == detected.format:
        return
    if claimed in _PLAIN and detected.format in _PLAIN | {"html", "eml"}:
        return
    message = (
        f"{info.filename}: the content is {detected.format.upper()}, "
        f"not {claimed.upper()} as the extension says"
    )
    if limits.on_extension_mismatch == "refuse":
        raise WrongExtensionError(f"{message}; rename the file and upload again", filename=info.filename)
    info.metadata["extension_mismatch"] = message


def iter_blocks(
    source: str | os.PathLike[str] | bytes, filename: str, *, limits: ParseLimits = _DEFAULT_LIMITS
) -> Iterator[Block]:
    """Stream a document's blocks (attachments' blocks included, with ``origin`` set)."""
    yield from open_document(source, filename, limits=limits)


def parse(
    source: str | os.PathLike[str] | bytes, filename: str, *, limits: ParseLimits = _DEFAULT_LIMITS
) -> ParsedDocument:
    """Parse a whole document (and its attachments, recursively) into memory."""
    return _collect(open_document(source, filename, limits=limits))


def _collect(stream: DocumentStream) -> ParsedDocument:
    blocks: list[Block] = []
    attachments: list[ParsedDocument] = []
    for item in stream.items():
        if isinstance(item, Block):
            blocks.append(item)
        else:
            try:
                attachments.append(_collect(item))
            except IngestError as exc:
                stream._skip(item.info.filename, exc)
    info = stream.info
    return ParsedDocument(
        title=info.title,
        mime=info.mime,
        pages=info.pages,
        blocks=blocks,
        attachments=attachments,
        metadata=info.metadata,
        filename=info.filename,
    )
