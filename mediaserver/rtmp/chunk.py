"""RTMP chunk stream: de-multiplexing chunks into messages, and writing messages as chunks.

The reader is the hot loop of ingest: every byte a publisher sends passes through it, so it is
built for CPython. One bytearray holds unparsed input and is consumed by an offset, compacted
once per ``feed`` (an O(1) front deletion). A chunk is consumed only when all of it is buffered,
so there is no mid-chunk state. The common case -- the rest of a message follows as type-3
chunks of the same chunk stream at a fixed stride -- is verified with one strided slice per
header byte and gathered with one C-level copy (numpy drops the header columns of the
(chunks, stride) block), so a 25 KB message at 128-byte chunks costs a handful of Python
operations instead of two hundred loop iterations. Anything else (interleaved chunk streams,
a missing extended timestamp on a continuation) falls back to the general per-chunk path, which
is the reference behaviour the fast path must match.

Timestamps are 32-bit on the wire; the reader unwraps them per chunk stream into int64
milliseconds (an absolute timestamp is taken as the nearest value to the previous one, deltas
of 2^31 or more count as negative).

Set Chunk Size and Abort change how the following bytes parse, so the reader applies them
itself; every other message, control messages included, is returned to the caller.
"""

from __future__ import annotations

import struct
from typing import Final

import numpy as np

from .errors import ProtocolError
from .limits import Limits
from .native import NATIVE

DEFAULT_CHUNK_SIZE: Final = 128

# Message type ids.
SET_CHUNK_SIZE: Final = 1
ABORT: Final = 2
ACKNOWLEDGEMENT: Final = 3
USER_CONTROL: Final = 4
WINDOW_ACK_SIZE: Final = 5
SET_PEER_BANDWIDTH: Final = 6
AUDIO: Final = 8
VIDEO: Final = 9
DATA_AMF3: Final = 15
SHARED_OBJECT_AMF3: Final = 16
COMMAND_AMF3: Final = 17
DATA_AMF0: Final = 18
SHARED_OBJECT_AMF0: Final = 19
COMMAND_AMF0: Final = 20
AGGREGATE: Final = 22

# User control event types.
UC_STREAM_BEGIN: Final = 0
UC_STREAM_EOF: Final = 1
UC_STREAM_DRY: Final = 2
UC_SET_BUFFER_LENGTH: Final = 3
UC_STREAM_IS_RECORDED: Final = 4
UC_PING_REQUEST: Final = 6
UC_PING_RESPONSE: Final = 7

# Set Peer Bandwidth limit types.
BANDWIDTH_HARD: Final = 0
BANDWIDTH_SOFT: Final = 1
BANDWIDTH_DYNAMIC: Final = 2

EXTENDED_TIMESTAMP: Final = 0xFFFFFF

# (type_id, message stream id, unwrapped timestamp in ms, payload)
Message = tuple[int, int, int, bytes]

_HDR0 = struct.Struct(">HBHBBI")  # timestamp(3) length(3) type(1) stream id(4, little-endian)
_HDR1 = struct.Struct(">HBHBB")  # timestamp delta(3) length(3) type(1)
_HDR2 = struct.Struct(">HB")  # timestamp delta(3)
_U32 = struct.Struct(">I")
_U32LE = struct.Struct("<I")
_UC = struct.Struct(">HI")

# Below this many continuation chunks, slicing memoryviews beats numpy's fixed overhead.
_NUMPY_MIN_CHUNKS: Final = 12
# Headers checked per fast-path attempt: bounds the work wasted when another chunk stream
# interleaves after every chunk (which would otherwise make a long message quadratic).
_MAX_FAST_CHUNKS: Final = 512
_BYTE: Final = tuple(bytes((i,)) for i in range(256))


