"""Server side of the RTMP handshake: C0/C1 -> S0/S1/S2, then C2.

Two forms exist in the wild. The plain form of the published spec (C1 bytes 4-7 zero) is
answered with S2 echoing C1. Flash Player 9+ and the encoders derived from it (OBS via librtmp,
ffmpeg) put an HMAC-SHA256 digest into C1 and, when playing, check that S1 and S2 carry digests
made with the server key; a server that only echoes works for publishing with most of them, but
the digest answer works for all. When a C1 claims the digest form but its digest does not
validate, we fall back to the plain echo (ffmpeg accepts it). C2 is read and ignored: clients
disagree about its content and nothing in it matters for security.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Final

from .errors import ProtocolError

HANDSHAKE_SIZE: Final = 1536
RTMP_VERSION: Final = 3
DIGEST_SIZE: Final = 32

_KEY_TAIL: Final = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
# Flash Player key: the first 30 bytes sign C1.
FP_KEY: Final = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
# Flash Media Server key: the first 36 bytes sign S1; all 68 derive the S2 key.
FMS_KEY: Final = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL
FP_KEY_SHORT: Final = FP_KEY[:30]
FMS_KEY_SHORT: Final = FMS_KEY[:36]

# The version we claim in S1 bytes 4-7 when answering a digest C1 (must be non-zero, and
# ffmpeg wants byte 4 >= 3 before it checks our digest).
SERVER_VERSION: Final = bytes((4, 5, 0, 1))

# Digest position schemas: the four bytes at ``base`` pick an offset in the 728 bytes after them.
SCHEMA_BASES: Final = (8, 772)


def digest_offset(block: bytes | bytearray, schema: int) -> int:
    """Offset of the 32-byte digest inside a 1536-byte C1/S1 for schema 0 (base 8) or 1 (772)."""
    base = SCHEMA_BASES[schema]
    return sum(block[base : base + 4]) % 728 + base + 4


def make_digest(block: bytes | bytearray, offset: int, key: bytes) -> bytes:
    """HMAC-SHA256 of ``block`` without the 32 digest bytes at ``offset``."""
    mac = hmac.new(key, block[:offset], hashlib.sha256)
    mac.update(block[offset + DIGEST_SIZE :])
    return mac.digest()


def find_digest(block: bytes | bytearray, key: bytes) -> tuple[int, bytes] | None:
    """Return (schema, digest) of the first schema whose digest validates with ``key``."""
    for schema in (0, 1):
        offset = digest_offset(block, schema)
        digest = bytes(block[offset : offset + DIGEST_SIZE])
        if hmac.compare_digest(digest, make_digest(block, offset, key)):
            return schema, digest
    return None


def s2_digest_key(client_digest: bytes) -> bytes:
    """Key that signs S2 in the digest form: HMAC(full FMS key, client digest)."""
    return hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()


def check_version(version: int) -> None:
    """Refuse C0 versions we cannot speak; any other version 0-31 is answered with 3."""
    if version in (6, 8, 9):
        raise ProtocolError(f"encrypted RTMP (RTMPE, version {version}) is not supported")
    if version >= 32:
        # The spec reserves 32-255 so that text protocols (HTTP to the wrong port) are
        # recognised at the first byte.
        raise ProtocolError(f"not an RTMP handshake (version byte 0x{version:02x})")


def build_server_response(
    c0c1: bytes,
    *,
    now_ms: int = 0,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> tuple[bytes, int | None]:
    """S0+S1+S2 for a 1537-byte C0+C1; also the digest schema used (None: plain echo)."""
    check_version(c0c1[0])
    c1 = c0c1[1 : 1 + HANDSHAKE_SIZE]
    timestamp = struct.pack(">I", now_ms & 0xFFFFFFFF)
    found = find_digest(c1, FP_KEY_SHORT) if c1[4:8] != b"\x00\x00\x00\x00" else None
    if found is None:
        s1 = timestamp + b"\x00\x00\x00\x00" + random_bytes(HANDSHAKE_SIZE - 8)
        return bytes((RTMP_VERSION,)) + s1 + bytes(c1), None
    schema, client_digest = found
    signed_s1 = bytearray(timestamp + SERVER_VERSION + random_bytes(HANDSHAKE_SIZE - 8))
    offset = digest_offset(signed_s1, schema)
    signed_s1[offset : offset + DIGEST_SIZE] = make_digest(signed_s1, offset, FMS_KEY_SHORT)
    s2_random = random_bytes(HANDSHAKE_SIZE - DIGEST_SIZE)
    s2 = s2_random + hmac.new(s2_digest_key(client_digest), s2_random, hashlib.sha256).digest()
    return bytes((RTMP_VERSION,)) + bytes(signed_s1) + s2, schema


class ServerHandshake:
    """Consumes C0+C1 and C2 from the front of the byte stream; queues S0+S1+S2.

    ``receive_data`` returns how many of the given bytes it used, so the caller hands the rest
    (a client may send C2 and its first chunks in one segment) to the chunk layer.
    """

    def __init__(self, *, random_bytes: Callable[[int], bytes] = os.urandom) -> None:
        self._random_bytes = random_bytes
        self._buf = bytearray()
        self._out = bytearray()
        self._stage = 0  # 0: want C0+C1, 1: want C2, 2: done
        self.digest_schema: int | None = None
        self.client_version = b""

    @property
    def done(self) -> bool:
        return self._stage == 2

    def receive_data(self, data: bytes | bytearray | memoryview, now: float = 0.0) -> int:
        used = 0
        while self._stage < 2 and used < len(data):
            want = (1 + HANDSHAKE_SIZE if self._stage == 0 else HANDSHAKE_SIZE) - len(self._buf)
            if not self._buf and self._stage == 0:
                # Fail at the first byte rather than after 1536 bytes of somebody's HTTP.
                check_version(data[used])
            take = min(want, len(data) - used)
            self._buf += data[used : used + take]
            used += take
            if take < want:
                break
            if self._stage == 0:
                block = bytes(self._buf)
                self.client_version = block[5:9]
                response, self.digest_schema = build_server_response(
                    block, now_ms=int(now * 1000), random_bytes=self._random_bytes
                )
                self._out += response
                self._stage = 1
            else:
                self._stage = 2  # C2: deliberately not checked
            self._buf.clear()
        return used

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out
