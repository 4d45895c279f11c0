"""The PROXY protocol header parser (mediaserver/ingest/proxy_header.py), v1 and v2: each
case fed whole and one byte at a time, with what follows the header kept for RTMP; and fuzzed,
where only ProxyHeaderError may escape and a header is never longer than allowed."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaserver.ingest.proxy_header import (
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    ProxyHeaderReader,
    parse_proxy_header,
)

RTMP_C0C1 = b"\x03" + bytes(range(64))  # what follows the header: the RTMP handshake


def v2(
    command: int = 1,
    family: int = 1,
    transport: int = 1,
    addresses: bytes | None = None,
    tlvs: bytes = b"",
) -> bytes:
    if addresses is None:
        if family == 1:
            addresses = bytes([203, 0, 113, 7, 10, 0, 0, 5]) + struct.pack("!HH", 51234, 1935)
        elif family == 2:
            addresses = (
                ipaddress.IPv6Address("2001:db8::7").packed
                + ipaddress.IPv6Address("2001:db8::1").packed
                + struct.pack("!HH", 40000, 1935)
            )
        else:
            addresses = b""
    body = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family << 4 | transport])
        + (struct.pack("!H", len(body)) + body)
    )


def feed_whole(data: bytes, max_size: int = 4096) -> tuple[ProxyHeader | None, bytes]:
    reader = ProxyHeaderReader(max_size)
    header = reader.feed(data)
    return header, reader.rest


def feed_bytewise(data: bytes, max_size: int = 4096) -> tuple[ProxyHeader | None, bytes]:
    reader = ProxyHeaderReader(max_size)
    header = None
    for i in range(len(data)):
        header = reader.feed(data[i : i + 1])
    return header, reader.rest


FEEDS = pytest.mark.parametrize("feed", [feed_whole, feed_bytewise], ids=["whole", "bytewise"])

GOOD = [
    (
        b"PROXY TCP4 198.51.100.22 203.0.113.1 35646 1935\r\n",
        ProxyHeader(1, ("198.51.100.22", 35646), ("203.0.113.1", 1935), 49),
    ),
    (
        b"PROXY TCP6 2001:db8::22 2001:db8::1 65535 0\r\n",
        ProxyHeader(1, ("2001:db8::22", 65535), ("2001:db8::1", 0), 45),
    ),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, None, None, 15)),
    (b"PROXY UNKNOWN whatever follows\r\n", ProxyHeader(1, None, None, 32)),
    (v2(), ProxyHeader(2, ("203.0.113.7", 51234), ("10.0.0.5", 1935), 28)),
    (v2(family=2), ProxyHeader(2, ("2001:db8::7", 40000), ("2001:db8::1", 1935), 52)),
    # TLVs (e.g. haproxy's unique id) are skipped whole.
    (
        v2(tlvs=b"\x05\x00\x03abc\x04\x00\x00"),
        ProxyHeader(2, ("203.0.113.7", 51234), ("10.0.0.5", 1935), 37),
    ),
    # LOCAL: the proxy's own connection (a health check); any family, no client.
    (v2(command=0, family=0, transport=0), ProxyHeader(2, None, None, 16)),
    (v2(command=0), ProxyHeader(2, None, None, 28)),
    # UNSPEC and UNIX families carry no IP client.
    (v2(family=0, transport=0, addresses=b"junk"), ProxyHeader(2, None, None, 20)),
    (v2(family=3, addresses=bytes(216)), ProxyHeader(2, None, None, 232)),
]


@FEEDS
@pytest.mark.parametrize(("data", "expected"), GOOD)
def test_valid_headers(feed, data: bytes, expected: ProxyHeader) -> None:
    assert len(data) == expected.length
    header, rest = feed(data + RTMP_C0C1)
    assert header == expected
    assert rest == RTMP_C0C1


@FEEDS
@pytest.mark.parametrize(("data", "expected"), GOOD)
def test_incomplete_header_waits(feed, data: bytes, expected: ProxyHeader) -> None:
    header, rest = feed(data[:-1])
    assert header is None and rest == b""


BAD = [
    (b"\x03" + bytes(1536), "not a PROXY protocol header"),  # a plain RTMP client
    (b"GET / HTTP/1.1\r\n", "not a PROXY protocol header"),
    (b"PROXZ TCP4", "not a PROXY protocol header"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "unknown protocol"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "two addresses and two ports"),
    (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "two addresses and two ports"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "two addresses and two ports"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "bad IPv4 address"),
    (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", "bad IPv6 address"),
    (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "bad IPv6 address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "without CRLF"),
    (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "CR"),  # stray CR: at once, or when CRLF comes
    (b"PROXY UNKNOWN " + b"x" * 200, "without CRLF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n", "not ASCII"),
    (V2_SIGNATURE + b"\x11\x11\x00\x0c" + bytes(12), "version 1, expected 2"),
    (V2_SIGNATURE + b"\x22\x11\x00\x0c" + bytes(12), "unknown command 2"),
    (V2_SIGNATURE + b"\x21\x41\x00\x0c" + bytes(12), "unknown address family 4"),
    (V2_SIGNATURE + b"\x21\x13\x00\x0c" + bytes(12), "unknown transport 3"),
    (v2(transport=2), "datagram"),
    (v2(addresses=bytes(11)), "11 bytes for a 12-byte address block"),
    (v2(family=2, addresses=bytes(35)), "35 bytes for a 36-byte address block"),
    (V2_SIGNATURE[:5] + b"X", "not a PROXY protocol header"),
]


@FEEDS
@pytest.mark.parametrize(("data", "message"), BAD)
def test_bad_headers(feed, data: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        feed(data)


def test_bad_bytes_are_refused_as_soon_as_they_arrive() -> None:
    """A direct RTMP client sent to the header port is refused at its first byte, not after
    a timeout; a wrong v2 signature at the first byte that differs."""
    with pytest.raises(ProxyHeaderError):
        ProxyHeaderReader().feed(b"\x03")
    reader = ProxyHeaderReader()
    assert reader.feed(V2_SIGNATURE[:6]) is None
    with pytest.raises(ProxyHeaderError):
        reader.feed(b"\x00")


def test_max_size_bounds_v2_headers() -> None:
    """A v2 header longer than max_size is refused once its length field arrives, before its
    body: the reader never buffers more than max_size."""
    big = v2(tlvs=b"\x05\xff\xf0" + bytes(0xFFF0))
    with pytest.raises(ProxyHeaderError, match="more than the 4096 allowed"):
        ProxyHeaderReader(4096).feed(big[:16])
    header, rest = feed_whole(big + b"x", 70000)
    assert header is not None and header.length == len(big) and rest == b"x"


def test_v1_header_longer_than_107_bytes_is_refused() -> None:
    line = b"PROXY TCP6 " + b"0" * 120 + b"\r\n"
    with pytest.raises(ProxyHeaderError, match="first 107 bytes"):
        feed_bytewise(line)


FUZZ = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _check(data: bytes, max_size: int) -> None:
    whole: object
    try:
        whole = parse_proxy_header(data, max_size)
    except ProxyHeaderError:
        whole = ProxyHeaderError
    reader = ProxyHeaderReader(max_size)
    bytewise: object = None
    try:
        for i in range(len(data)):
            bytewise = reader.feed(data[i : i + 1])
            if bytewise is not None:
                break
    except ProxyHeaderError:
        bytewise = ProxyHeaderError
    if isinstance(whole, ProxyHeader):
        assert whole.length <= max_size
        assert bytewise == whole
    elif whole is ProxyHeaderError:
        # Whole input refused: fed byte by byte it is refused too (maybe earlier), or was a
        # complete header before the bad bytes (then whole parsing agrees on that prefix).
        assert bytewise is ProxyHeaderError
    else:
        assert bytewise is None


@FUZZ
@given(st.binary(max_size=300), st.integers(min_value=232, max_value=4096))
def test_fuzz_random_bytes(data: bytes, max_size: int) -> None:
    _check(data, max_size)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    base = draw(st.sampled_from([g[0] for g in GOOD]))
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        if op == "flip":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i]
        else:
            data.insert(i, draw(st.integers(0, 255)))
    return bytes(data) + draw(st.binary(max_size=20))


@FUZZ
@given(mutated())
def test_fuzz_mutated_headers(data: bytes) -> None:
    _check(data, 4096)