def basic_header(fmt: int, csid: int) -> bytes:
    """Encode a chunk basic header (1, 2 or 3 bytes) for chunk stream ``csid``."""
    if 2 <= csid <= 63:
        return bytes((fmt << 6 | csid,))
    if 64 <= csid <= 319:
        return bytes((fmt << 6, csid - 64))
    if 320 <= csid <= 65599:
        return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))
    raise ValueError(f"chunk stream id {csid} is outside 2..65599")


class _ChunkStream:
    """State of one chunk stream id: the last header's fields and the message in progress."""

    __slots__ = (
        "csid",
        "cont",
        "hdr3",
        "started",
        "timestamp",
        "raw",
        "delta",
        "ext",
        "ext_bytes",
        "length",
        "type_id",
        "stream_id",
        "remaining",
        "parts",
    )

    def __init__(self, csid: int) -> None:
        self.csid = csid
        self.hdr3 = basic_header(3, csid)
        # Expected bytes of a type-3 continuation header: basic header + extended timestamp.
        self.cont = self.hdr3
        self.started = False
        self.timestamp = 0  # unwrapped timestamp of the current/last message
        self.raw = 0  # the same, modulo 2**32
        self.delta = 0  # timestamp field of the last type 0/1/2 header (reused by type 3)
        self.ext = False  # the last type 0/1/2 header used an extended timestamp
        self.ext_bytes = b""
        self.length = 0
        self.type_id = 0
        self.stream_id = 0
        self.remaining = 0  # bytes of the current message not yet received (0: none open)
        self.parts: list[bytes | memoryview] = []


def _count_headers(buf: bytearray, start: int, stride: int, k: int, cont: bytes) -> int:
    """How many of the ``k`` chunk headers at ``start + i*stride`` equal ``cont``, in a row."""
    stop = start + (k - 1) * stride + 1
    if len(cont) == 1:
        seg = buf[start:stop:stride]
        return len(seg) - len(seg.lstrip(cont))
    m = k
    for j, byte in enumerate(cont):
        seg = buf[start + j : stop + j : stride]
        mj = len(seg) - len(seg.lstrip(_BYTE[byte]))
        if mj < m:
            m = mj
            if not m:
                break
    return m


