"""AMF0, the value encoding of RTMP commands and metadata.

Only AMF0 is spoken. A value behind the AMF3 switch marker (0x11) is refused with
:class:`ProtocolError` instead of being half-decoded: encoders only use it when the connection
negotiated objectEncoding 3, and we always answer objectEncoding 0.

Mapping: number <-> float, boolean <-> bool, string/long string <-> str, object <-> dict,
ECMA array <-> :class:`EcmaArray`, strict array <-> list, null <-> None, undefined <->
:data:`UNDEFINED`, date <-> :class:`AmfDate`. Ints encode as numbers. Typed objects decode as
dicts (class name dropped); XML documents decode as str; "unsupported" decodes as UNDEFINED.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from .errors import ProtocolError

NUMBER: Final = 0x00
BOOLEAN: Final = 0x01
STRING: Final = 0x02
OBJECT: Final = 0x03
MOVIECLIP: Final = 0x04
NULL: Final = 0x05
UNDEFINED_MARKER: Final = 0x06
REFERENCE: Final = 0x07
ECMA_ARRAY: Final = 0x08
OBJECT_END: Final = 0x09
STRICT_ARRAY: Final = 0x0A
DATE: Final = 0x0B
LONG_STRING: Final = 0x0C
UNSUPPORTED: Final = 0x0D
RECORDSET: Final = 0x0E
XML_DOCUMENT: Final = 0x0F
TYPED_OBJECT: Final = 0x10
AVMPLUS: Final = 0x11

DEFAULT_MAX_DEPTH: Final = 32

_DOUBLE = struct.Struct(">d")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DATE = struct.Struct(">dh")


class _Undefined:
    """AMF0 ``undefined``: distinct from null, which some peers treat differently."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()


class EcmaArray(dict):  # type: ignore[type-arg]
    """An AMF0 ECMA (associative) array; a dict that remembers to encode as marker 0x08."""

    def __repr__(self) -> str:
        return f"EcmaArray({dict.__repr__(self)})"


@dataclass(frozen=True, slots=True)
class AmfDate:
    """An AMF0 date: milliseconds since the Unix epoch (UTC) and a time zone that is unused."""

    ms: float
    tz: int = 0


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> tuple[Any, int]:
    """Decode one value at ``offset``; return it and the offset just after it."""
    try:
        return _decode(data, offset, 0, max_depth)
    except ProtocolError:
        raise
    except (struct.error, IndexError, UnicodeDecodeError, ValueError, OverflowError) as exc:
        # Every read is bounds-checked first, so this is a bug; still only ProtocolError leaves.
        raise ProtocolError(f"internal error in AMF0 decoder: {exc!r}") from exc
    except RecursionError as exc:  # pragma: no cover - max_depth is validated to stay far below
        raise ProtocolError("AMF0 value nested too deeply") from exc


def decode_all(
    data: bytes | bytearray | memoryview, *, max_depth: int = DEFAULT_MAX_DEPTH
) -> list[Any]:
    """Decode values until the end of ``data`` (a command or data message body)."""
    values = []
    pos = 0
    end = len(data)
    while pos < end:
        value, pos = decode(data, pos, max_depth=max_depth)
        values.append(value)
    return values


def _need(data: Any, pos: int, n: int) -> None:
    if pos + n > len(data):
        raise ProtocolError(
            f"truncated AMF0 value: need {n} bytes at offset {pos}, have {max(0, len(data) - pos)}"
        )


def _read_utf8(data: Any, pos: int, length: int) -> tuple[str, int]:
    _need(data, pos, length)
    end = pos + length
    try:
        return bytes(data[pos:end]).decode("utf-8"), end
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"AMF0 string at offset {pos} is not valid UTF-8") from exc


def _read_key(data: Any, pos: int) -> tuple[str, int]:
    _need(data, pos, 2)
    (length,) = _U16.unpack_from(data, pos)
    return _read_utf8(data, pos + 2, length)


