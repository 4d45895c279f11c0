"""webapp.parsing: the one decoder of client JSON and parser of integer parameters.

Every refusal must be a ``BadJson`` (a ValueError) or None, never RecursionError, OverflowError
or an integer the database cannot store."""

from __future__ import annotations

import json

import pytest

from webapp.parsing import INT64_MAX, BadJson, parse_id, parse_int, parse_json


def nested(depth: int, inner: str = "") -> str:
    return "[" * depth + inner + "]" * depth


@pytest.mark.parametrize(
    "text",
    [
        nested(100_000),  # balanced: the decoder alone raises RecursionError
        "[" * 4000,  # unbalanced, as fits in one chat frame
        '{"a":' * 5000 + "1" + "}" * 5000,
    ],
)
def test_deep_json_is_refused_not_a_recursion_error(text: str) -> None:
    with pytest.raises(BadJson, match="nested deeper than 32"):
        parse_json(text, 32)
    with pytest.raises(BadJson):
        parse_json(text.encode(), 32)


def test_the_depth_limit_is_exact_and_ignores_brackets_in_strings() -> None:
    assert parse_json(nested(32), 32) == json.loads(nested(32))
    with pytest.raises(BadJson):
        parse_json(nested(33), 32)
    # Brackets inside strings (escaped quotes too) are text, not nesting.
    text = json.dumps({"content": "[" * 500 + '\\"{' * 300, "list": [[["ok"]]]})
    assert parse_json(text, 4)["list"] == [[["ok"]]]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        '{"a": }',
        "[1,]",
        "NaN",
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"id": 9223372036854775808}',
        '{"id": -9223372036854775809}',
        '{"n": ' + "9" * 5000 + "}",
    ],
)
def test_malformed_or_unstorable_json_is_bad_json(text: str) -> None:
    with pytest.raises(BadJson):
        parse_json(text, 32)


def test_int64_bounds_and_utf8() -> None:
    assert parse_json(
        '{"a": 9223372036854775807, "b": -9223372036854775808, "c": 1.5e300}', 32
    ) == {"a": INT64_MAX, "b": -INT64_MAX - 1, "c": 1.5e300}
    assert parse_json('{"t": "caf\u00e9"}'.encode("utf-8"), 32) == {"t": "caf\u00e9"}
    with pytest.raises(BadJson, match="UTF-8"):
        parse_json('{"t": "caf\u00e9"}'.encode("latin-1"), 32)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " 1",
        "1 ",
        "+1",
        "1_000",
        "1e23",
        "1.0",
        "\u00b2",
        "\u0663",
        "0x10",
        "--1",
        "100000000000000000000000",
        str(INT64_MAX + 1),
        str(-INT64_MAX - 2),
    ],
)
def test_parse_int_takes_ascii_decimal_int64_only(raw: str) -> None:
    assert parse_int(raw) is None


def test_parse_int_bounds() -> None:
    assert parse_int("-5") == -5 and parse_int(str(INT64_MAX)) == INT64_MAX
    assert parse_int("0", 1, 10) is None and parse_int("11", 1, 10) is None
    assert parse_int("10", 1, 10) == 10


@pytest.mark.parametrize("raw", ["0", "-1", "01", "\u00b2", "1e3", str(INT64_MAX + 1), "9" * 19])
def test_parse_id_refuses_what_no_row_can_have(raw: str) -> None:
    assert parse_id(raw) is None


def test_parse_id_accepts_every_int64_id() -> None:
    assert parse_id("1") == 1 and parse_id(str(INT64_MAX)) == INT64_MAX