class PyChunkReader:
    """Bytes in, complete messages out. Raises :class:`ProtocolError` only.

    The reference implementation: :class:`ChunkReader` is the compiled one where it is built,
    and must behave exactly like this one (tests compare them on every case).
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._max_chunk_size = limits.max_chunk_size
        self._max_message = limits.max_message_size
        self._max_message_name = "max_message_size"
        self._max_streams = limits.max_chunk_streams
        self._streams: dict[int, _ChunkStream] = {}
        self._buf = bytearray()
        # Why the stream failed. A message, not the exception: its traceback holds the
        # parser's frames and with them this reader and the input buffer, a cycle that would
        # keep up to a read's worth of memory per dead connection until the cyclic GC runs.
        self._error: str | None = None

    def limit_message_size(self, size: int, name: str) -> None:
        """Bound messages (and the total of partial ones) from the next ``feed`` on.

        The connection keeps this low until the peer is trusted (a publish was accepted);
        ``name`` is the setting the error message points to.
        """
        self._max_message = size
        self._max_message_name = name

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed (an incomplete chunk)."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if self._error is not None:
            raise ProtocolError(f"chunk stream already failed: {self._error}")
        buf = self._buf
        buf += data
        out: list[Message] = []
        if not buf:
            return out
        mv = memoryview(buf)
        try:
            pos = self._parse(buf, mv, out)
            # Partial messages may still point into the buffer; copy them out before it moves.
            pending = 0
            for cs in self._streams.values():
                if cs.remaining:
                    parts = cs.parts
                    if len(parts) != 1 or type(parts[0]) is not bytes:
                        cs.parts = parts = [b"".join(parts)]
                    pending += len(parts[0])
            if pending > self._max_message:
                raise ProtocolError(
                    f"partially received messages hold {pending} bytes, more "
                    f"than {self._max_message_name}={self._max_message}"
                )
        except Exception as exc:
            # No local may name the exception past this block: the traceback holds this frame,
            # and a frame naming its own exception is a cycle keeping ``buf`` alive.
            for cs in self._streams.values():
                cs.parts = []
            self._buf = bytearray()
            if isinstance(exc, ProtocolError):
                self._error = str(exc)
                raise
            self._error = f"internal error in chunk parser: {exc!r}"
            raise ProtocolError(self._error) from exc
        mv.release()
        del buf[:pos]
        return out

    def _control(self, type_id: int, payload: bytes) -> int:
        """Apply Set Chunk Size or Abort; return the chunk size in effect afterwards."""
        if len(payload) < 4:
            name = "Set Chunk Size" if type_id == SET_CHUNK_SIZE else "Abort"
            raise ProtocolError(f"{name} message has {len(payload)} bytes, needs 4")
        (value,) = _U32.unpack_from(payload)
        if type_id == SET_CHUNK_SIZE:
            if value & 0x80000000:
                raise ProtocolError(f"Set Chunk Size 0x{value:08x} has bit 31 set")
            if value == 0:
                raise ProtocolError("Set Chunk Size of 0")
            if value > self._max_chunk_size:
                raise ProtocolError(
                    f"Set Chunk Size {value} exceeds max_chunk_size={self._max_chunk_size}"
                )
            self.chunk_size = value
        else:
            cs = self._streams.get(value)
            if cs is not None:
                cs.remaining = 0
                cs.parts = []
        return self.chunk_size

    def _new_stream(self, csid: int) -> _ChunkStream:
        if len(self._streams) >= self._max_streams:
            raise ProtocolError(
                f"peer uses more than max_chunk_streams={self._max_streams} chunk stream ids"
            )
        cs = self._streams[csid] = _ChunkStream(csid)
        return cs

    def _too_long(self, length: int, csid: int) -> ProtocolError:
        return ProtocolError(
            f"message of {length} bytes on chunk stream {csid} exceeds "
            f"{self._max_message_name}={self._max_message}"
        )

    def _parse(self, buf: bytearray, mv: memoryview, out: list[Message]) -> int:
        # Locals for speed; the loop body is the hottest code of the server.
        n = len(buf)
        pos = 0
        streams = self._streams
        csz = self.chunk_size
        max_msg = self._max_message
        unpack0 = _HDR0.unpack_from
        unpack1 = _HDR1.unpack_from
        unpack2 = _HDR2.unpack_from
        unpack32 = _U32.unpack_from
        append = out.append
        frombuffer = np.frombuffer
        uint8 = np.uint8
        while pos < n:
            b0 = buf[pos]
            csid = b0 & 0x3F
            p = pos + 1
            if csid < 2:
                if csid == 0:
                    if p >= n:
                        break
                    csid = buf[p] + 64
                    p += 1
                else:
                    if p + 1 >= n:
                        break
                    csid = buf[p] + (buf[p + 1] << 8) + 64
                    p += 2
            cs = streams.get(csid)
            if cs is None:
                cs = self._new_stream(csid)
            fmt = b0 >> 6
            if fmt == 3:
                if not cs.started:
                    raise ProtocolError(f"chunk stream {csid} starts with a type-3 header")
                rem = cs.remaining
                if rem:
                    # ---- continuation of the open message
                    if rem > csz:
                        cont = cs.cont
                        hl = len(cont)
                        stride = csz + hl
                        k_total = (rem - 1) // csz + 1
                        if pos + (k_total - 1) * stride + hl + rem - (k_total - 1) * csz <= n:
                            k = k_total
                        else:
                            k = (n - pos) // stride
                        if k > _MAX_FAST_CHUNKS:
                            k = _MAX_FAST_CHUNKS
                        if k > 1:
                            m = _count_headers(buf, pos, stride, k, cont)
                            if m:
                                parts = cs.parts
                                full = m if m < k_total else m - 1
                                if full >= _NUMPY_MIN_CHUNKS:
                                    parts.append(
                                        frombuffer(buf, uint8, full * stride, pos)
                                        .reshape(full, stride)[:, hl:]
                                        .tobytes()
                                    )
                                elif full:
                                    q = pos + hl
                                    parts.extend(
                                        [
                                            mv[x : x + csz]
                                            for x in range(q, q + full * stride, stride)
                                        ]
                                    )
                                pos += full * stride
                                rem -= full * csz
                                if m == k_total:
                                    q = pos + hl
                                    pos = q + rem
                                    parts.append(mv[q:pos])
                                    rem = 0
                                cs.remaining = rem
                                if rem:
                                    continue
                                payload = b"".join(parts)
                                cs.parts = []
                                type_id = cs.type_id
                                if type_id > 2:
                                    append((type_id, cs.stream_id, cs.timestamp, payload))
                                else:
                                    csz = self._control(type_id, payload)
                                continue
                    if cs.ext:
                        # The spec repeats the extended timestamp on type-3 chunks; some
                        # encoders do not. Take the four bytes only if they repeat it.
                        if p + 4 > n:
                            break
                        if buf[p : p + 4] == cs.ext_bytes:
                            p += 4
                    take = rem if rem < csz else csz
                    end = p + take
                    if end > n:
                        break
                    cs.parts.append(mv[p:end])
                    pos = end
                    rem -= take
                    cs.remaining = rem
                    if rem:
                        continue
                    payload = b"".join(cs.parts)
                    cs.parts = []
                    type_id = cs.type_id
                    if type_id > 2:
                        append((type_id, cs.stream_id, cs.timestamp, payload))
                    else:
                        csz = self._control(type_id, payload)
                    continue
                # ---- type 3 starting a new message: same length/type/stream, same delta
                if cs.ext:
                    if p + 4 > n:
                        break
                    if buf[p : p + 4] == cs.ext_bytes:
                        p += 4
                length = cs.length
                take = length if length < csz else csz
                end = p + take
                if end > n:
                    break
                delta = cs.delta
                cs.raw = (cs.raw + delta) & 0xFFFFFFFF
                cs.timestamp += delta if delta < 0x80000000 else delta - 0x100000000
            elif fmt == 0:
                if p + 11 > n:
                    break
                ts_hi, ts_lo, len_hi, len_lo, type_id, sid = unpack0(buf, p)
                p += 11
                ts = ts_hi << 8 | ts_lo
                length = len_hi << 8 | len_lo
                if ts == 0xFFFFFF:
                    if p + 4 > n:
                        break
                    (ts,) = unpack32(buf, p)
                    p += 4
                    ext = True
                else:
                    ext = False
                if length > max_msg:
                    raise self._too_long(length, csid)
                take = length if length < csz else csz
                end = p + take
                if end > n:
                    break
                if cs.remaining:
                    raise ProtocolError(
                        f"chunk stream {csid}: new message header while "
                        f"{cs.remaining} bytes of the previous one are missing"
                    )
                if cs.started:
                    d = (ts - cs.raw) & 0xFFFFFFFF
                    cs.timestamp += d if d < 0x80000000 else d - 0x100000000
                else:
                    cs.timestamp = ts
                    cs.started = True
                cs.raw = ts
                cs.delta = ts
                cs.length = length
                cs.type_id = type_id
                cs.stream_id = _U32LE.unpack(_U32.pack(sid))[0] if sid else 0
                if ext:
                    cs.ext = True
                    cs.ext_bytes = eb = bytes(buf[p - 4 : p])
                    cs.cont = cs.hdr3 + eb
                elif cs.ext:
                    cs.ext = False
                    cs.cont = cs.hdr3
            elif fmt == 1:
                if p + 7 > n:
                    break
                ts_hi, ts_lo, len_hi, len_lo, type_id = unpack1(buf, p)
                p += 7
                delta = ts_hi << 8 | ts_lo
                length = len_hi << 8 | len_lo
                if delta == 0xFFFFFF:
                    if p + 4 > n:
                        break
                    (delta,) = unpack32(buf, p)
                    p += 4
                    ext = True
                else:
                    ext = False
                if length > max_msg:
                    raise self._too_long(length, csid)
                take = length if length < csz else csz
                end = p + take
                if end > n:
                    break
                if cs.remaining:
                    raise ProtocolError(
                        f"chunk stream {csid}: new message header while "
                        f"{cs.remaining} bytes of the previous one are missing"
                    )
                # A type-1 header on a fresh chunk stream is tolerated: it only lacks the
                # stream id (0) and the base timestamp (0).
                cs.started = True
                cs.raw = (cs.raw + delta) & 0xFFFFFFFF
                cs.timestamp += delta if delta < 0x80000000 else delta - 0x100000000
                cs.delta = delta
                cs.length = length
                cs.type_id = type_id
                if ext:
                    cs.ext = True
                    cs.ext_bytes = eb = bytes(buf[p - 4 : p])
                    cs.cont = cs.hdr3 + eb
                elif cs.ext:
                    cs.ext = False
                    cs.cont = cs.hdr3
            else:
                if p + 3 > n:
                    break
                ts_hi, ts_lo = unpack2(buf, p)
                p += 3
                delta = ts_hi << 8 | ts_lo
                if delta == 0xFFFFFF:
                    if p + 4 > n:
                        break
                    (delta,) = unpack32(buf, p)
                    p += 4
                    ext = True
                else:
                    ext = False
                if not cs.started:
                    raise ProtocolError(f"chunk stream {csid} starts with a type-2 header")
                length = cs.length
                take = length if length < csz else csz
                end = p + take
                if end > n:
                    break
                if cs.remaining:
                    raise ProtocolError(
                        f"chunk stream {csid}: new message header while "
                        f"{cs.remaining} bytes of the previous one are missing"
                    )
                cs.raw = (cs.raw + delta) & 0xFFFFFFFF
                cs.timestamp += delta if delta < 0x80000000 else delta - 0x100000000
                cs.delta = delta
                if ext:
                    cs.ext = True
                    cs.ext_bytes = eb = bytes(buf[p - 4 : p])
                    cs.cont = cs.hdr3 + eb
                elif cs.ext:
                    cs.ext = False
                    cs.cont = cs.hdr3
            # ---- first chunk of a new message (header already committed above)
            pos = end
            if take == length:
                payload = mv[p:end].tobytes()
                type_id = cs.type_id
                if type_id > 2:
                    append((type_id, cs.stream_id, cs.timestamp, payload))
                else:
                    csz = self._control(type_id, payload)
            else:
                cs.parts = [mv[p:end]]
                cs.remaining = length - take
        return pos


if NATIVE is not None:

    class CChunkReader(NATIVE.Reader):  # type: ignore[name-defined,misc]
        """The compiled reader (``_chunks.c``) with the reference's constructor."""

        __slots__ = ()

        def __init__(self, limits: Limits = Limits()) -> None:
            super().__init__(
                limits.max_chunk_size,
                limits.max_message_size,
                limits.max_chunk_streams,
                ProtocolError,
            )

    # What the connections use: the compiled reader where it is built, else the reference.
    # Not a subclass of the reference but the same interface (the tests hold it to that).
    ChunkReader: type[PyChunkReader] = CChunkReader
