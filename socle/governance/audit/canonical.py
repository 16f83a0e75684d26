"""JSON canonicalisation (RFC 8785, "JCS"): the exact bytes an audit entry is hashed and signed as.

Two programs that agree on a JSON value must agree on its bytes, or a verifier written elsewhere
(another language, years later) could not recompute a leaf hash. RFC 8785 fixes them: no whitespace,
object members sorted by the UTF-16 code units of their names, strings escaped minimally (only ``"``,
``\\`` and control characters, with the short forms ``\\b \\t \\n \\f \\r`` and lower-case ``\\u00xx``),
everything else as UTF-8, and numbers written as ECMAScript's ``Number.prototype.toString`` writes
an IEEE-754 double.

Fast path: audit events are built by Socle and hold strings, booleans, null, small integers and
ASCII member names. For such values orjson's output with sorted keys *is* the RFC's (its string
escaping is exactly the RFC's, ASCII names sort the same in UTF-8 and UTF-16, and an integer within
±2^53 prints the same in both); a cheap walk checks that, and anything else (floats, non-ASCII names)
takes the pure-Python path, which implements the RFC in full.

Refused, with :class:`ValueError` or :class:`TypeError`: NaN and infinities (not JSON), integers
beyond ±2^53 (not exactly representable as the double JCS would print), lone surrogates (not
UTF-8), non-string member names and types JSON does not have.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

__all__ = ["MAX_SAFE_INTEGER", "canonicalize", "format_number"]

MAX_SAFE_INTEGER = 2**53
"""Integers up to this magnitude are exact as doubles; larger ones are refused."""


def canonicalize(value: Any) -> bytes:
    """The RFC 8785 canonical form of ``value`` (dict, list, tuple, str, int, float, bool, None)."""
    if _plain(value):
        try:
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError as exc:  # lone surrogates
            raise ValueError(f"cannot canonicalise: {exc}") from exc
    out: list[str] = []
    _write(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"cannot canonicalise: {exc}") from exc


def _plain(value: Any) -> bool:
    """Whether orjson's sorted output of ``value`` is already canonical (see the module docs)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(_plain(item) for item in value)
    return False


def _write(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"object member names must be strings, got {type(key).__name__}")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16)):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        out.append(_scalar(value))


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        if not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            raise ValueError(f"integer {value} is beyond ±2^53 and cannot be canonicalised exactly")
        return str(value)
    if isinstance(value, float):
        return format_number(value)
    raise TypeError(f"cannot canonicalise a {type(value).__name__}")


def _string(text: str) -> str:
    try:
        return orjson.dumps(text).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot canonicalise: {exc}") from exc


def _utf16(key: str) -> bytes:
    """Sort key: the name's UTF-16 code units, big-endian, so bytes compare as the units do."""
    return key.encode("utf-16-be", "surrogatepass")


def format_number(number: float) -> str:
    """A double as ECMAScript's ``Number.prototype.toString`` writes it (RFC 8785 §3.2.2.3).

    Python's ``repr`` already finds the shortest digits that round-trip (the same digits ECMAScript
    picks); only the layout differs (where the decimal point goes, when an exponent is used).
    """
    if math.isnan(number) or math.isinf(number):
        raise ValueError(f"{number} is not a JSON number")
    if number == 0:
        return "0"  # also -0
    sign = "-" if number < 0 else ""
    mantissa, _, exp_text = repr(abs(number)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    if fraction == "0":
        fraction = ""
    digits = (whole + fraction).lstrip("0")
    stripped = digits.rstrip("0")
    k = len(stripped)
    # value = stripped × 10^(n − k), as in ECMAScript's definition
    n = k + (int(exp_text) if exp_text else 0) - len(fraction) + (len(digits) - k)
    if k <= n <= 21:
        text = stripped + "0" * (n - k)
    elif 0 < n <= 21:
        text = stripped[:n] + "." + stripped[n:]
    elif -6 < n <= 0:
        text = "0." + "0" * -n + stripped
    else:
        exponent = n - 1
        head = stripped if k == 1 else stripped[0] + "." + stripped[1:]
        text = f"{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + text
