"""From token bytes to client text: incremental UTF-8 decoding and stop strings.

A tokenizer piece is a few *bytes*, not characters: one emoji may be spread over three tokens, and a
stop string such as ``"\\n\\nUser:"`` may be spread over four. :class:`TextStream` is fed one piece at a
time and only ever releases text that is final:

* bytes are decoded with an incremental UTF-8 decoder, so half a multibyte character is kept until
  its last byte arrives (invalid bytes become U+FFFD instead of raising);
* text that could be the beginning of a stop string is held back until the next pieces either
  complete the stop string (the stream then ends *before* it, and the stop text is never released)
  or rule it out (the held text is released).

The invariant that makes this correct: after every :meth:`TextStream.feed`, the held-back text is the
longest suffix of the not-yet-released text that is a proper prefix of some stop string. Any stop
string that starts in released text would therefore have been found by the search in an earlier
call. This module is pure Python and knows nothing about llama.cpp.
"""

from __future__ import annotations

import codecs

__all__ = ["TextStream"]


class TextStream:
    """Turns a sequence of byte pieces into releasable text; one instance per generated sequence."""

    __slots__ = ("_decoder", "_held", "_stops", "_max_stop", "stopped")

    def __init__(self, stops: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self._stops = tuple(s for s in stops if s)
        self._max_stop = max((len(s) for s in self._stops), default=0)
        self.stopped = False
        """True once a stop string was found; nothing more is accepted then."""

    def feed(self, piece: bytes) -> str:
        """Add one token's bytes; return the text that can be released now (maybe ``""``)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(piece)
        if not self._stops:
            self._held = ""
            return text
        cut = self._find_stop(text)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        keep = self._holdback(text)
        self._held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """End of generation without a stop string: release what was held (a partial stop is text)."""
        if self.stopped:
            return ""
        text = self._held + self._decoder.decode(b"", final=True)
        self._held = ""
        if self._stops:
            cut = self._find_stop(text)
            if cut >= 0:
                self.stopped = True
                return text[:cut]
        return text

    def _find_stop(self, text: str) -> int:
        """Index of the earliest stop string in ``text``, or -1."""
        found = -1
        for stop in self._stops:
            index = text.find(stop)
            if index >= 0 and (found < 0 or index < found):
                found = index
        return found

    def _holdback(self, text: str) -> int:
        """Length of the longest suffix of ``text`` that is a proper prefix of a stop string."""
        longest = min(self._max_stop - 1, len(text))
        for size in range(longest, 0, -1):
            tail = text[-size:]
            if any(stop.startswith(tail) for stop in self._stops):
                return size
        return 0
