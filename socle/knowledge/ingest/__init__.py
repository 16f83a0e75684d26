"""Document ingestion as a pure library: parse files into structured blocks, cut blocks into chunks.

No storage and no jobs here: :func:`parse` / :func:`iter_blocks` turn a file (path or bytes) into
:class:`Block` s, detecting the real format by content; :func:`chunk` / :func:`iter_chunks` turn
blocks into token-bounded :class:`ChunkDraft` s. Every bad file raises one :class:`IngestError`
subclass whose ``status`` is the per-document status to record. See docs/ingestion.md.
"""

from socle.knowledge.ingest.chunking import ChunkDraft, chunk, iter_chunks
from socle.knowledge.ingest.errors import (
    CorruptDocumentError,
    DocumentTooLargeError,
    EncryptedDocumentError,
    IngestError,
    NeedsOcrError,
    TruncatedDocumentError,
    UnsupportedFormatError,
    WrongExtensionError,
    ZipBombError,
)
from socle.knowledge.ingest.model import Block, ParsedDocument, ParseLimits
from socle.knowledge.ingest.parser import DocumentStream, iter_blocks, open_document, parse
from socle.knowledge.ingest.sniff import MIME_TYPES
from socle.knowledge.ingest.tokens import (
    HuggingFaceTokenizer,
    Tokenizer,
    WhitespaceTokenizer,
    default_tokenizer,
)

__all__ = [
    "MIME_TYPES",
    "Block",
    "ChunkDraft",
    "CorruptDocumentError",
    "DocumentStream",
    "DocumentTooLargeError",
    "EncryptedDocumentError",
    "HuggingFaceTokenizer",
    "IngestError",
    "NeedsOcrError",
    "ParseLimits",
    "ParsedDocument",
    "Tokenizer",
    "TruncatedDocumentError",
    "UnsupportedFormatError",
    "WhitespaceTokenizer",
    "WrongExtensionError",
    "ZipBombError",
    "chunk",
    "default_tokenizer",
    "iter_blocks",
    "iter_chunks",
    "open_document",
    "parse",
]