else:
    CChunkReader = None  # type: ignore[assignment,misc]
    ChunkReader = PyChunkReader


def parse_user_control(payload: bytes) -> tuple[int, int]:
    """(event type, first 32-bit argument or 0) of a User Control message."""
    if len(payload) < 2:
        raise ProtocolError(f"User Control message has {len(payload)} bytes, needs at least 2")
    if len(payload) < 6:
        return (payload[0] << 8) | payload[1], 0
    event, value = _UC.unpack_from(payload)
    return event, value


def parse_u32(payload: bytes, what: str) -> int:
    """The 32-bit value of an Acknowledgement / Window Ack Size / Set Peer Bandwidth message."""
    if len(payload) < 4:
        raise ProtocolError(f"{what} message has {len(payload)} bytes, needs 4")
    return int(_U32.unpack_from(payload)[0])


# ---------------------------------------------------------------------------------------------
# Writing


def user_control(event: int, value: int) -> bytes:
    return _UC.pack(event, value & 0xFFFFFFFF)


def u32(value: int) -> bytes:
    return _U32.pack(value & 0xFFFFFFFF)


class ChunkWriter:
    """Splits messages into chunks of ``chunk_size``.

    By default every message starts with a type-0 header (always correct, and what we send is
    small). With ``compress_headers`` the writer picks type 1/2/3 headers for messages that
    repeat the previous one's stream/length/type/delta, as encoders do; tests and benchmarks use
    that to produce realistic input.
    """

    def __init__(
        self, chunk_size: int = DEFAULT_CHUNK_SIZE, *, compress_headers: bool = False
    ) -> None:
        if not 1 <= chunk_size <= 0x7FFFFFFF:
            raise ValueError(f"chunk size {chunk_size} outside 1..2147483647")
        self.chunk_size = chunk_size
        self._compress = compress_headers
        # csid -> (stream_id, length, type_id, timestamp, timestamp field, extended)
        self._last: dict[int, tuple[int, int, int, int, int, bool]] = {}

    def write(
        self,
        csid: int,
        type_id: int,
        stream_id: int,
        timestamp: int,
        payload: bytes | bytearray | memoryview,
    ) -> bytes:
        length = len(payload)
        if length > 0xFFFFFF:
            raise ValueError(f"message of {length} bytes does not fit the 24-bit length field")
        fmt = 0
        field = timestamp & 0xFFFFFFFF
        prev = self._last.get(csid)
        if self._compress and prev is not None:
            p_sid, p_len, p_type, p_ts, p_field, p_ext = prev
            delta = timestamp - p_ts
            if p_sid == stream_id and 0 <= delta <= 0xFFFFFFFF:
                field = delta
                if p_len != length or p_type != type_id:
                    fmt = 1
                elif delta != p_field:
                    fmt = 2
                else:
                    fmt = 3
        if fmt == 3:
            assert prev is not None
            ext = prev[5]
            self._last[csid] = prev[:3] + (timestamp,) + prev[4:]
        else:
            ext = field >= EXTENDED_TIMESTAMP
            self._last[csid] = (stream_id, length, type_id, timestamp, field, ext)
        ts24 = EXTENDED_TIMESTAMP if ext else field
        head = [basic_header(fmt, csid)]
        if fmt == 0:
            head.append(
                struct.pack(">I", ts24)[1:]
                + struct.pack(">I", length)[1:]
                + bytes((type_id,))
                + _U32LE.pack(stream_id & 0xFFFFFFFF)
            )
        elif fmt == 1:
            head.append(
                struct.pack(">I", ts24)[1:] + struct.pack(">I", length)[1:] + bytes((type_id,))
            )
        elif fmt == 2:
            head.append(struct.pack(">I", ts24)[1:])
        ext_bytes = _U32.pack(field) if ext else b""
        head.append(ext_bytes)
        cs = self.chunk_size
        view = memoryview(payload)
        pieces: list[bytes | memoryview] = [b"".join(head), view[:cs]]
        cont = basic_header(3, csid) + ext_bytes
        for start in range(cs, length, cs):
            pieces.append(cont)
            pieces.append(view[start : start + cs])
        return b"".join(pieces)

    def write_control(self, type_id: int, payload: bytes) -> bytes:
        """A protocol control message: chunk stream 2, message stream 0, timestamp 0."""
        return self.write(2, type_id, 0, 0, payload)
