"""Output guarding of a streamed answer, without holding back the whole stream.

The filter keeps a short tail of the text it has received (``holdback`` characters, at least the
longest identifier or placeholder that could straddle two chunks) and releases the rest once it has
been checked. A finding that straddles the release point moves the point back before it, so a value
is always seen whole. The cost is a delay of a few tokens, never the whole answer; scans run once at
least ``batch`` new characters have arrived, so a long answer is scanned a bounded number of times
per character (linear time).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from socle.engines.base import Delta
from socle.engines.router import close_stream
from socle.governance.guardrails.guard import PLACEHOLDER, Guard, GuardState

__all__ = ["StreamGuard", "guard_stream"]


class StreamGuard:
    """Feed text pieces in, get the checked text out (:meth:`feed`, then :meth:`flush` at the end)."""

    def __init__(self, guard: Guard, state: GuardState, holdback: int, batch: int = 32) -> None:
        self.guard = guard
        self.state = state
        self.holdback = holdback
        self.batch = batch
        self.pending = ""
        self.fresh = 0
        self.emitted = 0
        self.truncated = False

    def feed(self, text: str) -> str:
        if self.truncated:
            return ""
        self.pending += text
        self.fresh += len(text)
        if len(self.pending) <= self.holdback or self.fresh < self.batch:
            return ""
        return self._release(final=False)

    def flush(self) -> str:
        if self.truncated:
            return ""
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        text = self.pending
        self.fresh = 0
        needs = self.guard.book.needs(self.state.policy, "output")
        findings = self.guard.scan(text, "output", needs=needs, state=self.state) if needs else []
        cut = len(text)
        if not final:
            cut = len(text) - self.holdback
            space = text.rfind(" ", 0, cut)
            cut = space + 1 if space > cut - self.holdback // 2 else cut
            spans = [(f.start, f.end) for f in findings] + _placeholder_spans(text)
            for start, end in sorted(spans, reverse=True):  # by start, descending: one pass suffices
                if start < cut < end:
                    cut = start  # never release part of a finding or of a placeholder
        released = [f for f in findings if f.end <= cut]
        self.pending = text[cut:]
        out = self.state.restore(self.guard.enforce(text[:cut], "output", self.state, released))
        return self._cap(out)

    def _cap(self, out: str) -> str:
        cap = self.state.policy.max_output_chars
        if cap is not None and self.emitted + len(out) > cap:
            out = out[: max(0, cap - self.emitted)]
            self.truncated = True
            self.pending = ""
            self.state.record_cap()
        self.emitted += len(out)
        return out


def _placeholder_spans(text: str) -> list[tuple[int, int]]:
    spans = [m.span() for m in PLACEHOLDER.finditer(text)]
    open_at = text.rfind("[", max(0, len(text) - 48))
    if open_at >= 0 and "]" not in text[open_at:]:
        spans.append((open_at, len(text) + 1))  # a placeholder may be arriving
    return spans


async def guard_stream(deltas: AsyncIterator[Delta], guard: Guard, state: GuardState) -> AsyncIterator[Delta]:
    """``deltas`` with their text checked by :class:`StreamGuard`; a ``block`` raises
    :class:`~socle.errors.GuardrailBlockedError` (the gateway sends it as an SSE error event); the size
    cap ends the answer with ``finish_reason="length"``."""
    filt = StreamGuard(guard, state, guard.settings.stream_holdback_chars)
    try:
        async for delta in deltas:
            text = filt.feed(delta.text) if delta.text else ""
            if delta.finish_reason is not None or delta.usage is not None:
                text += filt.flush()
            if filt.truncated:
                yield Delta(text, "length", delta.usage)
                return
            if text or delta.finish_reason is not None or delta.usage is not None:
                yield Delta(text, delta.finish_reason, delta.usage)
        rest = filt.flush()
        if rest:
            yield Delta(rest, "length" if filt.truncated else None, None)
    finally:
        await close_stream(deltas)
