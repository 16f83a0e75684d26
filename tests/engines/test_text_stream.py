"""TextStream: token bytes to client text, never half a character, never a stop string."""

from __future__ import annotations

import pytest

from socle.engines._text_stream import TextStream


def run(pieces: list[bytes], stops: tuple[str, ...] = ()) -> tuple[list[str], str, bool]:
    stream = TextStream(stops)
    released = [stream.feed(piece) for piece in pieces]
    return released, stream.flush(), stream.stopped


def test_multibyte_characters_split_across_tokens_are_released_whole() -> None:
    data = "é🙂".encode()  # 2 + 4 bytes
    released, tail, _ = run([data[:1], data[1:3], data[3:5], data[5:]])
    assert released == ["", "é", "", "🙂"]
    assert tail == ""


def test_invalid_bytes_become_replacement_characters() -> None:
    released, tail, _ = run([b"ok\xff", b"\xe2\x82"])
    assert "".join(released) == "ok\ufffd"
    assert tail == "\ufffd"


def test_stop_string_spanning_tokens_is_never_released() -> None:
    released, tail, stopped = run([b"Hello", b" Us", b"er", b": more"], stops=("User:",))
    assert stopped
    assert "".join(released) + tail == "Hello "
    assert all("U" not in part for part in released)


def test_text_that_only_looks_like_a_stop_start_is_released_later() -> None:
    released, tail, stopped = run([b"a<", b"b", b"c"], stops=("<|end|>",))
    assert not stopped
    assert released == ["a", "<b", "c"]
    assert tail == ""


def test_a_partial_stop_at_the_end_is_flushed_as_text() -> None:
    released, tail, stopped = run([b"x ##"], stops=("###",))
    assert (released, tail, stopped) == (["x "], "##", False)


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"one STOP two END"], "one "),
        ([b"one EN", b"D STOP"], "one "),
        ([b"STOP"], ""),
    ],
)
def test_the_earliest_stop_string_wins(pieces: list[bytes], expected: str) -> None:
    released, tail, stopped = run(pieces, stops=("STOP", "END"))
    assert stopped
    assert "".join(released) + tail == expected


def test_nothing_is_accepted_after_a_stop() -> None:
    stream = TextStream(("!",))
    assert stream.feed(b"hi!") == "hi"
    assert stream.feed(b"more") == ""
    assert stream.flush() == ""


def test_empty_stop_strings_are_ignored() -> None:
    released, tail, stopped = run([b"abc"], stops=("",))
    assert (released, tail, stopped) == (["abc"], "", False)
