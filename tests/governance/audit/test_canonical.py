"""RFC 8785 canonicalisation: the RFC's examples and number table, and ECMAScript itself (node) as the
independent reference for number formatting and member order."""

from __future__ import annotations

import json
import math
import shutil
import struct
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from socle.governance.audit.canonical import canonicalize, format_number

# RFC 8785 Appendix B: IEEE-754 bit patterns and their canonical JSON numbers.
RFC_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(bits))[0]
    return value


@pytest.mark.parametrize(("bits", "expected"), RFC_NUMBERS)
def test_rfc_number_table(bits: str, expected: str) -> None:
    assert format_number(_double(bits)) == expected
    assert canonicalize([_double(bits)]) == f"[{expected}]".encode()


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_refused(bits: str) -> None:
    with pytest.raises(ValueError, match="not a JSON number"):
        canonicalize({"x": _double(bits)})


def test_rfc_example_values() -> None:
    """RFC 8785 §3.2.2 (the values example) and §3.2.3 (member sorting)."""
    source = (
        '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
        ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
        ' "literals": [null, true, false]}'
    )
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonicalize(json.loads(source)) == expected.encode()


def test_rfc_example_sorting_by_utf16_code_units() -> None:
    source = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    order = [json.loads(b"{" + part + b"}") for part in canonicalize(source)[1:-1].split(b",")]
    assert [next(iter(p.values())) for p in order] == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",  # U+1F600 is D83D DE00 in UTF-16: before U+FB33, unlike in code points
        "Hebrew Letter Dalet With Dagesh",
    ]


def test_weird_names_and_controls() -> None:
    source = {"\u20ac": "Euro Sign", "1": "One", "\u0080": "Control\u007f", "</script>": "Browser"}
    expected = '{"1":"One","</script>":"Browser","\u0080":"Control\u007f","€":"Euro Sign"}'
    assert canonicalize(source) == expected.encode()


def test_string_escaping_is_minimal() -> None:
    text = "".join(chr(i) for i in range(0x20)) + '"\\/\u2028é'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\\u000e\\u000f'
        "\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c"
        '\\u001d\\u001e\\u001f\\"\\\\/\u2028é"'
    )
    assert canonicalize(text) == expected.encode()
    assert canonicalize({"k": text, "n": 1.5}) == b'{"k":' + expected.encode() + b',"n":1.5}'


@pytest.mark.parametrize(
    "bad",
    [{1: "x"}, "\ud800", {"x": 2**53 + 1}, {"x": -(2**60)}, {"x": {1, 2}}, {"é": "\udc00"}, b"bytes"],
)
def test_refused_values(bad: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        canonicalize(bad)


def test_fast_and_slow_paths_agree() -> None:
    value = {"b": [1, True, None, "x\n"], "a": {"z": -(2**53), "y": ""}, "c": ()}
    fast = canonicalize(value)
    slow = canonicalize({**value, "é": 0})  # a non-ASCII name forces the slow path
    assert fast == b'{"a":{"y":"","z":-9007199254740992},"b":[1,true,null,"x\\n"],"c":[]}'
    assert slow == fast[:-1] + b',"\xc3\xa9":0}'


_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(_json)
def test_canonical_form_is_json_for_the_same_value_and_is_idempotent(value: object) -> None:
    text = canonicalize(value)
    parsed = json.loads(text, parse_int=float)  # JCS numbers are doubles
    assert canonicalize(parsed) == text
    assert _same(parsed, value)


def _same(a: object, b: object) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, int | float) and not isinstance(b, bool):
        return a == b
    return a == b


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node (ECMAScript) as the reference")
def test_numbers_and_member_order_match_ecmascript() -> None:
    """Random doubles of every magnitude and random names: JSON.stringify and UTF-16 sorting in node."""
    import random

    rng = random.Random(8785)
    numbers = [_double(f"{rng.getrandbits(64):016x}") for _ in range(20_000)]
    numbers = [x for x in numbers if math.isfinite(x)]
    numbers += [rng.uniform(-1e6, 1e6) for _ in range(2000)] + [
        float(rng.randint(-(10**22), 10**22)) for _ in range(2000)
    ]
    numbers += [10.0**e for e in range(-330, 309)] + [1.5 * 10.0**e for e in range(-320, 300)]
    names = [
        "".join(
            chr(
                rng.choice(
                    [
                        rng.randint(32, 0x7E),
                        rng.randint(0x80, 0xD7FF),
                        rng.randint(0xE000, 0xFFFF),
                        rng.randint(0x10000, 0x10FFFF),
                    ]
                )
            )
            for _ in range(3)
        )
        for _ in range(300)
    ]
    script = (
        "const d=JSON.parse(require('fs').readFileSync(0,'utf8'));"
        "process.stdout.write(JSON.stringify({n:d.n.map(x=>String(x)),k:d.k.slice().sort()}));"
    )
    payload = json.dumps({"n": numbers, "k": names})
    out = subprocess.run(["node", "-e", script], input=payload, capture_output=True, text=True, check=True)
    reference = json.loads(out.stdout)
    assert [format_number(x) for x in numbers] == reference["n"]
    ordered = canonicalize(dict.fromkeys(names, 0))
    assert list(json.loads(ordered)) == reference["k"]
