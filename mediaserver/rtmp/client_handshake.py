"""Client side of the RTMP handshake: C0/C1 out, S0/S1 in, C2 out, S2 in.

We send the digest form of C1 (a non-zero version in bytes 4-7 and an HMAC-SHA256 made with
the Flash Player key), because some servers only answer with their own digests -- or only let
a publisher in at all -- when C1 carries one, and every server also accepts it. The plain form
stays available for servers that choke on it.

How strictly the answer is checked follows what servers actually do. S0 must be version 3: any
other first byte means the port speaks something else (HTTP, TLS to a plain port, RTMPE). When
S1 carries a valid server digest, the server has shown it implements the digest scheme, so S2
must then be either its digest answer to our C1 or a plain echo of C1; anything else is a
broken or hostile peer. When S1 carries no valid digest, S2 is not checked beyond its length:
deployed servers fill it inconsistently (echo, timestamps rewritten, random), and encoders
ignore it when publishing, so refusing here would only refuse working servers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Callable
from typing import Final

from .errors import ProtocolError
from .handshake import (
    DIGEST_SIZE,
    FMS_KEY,
    FMS_KEY_SHORT,
    FP_KEY,
    FP_KEY_SHORT,
    HANDSHAKE_SIZE,
    RTMP_VERSION,
    digest_offset,
    find_digest,
    make_digest,
)

# The Flash Player version we claim in C1 bytes 4-7; servers look for a non-zero value (and a
# major version of at least 9) before they look for our digest.
CLIENT_VERSION: Final = bytes((9, 0, 124, 2))


def _s2_matches(s2: bytes, c1: bytes, client_digest: bytes) -> bool:
    """S2 is the server's digest answer to our C1, or a plain echo of C1."""
    key = hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()
    expected = hmac.new(key, s2[: HANDSHAKE_SIZE - DIGEST_SIZE], hashlib.sha256).digest()
    return hmac.compare_digest(expected, s2[HANDSHAKE_SIZE - DIGEST_SIZE :]) or s2[8:] == c1[8:]


class ClientHandshake:
    """Queues C0+C1 at construction, C2 once S0+S1 arrived; done after S2.

    ``receive_data`` returns how many of the given bytes it used: a server may send S2 and its
    first chunks (Set Chunk Size, Window Acknowledgement Size) in one segment, and the rest
    belongs to the chunk layer.
    """

    def __init__(
        self,
        *,
        now: float = 0.0,
        digest: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._random_bytes = random_bytes
        self._digest = digest
        timestamp = struct.pack(">I", int(now * 1000) & 0xFFFFFFFF)
        if digest:
            c1 = bytearray(timestamp + CLIENT_VERSION + random_bytes(HANDSHAKE_SIZE - 8))
            offset = digest_offset(c1, 0)
            self._client_digest = make_digest(c1, offset, FP_KEY_SHORT)
            c1[offset : offset + DIGEST_SIZE] = self._client_digest
            self._c1 = bytes(c1)
        else:
            self._client_digest = b""
            self._c1 = timestamp + b"\x00\x00\x00\x00" + random_bytes(HANDSHAKE_SIZE - 8)
        self._out = bytearray(bytes((RTMP_VERSION,)) + self._c1)
        self._buf = bytearray()
        self._stage = 0  # 0: want S0+S1, 1: want S2, 2: done
        self._server_signed = False
        self.server_version = b""

    @property
    def done(self) -> bool:
        return self._stage == 2

    def receive_data(self, data: bytes | bytearray | memoryview) -> int:
        used = 0
        while self._stage < 2 and used < len(data):
            want = (1 + HANDSHAKE_SIZE if self._stage == 0 else HANDSHAKE_SIZE) - len(self._buf)
            if not self._buf and self._stage == 0 and data[used] != RTMP_VERSION:
                # Fail at the first byte: an HTTP or TLS server answers with text or a record.
                raise ProtocolError(
                    f"not an RTMP server: handshake version byte 0x{data[used]:02x}, expected 3"
                )
            take = min(want, len(data) - used)
            self._buf += data[used : used + take]
            used += take
            if take < want:
                break
            block = bytes(self._buf)
            self._buf.clear()
            if self._stage == 0:
                self._on_s1(block[1:])
                self._stage = 1
            else:
                if self._server_signed and not _s2_matches(block, self._c1, self._client_digest):
                    raise ProtocolError("handshake S2 answers neither our C1 nor its digest")
                self._stage = 2
        return used

    def _on_s1(self, s1: bytes) -> None:
        self.server_version = s1[4:8]
        found = None
        if self._digest and s1[4:8] != b"\x00\x00\x00\x00":
            found = find_digest(s1, FMS_KEY_SHORT)
        if found is None:
            self._out += s1  # plain form: C2 echoes S1
            return
        self._server_signed = True
        _, server_digest = found
        c2_random = self._random_bytes(HANDSHAKE_SIZE - DIGEST_SIZE)
        key = hmac.new(FP_KEY, server_digest, hashlib.sha256).digest()
        self._out += c2_random + hmac.new(key, c2_random, hashlib.sha256).digest()

    @property
    def server_signed(self) -> bool:
        """S1 carried a valid server digest (the server speaks the digest scheme)."""
        return self._server_signed

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


__all__ = ["CLIENT_VERSION", "ClientHandshake"]
