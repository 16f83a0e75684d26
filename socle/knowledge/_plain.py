"""A minimal text and Markdown splitter, used only when :mod:`socle.knowledge.ingest` (the real parsers
and chunker) is not installed in this tree. It knows UTF-8 text and Markdown headings, nothing else."""

from __future__ import annotations

import re
from pathlib import PurePath

__all__ = ["PlainChunk", "UnsupportedPlainFormat", "split_plain"]

_TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".text", ""})
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")

PlainChunk = tuple[str, str, tuple[str, ...], int]
"""(text, title, section path, words)"""


class UnsupportedPlainFormat(ValueError):
    pass


def split_plain(data: bytes, filename: str, max_words: int) -> tuple[str, list[PlainChunk]]:
    """The title and the chunks of a text or Markdown file (paragraphs packed up to ``max_words``)."""
    if PurePath(filename).suffix.lower() not in _TEXT_SUFFIXES:
        raise UnsupportedPlainFormat(f"{filename}: only text and Markdown can be read without the parsers")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsupportedPlainFormat(f"{filename}: not UTF-8 text") from exc
    title = ""
    path: list[tuple[int, str]] = []
    chunks: list[PlainChunk] = []
    words: list[str] = []

    def flush() -> None:
        if words:
            chunks.append((" ".join(words), title, tuple(t for _, t in path), len(words)))
            words.clear()  # no overlap: this splitter is a stand-in

    for paragraph in re.split(r"\n\s*\n", text):
        heading = _HEADING.match(paragraph.strip())
        if heading:
            flush()
            level, name = len(heading.group(1)), heading.group(2).strip()
            title = title or name
            while path and path[-1][0] >= level:
                path.pop()
            path.append((level, name))
            continue
        for word in paragraph.split():
            words.append(word)
            if len(words) >= max_words:
                flush()
    flush()
    return title or PurePath(filename).stem, chunks
