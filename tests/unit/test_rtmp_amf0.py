"""AMF0 codec: exact bytes from the spec, round trips of every type, limits, AMF3 refusal."""

from __future__ import annotations

import math
import struct

import pytest

from mediaserver.rtmp import amf0
from mediaserver.rtmp.amf0 import UNDEFINED, AmfDate, EcmaArray
from mediaserver.rtmp.errors import ProtocolError


@pytest.mark.parametrize(
    "value,encoded",
    [
        (1.5, b"\x00" + struct.pack(">d", 1.5)),
        (3, b"\x00" + struct.pack(">d", 3.0)),
        (True, b"\x01\x01"),
        (False, b"\x01\x00"),
        ("ab", b"\x02\x00\x02ab"),
        ("é", b"\x02\x00\x02\xc3\xa9"),
        (None, b"\x05"),
        (UNDEFINED, b"\x06"),
        ({"a": 1.0}, b"\x03\x00\x01a\x00" + struct.pack(">d", 1.0) + b"\x00\x00\x09"),
        (EcmaArray(a="x"), b"\x08\x00\x00\x00\x01\x00\x01a\x02\x00\x01x\x00\x00\x09"),
        ([1.0, "x"], b"\x0a\x00\x00\x00\x02\x00" + struct.pack(">d", 1.0) + b"\x02\x00\x01x"),
        (AmfDate(1700000000000.0, 0), b"\x0b" + struct.pack(">dh", 1700000000000.0, 0)),
    ],
)
def test_exact_encoding(value, encoded):
    assert amf0.encode(value) == encoded
    decoded, end = amf0.decode(encoded)
    assert end == len(encoded)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, int)


def test_long_string_round_trip():
    text = "x" * 70000
    encoded = amf0.encode(text)
    assert encoded[0] == 0x0C and struct.unpack(">I", encoded[1:5])[0] == 70000
    assert amf0.decode(encoded) == (text, len(encoded))


def test_short_string_may_use_long_string_marker():
    assert amf0.decode(b"\x0c\x00\x00\x00\x02hi") == ("hi", 7)


def test_every_type_nested_round_trip():
    value = {
        "number": -0.25,
        "int": 7.0,
        "bool": True,
        "str": "stream",
        "long": "y" * 66000,
        "null": None,
        "undef": UNDEFINED,
        "date": AmfDate(1.5e12, -60),
        "ecma": EcmaArray({"duration": 0.0, "nested": {"deep": [1.0, [2.0, {"x": None}]]}}),
        "strict": [None, UNDEFINED, False, "", {}, EcmaArray(), []],
        "": "empty key",
    }
    encoded = amf0.encode_all("cmd", 1.0, value)
    assert amf0.decode_all(encoded) == ["cmd", 1.0, value]
    decoded = amf0.decode_all(encoded)[2]
    assert isinstance(decoded["ecma"], EcmaArray)
    assert not isinstance(decoded["ecma"]["nested"], EcmaArray)
    assert decoded["undef"] is UNDEFINED


def test_special_floats():
    assert amf0.decode(amf0.encode(math.inf))[0] == math.inf
    assert math.isnan(amf0.decode(amf0.encode(math.nan))[0])


def test_ecma_array_without_end_marker_is_accepted_at_end_of_body():
    body = b"\x08\x00\x00\x00\x01\x00\x01a\x05"
    assert amf0.decode(body) == (EcmaArray(a=None), len(body))


def test_ecma_array_count_is_not_trusted():
    # Encoders write wrong counts; the end marker is what ends the array.
    body = b"\x08\x00\x00\x00\x05\x00\x01a\x05\x00\x00\x09"
    assert amf0.decode(body) == (EcmaArray(a=None), len(body))


def test_typed_object_decodes_as_dict_and_xml_as_string():
    typed = b"\x10\x00\x03Cls\x00\x01k\x05\x00\x00\x09"
    assert amf0.decode(typed) == ({"k": None}, len(typed))
    assert amf0.decode(b"\x0f\x00\x00\x00\x03<a>") == ("<a>", 8)
    assert amf0.decode(b"\x0d") == (UNDEFINED, 1)


def test_depth_limit():
    def nested(depth: int) -> bytes:
        return b"\x03\x00\x01k" * (depth - 1) + b"\x03" + b"\x00\x00\x09" * depth

    assert amf0.decode(nested(32), max_depth=32)[1] == len(nested(32))
    with pytest.raises(ProtocolError, match="nesting"):
        amf0.decode(nested(33), max_depth=32)
    arrays = b"\x0a\x00\x00\x00\x01" * 5 + b"\x05"
    assert amf0.decode(arrays, max_depth=5)[0] == [[[[[None]]]]]
    with pytest.raises(ProtocolError, match="nesting"):
        amf0.decode(arrays, max_depth=4)


def test_deep_nesting_is_refused_not_a_recursion_error():
    with pytest.raises(ProtocolError):
        amf0.decode(b"\x0a\x00\x00\x00\x01" * 100000)


def test_amf3_switch_marker_refused():
    with pytest.raises(ProtocolError, match="AMF3"):
        amf0.decode(b"\x11\x04\x01")
    with pytest.raises(ProtocolError, match="AMF3"):
        amf0.decode_all(amf0.encode_all("connect", 1.0) + b"\x11\x0a\x0b\x01\x01")


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\x00\x00\x00", "truncated"),
        (b"\x02\x00\x05ab", "truncated"),
        (b"\x02\x00\x02\xff\xfe", "UTF-8"),
        (b"\x03\x00\x01a", "truncated"),
        (b"\x03\x00\x01a\x00", "truncated"),
        (b"\x0a\xff\xff\xff\xff\x05", "claims"),
        (b"\x09", "object-end"),
        (b"\x07\x00\x01", "reference"),
        (b"\x04", "unsupported"),
        (b"\x12", "unsupported"),
        (b"\x0b\x00", "truncated"),
    ],
)
def test_malformed_input(data, match):
    with pytest.raises(ProtocolError, match=match):
        amf0.decode_all(data)


def test_empty_input():
    assert amf0.decode_all(b"") == []
    with pytest.raises(ProtocolError, match="truncated"):
        amf0.decode(b"")
    with pytest.raises(ProtocolError, match="truncated"):
        amf0.decode(b"\x05", 1)


def test_encode_refuses_what_amf0_cannot_carry():
    with pytest.raises(TypeError):
        amf0.encode(object())
    with pytest.raises(TypeError):
        amf0.encode({1: 2})
    cyclic: list = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError):
        amf0.encode(cyclic)


def test_undefined_is_a_falsy_singleton():
    assert not UNDEFINED
    assert repr(UNDEFINED) == "UNDEFINED"
    assert type(UNDEFINED)() is UNDEFINED
