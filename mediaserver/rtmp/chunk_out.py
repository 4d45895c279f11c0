"""Outgoing chunk stream for a publisher: messages -> chunks, lean enough for relaying.

:class:`~mediaserver.rtmp.chunk.ChunkWriter` serves the server role, which sends a few small
replies; a restream sends every frame of a live stream to each destination, so this writer is
built for that path. A media message is a few header bytes (the FLV tag header) followed by a
frame that is already in memory: the writer takes the two separately and produces the chunked
bytes with one ``b"".join`` of memoryview slices, so the frame is copied once, with one Python
step per chunk and none per byte.

Header compression follows what encoders send (type 1 when length or type change, type 2 when
only the delta changes, type 3 when nothing does), with one caution: a type-2 or type-3 header
right after a type-0 one is ambiguous in the wild (some readers take the type-0 timestamp as
the delta to repeat, others a delta of zero), so after a type-0 header the next message always
states its delta explicitly. Timestamps at or above 0xFFFFFF use the extended field, repeated
on continuation chunks as the specification and nginx-rtmp expect.
"""

from __future__ import annotations

import struct
from typing import Final

from .chunk import DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, basic_header
from .native import NATIVE

_H0 = struct.Struct(">HBHBB")  # timestamp(3) length(3) type(1); the stream id follows
_H1 = _H0
_H2 = struct.Struct(">HB")
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")

MIN_CHUNK_SIZE: Final = 128
MAX_CHUNK_SIZE: Final = 0xFFFFFF  # what the peers we relay to accept in practice


class _Last:
    """What the previous message on one chunk stream said, for header compression."""

    __slots__ = ("stream_id", "length", "type_id", "timestamp", "delta", "ext", "h3")

    def __init__(self, h3: bytes) -> None:
        self.stream_id = -1
        self.length = -1
        self.type_id = -1
        self.timestamp = 0
        self.delta = -1  # delta the last type 1/2 header stated; -1 after a type-0 header
        self.ext = False
        self.h3 = h3  # type-3 basic header of this chunk stream


class PyMessageChunker:
    """Splits outgoing messages into chunks of :attr:`chunk_size` with compressed headers.

    The reference implementation: :data:`MessageChunker` is the compiled one (``_chunks.c``)
    where it is built, and must produce the same bytes (tests compare them).
    """

    __slots__ = ("chunk_size", "_last")

    def __init__(self, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        self.chunk_size = chunk_size
        self._last: dict[int, _Last] = {}

    def message(
        self,
        csid: int,
        type_id: int,
        stream_id: int,
        timestamp: int,
        head: bytes,
        body: bytes | memoryview = b"",
    ) -> bytes:
        """The chunks of one message whose payload is ``head + body`` (``head`` short).

        ``timestamp`` is in ms and may exceed 32 bits (it is sent modulo 2**32). The payload
        must fit the 24-bit length field; the caller checks, since what to do with a frame
        that does not fit is its decision.
        """
        hl = len(head)
        length = hl + len(body)
        last = self._last.get(csid)
        if last is None:
            last = self._last[csid] = _Last(basic_header(3, csid))
        delta = timestamp - last.timestamp
        if last.stream_id != stream_id or not 0 <= delta <= 0xFFFFFFFF:
            field = timestamp & 0xFFFFFFFF
            ext = field >= EXTENDED_TIMESTAMP
            t24 = EXTENDED_TIMESTAMP if ext else field
            header = (
                basic_header(0, csid)
                + _H0.pack(t24 >> 8, t24 & 0xFF, length >> 8, length & 0xFF, type_id)
                + _U32LE.pack(stream_id & 0xFFFFFFFF)
            )
            last.stream_id = stream_id
            last.length = length
            last.type_id = type_id
            last.delta = -1
        else:
            field = delta
            ext = field >= EXTENDED_TIMESTAMP
            t24 = EXTENDED_TIMESTAMP if ext else field
            if last.length != length or last.type_id != type_id:
                header = basic_header(1, csid) + _H1.pack(
                    t24 >> 8, t24 & 0xFF, length >> 8, length & 0xFF, type_id
                )
                last.length = length
                last.type_id = type_id
            elif last.delta != delta:
                header = basic_header(2, csid) + _H2.pack(t24 >> 8, t24 & 0xFF)
            else:
                header = last.h3
            last.delta = delta
        last.timestamp = timestamp
        last.ext = ext
        if ext:
            ext_bytes = _U32.pack(field)
            header += ext_bytes
            cont = last.h3 + ext_bytes
        else:
            cont = last.h3
        size = self.chunk_size
        if length <= size:
            return b"".join((header, head, body))
        view = memoryview(body)
        first = size - hl
        pieces: list[bytes | memoryview] = [header, head, view[:first]]
        for start in range(first, length - hl, size):
            pieces.append(cont)
            pieces.append(view[start : start + size])
        return b"".join(pieces)


if NATIVE is not None:
    # What the client role uses: the compiled chunker where it is built, else the reference.
    MessageChunker: type[PyMessageChunker] = NATIVE.Chunker
else:
    MessageChunker = PyMessageChunker

__all__ = ["MAX_CHUNK_SIZE", "MIN_CHUNK_SIZE", "MessageChunker", "PyMessageChunker"]
