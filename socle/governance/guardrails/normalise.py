"""Normalisation before detection, with offsets that map back to the original text.

Detectors never see what a user or a document can use to hide text from them: zero-width and other
invisible characters are removed, compatibility forms (full-width digits, ligatures) are folded by
NFKC and, for injection detection, letters from other scripts that look Latin (Cyrillic ``а``, Greek
``ο``) become the Latin letter and combining marks are dropped. Every finding is reported with offsets
in the text as received: :meth:`Normalised.original` maps them back.

:func:`decoded_views` gives the other readings of a text a model can be asked to follow: base64 runs
decoded, and the whole text in rot13.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["DecodedView", "Normalised", "decoded_views", "normalise"]

# Confusable letters that render like Latin ones (Unicode confusables, the common subset).
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅΑΒΕΖΗΙΚΜΝΟΡΤΥΧαεικνορτυχ",
    "aeopcyxijsdhlqwABEKMHOPCTXIJSABEZHIKMNOPTYXaeikvoptux",
)
_INVISIBLE = frozenset("\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u3164\uffa0")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{20,8192}={0,2}(?![A-Za-z0-9+/=_-])")


@dataclass(frozen=True, slots=True)
class Normalised:
    """A normalised text and where each of its positions came from."""

    text: str
    original_text: str
    _norm: list[int] = field(default_factory=list)
    _orig: list[int] = field(default_factory=list)

    def position(self, index: int) -> int:
        """The index in the original text of the normalised ``index``."""
        i = bisect_right(self._norm, index) - 1
        if i < 0:
            return index
        return min(self._orig[i] + (index - self._norm[i]), len(self.original_text))

    def original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the normalised span ``start:end``."""
        if not self._norm:
            return start, end
        if end <= start:
            begin = self.position(start)
            return begin, begin
        return self.position(start), self.position(end - 1) + 1


@lru_cache(maxsize=4096)
def _replacement(char: str, fold: bool) -> str:
    if char in _INVISIBLE:
        return ""
    category = unicodedata.category(char)
    if category == "Cf" or (fold and category == "Mn"):
        return ""
    out = unicodedata.normalize("NFKC", char)
    if fold:
        out = "".join(c for c in unicodedata.normalize("NFKD", out) if unicodedata.category(c) != "Mn")
        out = out.translate(_HOMOGLYPHS)
    return out


def normalise(text: str, *, fold: bool = False) -> Normalised:
    """Remove invisible characters and apply NFKC; with ``fold``, also map look-alike letters to Latin
    and drop accents and other combining marks. Linear in the length of ``text``."""
    if text.isascii():
        return Normalised(text, text)
    pieces: list[str] = []
    norm_marks: list[int] = []
    orig_marks: list[int] = []
    last = 0
    length = 0
    for match in _NON_ASCII.finditer(text):
        index = match.start()
        char = text[index]
        out = _replacement(char, fold)
        if out == char:
            continue
        pieces.append(text[last:index])
        length += index - last
        norm_marks.append(length)
        orig_marks.append(index)
        pieces.append(out)
        length += len(out)
        last = index + 1
        norm_marks.append(length)
        orig_marks.append(last)
    if not norm_marks:
        return Normalised(text, text)
    pieces.append(text[last:])
    return Normalised("".join(pieces), text, norm_marks, orig_marks)


@dataclass(frozen=True, slots=True)
class DecodedView:
    """Another reading of part of a text: ``text`` decoded from ``start:end`` of the original."""

    start: int
    end: int
    text: str
    encoding: str


def _printable(data: bytes) -> str | None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    letters = sum(1 for c in text if c.isalpha() or c == " ")
    return text if text and letters >= 0.7 * len(text) else None


def decoded_views(text: str, *, max_views: int = 64) -> Iterator[DecodedView]:
    """Base64 runs that decode to readable text, then the whole text in rot13 (an instruction in rot13
    reads as one once decoded; plain text in rot13 is noise that matches nothing)."""
    found = 0
    for match in _BASE64_RUN.finditer(text):
        run = match.group()
        if run.isalpha() or run.isdigit():
            continue  # a long word or number, not base64
        padded = run.replace("-", "+").replace("_", "/")
        padded += "=" * (-len(padded) % 4)
        try:
            decoded = _printable(base64.b64decode(padded, validate=True))
        except (binascii.Error, ValueError):
            continue
        if decoded is not None:
            yield DecodedView(match.start(), match.end(), decoded, "base64")
            found += 1
            if found >= max_views:
                break
    yield DecodedView(0, len(text), codecs.encode(text, "rot13"), "rot13")
