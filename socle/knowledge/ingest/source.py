"""The bytes being parsed, from a path or from memory, and the archive checks done before unpacking.

Parsers never read a whole file they can stream; ZIP-based formats are checked entry by entry (count,
declared sizes, compression ratios) before any parser opens them, and Python's ``zipfile`` never
inflates an entry past its declared size, so the check bounds what unpacking can cost.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path
from typing import IO

from socle.knowledge.ingest.errors import (
    CorruptDocumentError,
    EncryptedDocumentError,
    TruncatedDocumentError,
    ZipBombError,
)
from socle.knowledge.ingest.model import ParseLimits

__all__ = ["Source", "check_zip"]

# Entries smaller than this may compress absurdly well (runs of spaces) without being a threat.
_RATIO_FLOOR = 4 * 1024 * 1024


class Source:
    """A document's bytes: a file on disk (read lazily) or an in-memory buffer."""

    __slots__ = ("data", "filename", "path")

    def __init__(self, source: str | os.PathLike[str] | bytes, filename: str) -> None:
        self.filename = filename
        self.path: Path | None = None
        self.data: bytes | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self.data = bytes(source)
        else:
            self.path = Path(source)

    @property
    def size(self) -> int:
        return len(self.data) if self.data is not None else self.path.stat().st_size  # type: ignore[union-attr]

    def open(self) -> IO[bytes]:
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    def head(self, size: int = 8192) -> bytes:
        with self.open() as file:
            return file.read(size)

    def tail(self, size: int = 2048) -> bytes:
        with self.open() as file:
            file.seek(max(0, self.size - size))
            return file.read(size)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


def check_zip(file: IO[bytes], filename: str, limits: ParseLimits, *, archive_size: int) -> None:
    """Refuse a ZIP container whose declared contents are too many, too big or too compressed."""
    try:
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise TruncatedDocumentError(
            f"{filename}: the ZIP container is incomplete; the file is cut short", filename=filename
        ) from exc
    except (OSError, ValueError, EOFError, NotImplementedError) as exc:
        raise CorruptDocumentError(f"{filename}: the ZIP container is damaged", filename=filename) from exc
    if len(entries) > limits.max_archive_entries:
        raise ZipBombError(
            f"{filename}: {len(entries)} entries in the container (limit {limits.max_archive_entries})",
            filename=filename,
        )
    total = 0
    for entry in entries:
        if entry.flag_bits & 0x1:
            raise EncryptedDocumentError(f"{filename}: the container is encrypted", filename=filename)
        total += entry.file_size
        ratio = entry.file_size / max(entry.compress_size, 1)
        if entry.file_size > _RATIO_FLOOR and ratio > limits.max_compression_ratio:
            raise ZipBombError(
                f"{filename}: entry {entry.filename!r} would expand {ratio:.0f}x to {entry.file_size} bytes "
                f"(limit {limits.max_compression_ratio:.0f}x); refusing a likely zip bomb",
                filename=filename,
            )
    if total > limits.max_unpacked_bytes:
        raise ZipBombError(
            f"{filename}: the container would unpack to {total} bytes "
            f"(limit {limits.max_unpacked_bytes}); refusing a likely zip bomb",
            filename=filename,
        )
    if total > _RATIO_FLOOR and total / max(archive_size, 1) > limits.max_compression_ratio:
        raise ZipBombError(
            f"{filename}: the container would expand {total / max(archive_size, 1):.0f}x "
            f"(limit {limits.max_compression_ratio:.0f}x); refusing a likely zip bomb",
            filename=filename,
        )
