"""The PROXY protocol header (versions 1 and 2) a TCP proxy such as haproxy puts in front of a
connection, so the server learns the address of the client the proxy accepted.

Sans-I/O, like the RTMP core: ``ProxyHeaderReader.feed(bytes)`` returns the header once all of
it has arrived (``None`` until then) and keeps the bytes that followed it for the protocol
behind (``rest``). Nothing here touches a socket or a clock: the glue decides who may send a
header and how long it may take. Input is bounded: the reader refuses a header longer than its
``max_size`` as soon as the length is known, and v1's line is at most 107 bytes by definition.
The only exception that leaves this module is ``ProxyHeaderError``.

What a header may carry that we do not use: v2's TLVs (skipped whole) and the destination
address (kept, for logs). ``LOCAL`` (v2) and ``UNKNOWN`` (v1) headers, which a proxy sends for
its own health checks, carry no client: ``source`` is then ``None`` and the connection's own
peer stands.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = [
    "V1_MAX_LENGTH",
    "V2_SIGNATURE",
    "ProxyHeader",
    "ProxyHeaderError",
    "ProxyHeaderReader",
    "parse_proxy_header",
]

V1_PREFIX = b"PROXY "
V1_MAX_LENGTH = 107  # "PROXY TCP6 " + two full IPv6 addresses + two ports + CRLF
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16  # signature, version/command, family/transport, length

# v2 address block sizes by family (high nibble of byte 13): INET, INET6, UNIX.
_V2_ADDRESS_SIZE = {1: 12, 2: 36, 3: 216}

Address = tuple[str, int]


class ProxyHeaderError(Exception):
    """The bytes are not a valid PROXY protocol header (or one longer than allowed)."""


@dataclass(frozen=True)
class ProxyHeader:
    version: int  # 1 or 2
    # The client the proxy accepted and the address it accepted it on; None for LOCAL/UNKNOWN
    # (the proxy speaking for itself) and for v2's UNSPEC or UNIX families.
    source: Address | None
    destination: Address | None
    length: int  # bytes the header took on the wire


def parse_proxy_header(data: bytes, max_size: int = 4096) -> ProxyHeader | None:
    """The header at the start of ``data``, or None if more bytes are needed to tell.

    Raises ``ProxyHeaderError`` as soon as the bytes cannot start a valid header or the header
    would be longer than ``max_size``."""
    if not data:
        return None
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data, max_size)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data, max_size)
    raise ProxyHeaderError("not a PROXY protocol header")


def _parse_v1(data: bytes, max_size: int) -> ProxyHeader | None:
    limit = min(V1_MAX_LENGTH, max_size)
    head = data[: len(V1_PREFIX)]
    if not V1_PREFIX.startswith(head):
        raise ProxyHeaderError("not a PROXY protocol header")
    end = data.find(b"\r\n", 0, limit)
    if end < 0:
        cr = data.find(b"\r", 0, limit)
        if len(data) >= limit or b"\n" in data[:limit] or 0 <= cr < len(data) - 1:
            raise ProxyHeaderError(f"v1 header without CRLF in its first {limit} bytes")
        return None
    line = data[len(V1_PREFIX) : end]
    if b"\r" in line or b"\n" in line:
        raise ProxyHeaderError("v1 header: stray CR or LF")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ProxyHeaderError("v1 header: not ASCII") from None
    length = end + 2
    fields = text.split(" ")
    if fields[0] == "UNKNOWN":
        return ProxyHeader(1, None, None, length)
    if fields[0] not in ("TCP4", "TCP6"):
        raise ProxyHeaderError(f"v1 header: unknown protocol {fields[0][:16]!r}")
    if len(fields) != 5:
        raise ProxyHeaderError("v1 header: expected protocol, two addresses and two ports")
    version = 4 if fields[0] == "TCP4" else 6
    src = _v1_address(fields[1], version)
    dst = _v1_address(fields[2], version)
    sport = _v1_port(fields[3])
    dport = _v1_port(fields[4])
    return ProxyHeader(1, (src, sport), (dst, dport), length)


def _v1_address(text: str, version: int) -> str:
    if "%" in text:  # a scope id is no client address
        raise ProxyHeaderError(f"v1 header: bad IPv{version} address {text[:48]!r}")
    try:
        ip = ipaddress.IPv4Address(text) if version == 4 else ipaddress.IPv6Address(text)
    except ValueError:
        raise ProxyHeaderError(f"v1 header: bad IPv{version} address {text[:48]!r}") from None
    return str(ip)


def _v1_port(text: str) -> int:
    # Decimal, no sign, no leading zero (the specification's form), 0-65535.
    plain = text.isascii() and text.isdigit() and len(text) <= 5
    if not plain or (text[0] == "0" and text != "0"):
        raise ProxyHeaderError(f"v1 header: bad port {text[:8]!r}")
    port = int(text)
    if port > 65535:
        raise ProxyHeaderError(f"v1 header: bad port {text!r}")
    return port


def _parse_v2(data: bytes, max_size: int) -> ProxyHeader | None:
    head = data[: len(V2_SIGNATURE)]
    if not V2_SIGNATURE.startswith(head):
        raise ProxyHeaderError("not a PROXY protocol header")
    if len(data) < 13:
        return None
    ver_cmd = data[12]
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"v2 header: version {ver_cmd >> 4}, expected 2")
    command = ver_cmd & 0x0F
    if command > 1:
        raise ProxyHeaderError(f"v2 header: unknown command {command}")
    if len(data) < 14:
        return None
    family, transport = data[13] >> 4, data[13] & 0x0F
    if family > 3:
        raise ProxyHeaderError(f"v2 header: unknown address family {family}")
    if transport > 2:
        raise ProxyHeaderError(f"v2 header: unknown transport {transport}")
    if command == 1 and transport == 2:
        raise ProxyHeaderError("v2 header: a datagram (UDP) connection on a TCP listener")
    if len(data) < V2_FIXED:
        return None
    (body,) = struct.unpack_from("!H", data, 14)
    length = V2_FIXED + body
    if length > max_size:
        raise ProxyHeaderError(f"v2 header of {length} bytes, more than the {max_size} allowed")
    need = _V2_ADDRESS_SIZE.get(family, 0)
    if command == 1 and body < need:
        raise ProxyHeaderError(f"v2 header: {body} bytes for a {need}-byte address block")
    if len(data) < length:
        return None
    if command == 0 or family not in (1, 2) or transport == 0:
        # LOCAL (the proxy's own connection, e.g. a health check), or nothing we can use.
        return ProxyHeader(2, None, None, length)
    if family == 1:
        src = str(ipaddress.IPv4Address(data[16:20]))
        dst = str(ipaddress.IPv4Address(data[20:24]))
        sport, dport = struct.unpack_from("!HH", data, 24)
    else:
        src = str(ipaddress.IPv6Address(data[16:32]))
        dst = str(ipaddress.IPv6Address(data[32:48]))
        sport, dport = struct.unpack_from("!HH", data, 48)
    return ProxyHeader(2, (src, sport), (dst, dport), length)


class ProxyHeaderReader:
    """Collects bytes until a whole header is there; then ``rest`` holds what followed it."""

    def __init__(self, max_size: int = 4096) -> None:
        self.max_size = max_size
        self._buffer = b""
        self.header: ProxyHeader | None = None
        self.rest = b""

    @property
    def received(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> ProxyHeader | None:
        if self.header is not None:
            self.rest += data
            return self.header
        # Never hold more than a header may take, plus what this read brought.
        self._buffer += data
        header = parse_proxy_header(self._buffer, self.max_size)
        if header is None:
            if len(self._buffer) >= self.max_size:
                raise ProxyHeaderError(f"no complete header in {self.max_size} bytes")
            return None
        self.header = header
        self.rest = self._buffer[header.length :]
        self._buffer = b""
        return header