def _decode(data: Any, pos: int, depth: int, max_depth: int) -> tuple[Any, int]:
    _need(data, pos, 1)
    marker = data[pos]
    pos += 1
    if marker == NUMBER:
        _need(data, pos, 8)
        return _DOUBLE.unpack_from(data, pos)[0], pos + 8
    if marker == BOOLEAN:
        _need(data, pos, 1)
        return data[pos] != 0, pos + 1
    if marker == STRING:
        return _read_key(data, pos)
    if marker == LONG_STRING or marker == XML_DOCUMENT:
        _need(data, pos, 4)
        (length,) = _U32.unpack_from(data, pos)
        return _read_utf8(data, pos + 4, length)
    if marker == NULL:
        return None, pos
    if marker == UNDEFINED_MARKER or marker == UNSUPPORTED:
        return UNDEFINED, pos
    if marker == DATE:
        _need(data, pos, 10)
        ms, tz = _DATE.unpack_from(data, pos)
        return AmfDate(ms, tz), pos + 10
    if marker == OBJECT or marker == ECMA_ARRAY or marker == TYPED_OBJECT:
        if depth >= max_depth:
            raise ProtocolError(f"AMF0 nesting deeper than the limit of {max_depth}")
        count = -1
        if marker == TYPED_OBJECT:
            _, pos = _read_key(data, pos)  # class name: we have no classes to map it to
        elif marker == ECMA_ARRAY:
            _need(data, pos, 4)
            (count,) = _U32.unpack_from(data, pos)
            pos += 4
        result: dict[str, Any] = EcmaArray() if marker == ECMA_ARRAY else {}
        return _decode_properties(data, pos, depth + 1, max_depth, result, count)
    if marker == STRICT_ARRAY:
        if depth >= max_depth:
            raise ProtocolError(f"AMF0 nesting deeper than the limit of {max_depth}")
        _need(data, pos, 4)
        (count,) = _U32.unpack_from(data, pos)
        # Each element takes at least one byte: refuse counts the body cannot hold before
        # looping, so a 4-byte header cannot make us spin.
        if count > len(data) - pos - 4:
            raise ProtocolError(
                f"AMF0 strict array claims {count} elements, more than the "
                f"{len(data) - pos - 4} bytes left"
            )
        pos += 4
        items = []
        for _ in range(count):
            item, pos = _decode(data, pos, depth + 1, max_depth)
            items.append(item)
        return items, pos
    if marker == AVMPLUS:
        raise ProtocolError("AMF3 values (marker 0x11) are not supported; use objectEncoding 0")
    if marker == OBJECT_END:
        raise ProtocolError(f"unexpected AMF0 object-end marker at offset {pos - 1}")
    if marker == REFERENCE:
        raise ProtocolError("AMF0 references (marker 0x07) are not supported")
    raise ProtocolError(f"unsupported AMF0 marker 0x{marker:02x} at offset {pos - 1}")


def _decode_properties(
    data: Any, pos: int, depth: int, max_depth: int, result: dict[str, Any], count: int
) -> tuple[dict[str, Any], int]:
    end = len(data)
    while True:
        # Some encoders end an ECMA array after its count without the end marker; accept a
        # body that stops exactly there.
        if pos == end and 0 <= count <= len(result):
            return result, pos
        key, pos = _read_key(data, pos)
        if not key:
            _need(data, pos, 1)
            if data[pos] == OBJECT_END:
                return result, pos + 1
        value, pos = _decode(data, pos, depth, max_depth)
        result[key] = value


# ---------------------------------------------------------------------------------------------
# Encoding


def encode(value: Any) -> bytes:
    """Encode one value; raise TypeError/ValueError for values AMF0 cannot carry."""
    out = bytearray()
    _encode(value, out, 0)
    return bytes(out)


def encode_all(*values: Any) -> bytes:
    """Encode values back to back, as in a command or data message body."""
    out = bytearray()
    for value in values:
        _encode(value, out, 0)
    return bytes(out)


def _encode_key(key: str, out: bytearray) -> None:
    raw = key.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("AMF0 property names are limited to 65535 bytes")
    out += _U16.pack(len(raw))
    out += raw


def _encode(value: Any, out: bytearray, depth: int) -> None:
    if depth > 256:
        raise ValueError("value nested too deeply (or cyclic) to encode as AMF0")
    if value is None:
        out.append(NULL)
    elif value is UNDEFINED:
        out.append(UNDEFINED_MARKER)
    elif isinstance(value, bool):
        out.append(BOOLEAN)
        out.append(1 if value else 0)
    elif isinstance(value, (int, float)):
        out.append(NUMBER)
        out += _DOUBLE.pack(float(value))
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) <= 0xFFFF:
            out.append(STRING)
            out += _U16.pack(len(raw))
        else:
            out.append(LONG_STRING)
            out += _U32.pack(len(raw))
        out += raw
    elif isinstance(value, AmfDate):
        out.append(DATE)
        out += _DATE.pack(value.ms, value.tz)
    elif isinstance(value, dict):
        if isinstance(value, EcmaArray):
            out.append(ECMA_ARRAY)
            out += _U32.pack(len(value))
        else:
            out.append(OBJECT)
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"AMF0 object keys must be str, got {type(key).__name__}")
            _encode_key(key, out)
            _encode(item, out, depth + 1)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        out.append(STRICT_ARRAY)
        out += _U32.pack(len(value))
        for item in value:
            _encode(item, out, depth + 1)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as AMF0")
