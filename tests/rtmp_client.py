"""A small sans-I/O RTMP *client* for tests and benchmarks.

Deliberately independent of ``mediaserver.rtmp``: it has its own handshake, chunk writer, chunk
reader and AMF0 codec, written from the specs, so a bug in the server's codec cannot hide behind
the same bug here. It produces what OBS/ffmpeg put on the wire for a publish (digest handshake,
connect, releaseStream, FCPublish, createStream, publish, @setDataFrame, media with compressed
chunk headers, FCUnpublish, deleteStream) and decodes what the server answers.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct
from dataclasses import dataclass
from typing import Any

HANDSHAKE_SIZE = 1536
_KEY_TAIL = bytes.fromhex("f0eec24a8068bee82e00d0d1029e7e576eec5d2d29806fab93b8e636cfeb31ae")
FP_KEY = b"Genuine Adobe Flash Player 001" + _KEY_TAIL
FMS_KEY = b"Genuine Adobe Flash Media Server 001" + _KEY_TAIL

CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_AUDIO = 4
CSID_DATA = 5
CSID_VIDEO = 6


# ---------------------------------------------------------------------------------------------
# AMF0 (only what a client needs)


class Ecma(dict):  # type: ignore[type-arg]
    """Encode this dict as an ECMA array (0x08), as encoders do for onMetaData."""


class Undefined:
    def __repr__(self) -> str:
        return "Undefined"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Undefined)

    def __hash__(self) -> int:
        return 0


def amf_encode(*values: Any) -> bytes:
    out = bytearray()
    for value in values:
        _amf_encode(value, out)
    return bytes(out)


def _amf_key(key: str, out: bytearray) -> None:
    raw = key.encode()
    out += struct.pack(">H", len(raw)) + raw


def _amf_encode(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0x05)
    elif isinstance(value, Undefined):
        out.append(0x06)
    elif isinstance(value, bool):
        out += bytes((0x01, int(value)))
    elif isinstance(value, (int, float)):
        out.append(0x00)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode()
        if len(raw) > 0xFFFF:
            out.append(0x0C)
            out += struct.pack(">I", len(raw)) + raw
        else:
            out.append(0x02)
            out += struct.pack(">H", len(raw)) + raw
    elif isinstance(value, dict):
        if isinstance(value, Ecma):
            out.append(0x08)
            out += struct.pack(">I", len(value))
        else:
            out.append(0x03)
        for key, item in value.items():
            _amf_key(key, out)
            _amf_encode(item, out)
        out += b"\x00\x00\x09"
    elif isinstance(value, (list, tuple)):
        out.append(0x0A)
        out += struct.pack(">I", len(value))
        for item in value:
            _amf_encode(item, out)
    else:
        raise TypeError(type(value))


def amf_decode_all(data: bytes) -> list[Any]:
    values = []
    pos = 0
    while pos < len(data):
        value, pos = _amf_decode(data, pos)
        values.append(value)
    return values


def _amf_decode(data: bytes, pos: int) -> tuple[Any, int]:
    marker = data[pos]
    pos += 1
    if marker == 0x00:
        return struct.unpack_from(">d", data, pos)[0], pos + 8
    if marker == 0x01:
        return data[pos] != 0, pos + 1
    if marker == 0x02:
        (n,) = struct.unpack_from(">H", data, pos)
        return data[pos + 2 : pos + 2 + n].decode(), pos + 2 + n
    if marker == 0x0C:
        (n,) = struct.unpack_from(">I", data, pos)
        return data[pos + 4 : pos + 4 + n].decode(), pos + 4 + n
    if marker == 0x05:
        return None, pos
    if marker == 0x06:
        return Undefined(), pos
    if marker in (0x03, 0x08):
        if marker == 0x08:
            pos += 4
        obj: dict[str, Any] = Ecma() if marker == 0x08 else {}
        while True:
            (n,) = struct.unpack_from(">H", data, pos)
            key = data[pos + 2 : pos + 2 + n].decode()
            pos += 2 + n
            if not key and data[pos] == 0x09:
                return obj, pos + 1
            obj[key], pos = _amf_decode(data, pos)
    if marker == 0x0A:
        (n,) = struct.unpack_from(">I", data, pos)
        pos += 4
        items = []
        for _ in range(n):
            item, pos = _amf_decode(data, pos)
            items.append(item)
        return items, pos
    raise ValueError(f"test client cannot decode AMF0 marker {marker:#x}")


# ---------------------------------------------------------------------------------------------
# Handshake


def _digest_offset(block: bytes, base: int) -> int:
    return sum(block[base : base + 4]) % 728 + base + 4


def _digest(block: bytes, offset: int, key: bytes) -> bytes:
    return hmac.new(key, block[:offset] + block[offset + 32 :], hashlib.sha256).digest()


def make_c1(*, digest: bool, schema_base: int = 8, rng: random.Random | None = None) -> bytes:
    """A C1 block: plain (bytes 4-7 zero) or with a Flash Player digest at ``schema_base``."""
    rng = rng or random.Random(1)
    if not digest:
        return b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00" + rng.randbytes(HANDSHAKE_SIZE - 8)
    c1 = bytearray(b"\x00\x00\x00\x00" + bytes((9, 0, 124, 2)) + rng.randbytes(HANDSHAKE_SIZE - 8))
    offset = _digest_offset(c1, schema_base)
    c1[offset : offset + 32] = _digest(bytes(c1), offset, FP_KEY[:30])
    return bytes(c1)


@dataclass
class ServerHello:
    """What a client learns from S0+S1+S2."""

    version: int
    s1: bytes
    s2: bytes
    s1_digest_valid: bool  # S1 carries a digest made with the 36-byte FMS key
    s2_digest_valid: bool  # S2 ends with HMAC(HMAC(FMS key, our C1 digest), S2[:1504])
    s2_echoes_c1: bool


def check_server_hello(c1: bytes, s0s1s2: bytes, schema_base: int = 8) -> ServerHello:
    """Validate the server's answer the way a digest-checking client (ffmpeg playing) does."""
    assert len(s0s1s2) == 1 + 2 * HANDSHAKE_SIZE
    s1 = s0s1s2[1 : 1 + HANDSHAKE_SIZE]
    s2 = s0s1s2[1 + HANDSHAKE_SIZE :]
    s1_ok = False
    for base in (8, 772):
        off = _digest_offset(s1, base)
        if hmac.compare_digest(s1[off : off + 32], _digest(s1, off, FMS_KEY[:36])):
            s1_ok = True
    c1_offset = _digest_offset(c1, schema_base)
    client_digest = c1[c1_offset : c1_offset + 32]
    key = hmac.new(FMS_KEY, client_digest, hashlib.sha256).digest()
    s2_ok = hmac.compare_digest(s2[-32:], hmac.new(key, s2[:-32], hashlib.sha256).digest())
    return ServerHello(s0s1s2[0], s1, s2, s1_ok, s2_ok, s2 == c1)


# ---------------------------------------------------------------------------------------------
# Chunk writer / reader


class ClientChunkWriter:
    """Chunk writer choosing header types like librtmp/ffmpeg: type 0 for a chunk stream's
    first message or a stream id change, type 1 when length/type change, type 2 when only the
    delta changes, type 3 when nothing does. Extended timestamps are repeated on type-3 chunks."""

    def __init__(self, chunk_size: int = 128, *, compress: bool = True) -> None:
        self.chunk_size = chunk_size
        self.compress = compress
        self._prev: dict[int, dict[str, Any]] = {}

    @staticmethod
    def _basic(fmt: int, csid: int) -> bytes:
        if csid < 64:
            return bytes((fmt << 6 | csid,))
        if csid < 320:
            return bytes((fmt << 6, csid - 64))
        return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))

    def write(
        self, csid: int, type_id: int, stream_id: int, timestamp: int, payload: bytes
    ) -> bytes:
        prev = self._prev.get(csid)
        fmt = 0
        field = timestamp & 0xFFFFFFFF
        if self.compress and prev and prev["sid"] == stream_id and timestamp >= prev["ts"]:
            delta = timestamp - prev["ts"]
            field = delta
            if prev["len"] != len(payload) or prev["type"] != type_id:
                fmt = 1
            elif delta != prev["field"]:
                fmt = 2
            else:
                fmt = 3
        if fmt == 3:
            assert prev is not None
            ext = prev["ext"]
            field = prev["field"]
            prev["ts"] = timestamp
        else:
            ext = field >= 0xFFFFFF
            self._prev[csid] = {
                "sid": stream_id,
                "len": len(payload),
                "type": type_id,
                "ts": timestamp,
                "field": field,
                "ext": ext,
            }
        ts24 = (0xFFFFFF if ext else field).to_bytes(3, "big")
        header = self._basic(fmt, csid)
        if fmt == 0:
            header += (
                ts24
                + len(payload).to_bytes(3, "big")
                + bytes((type_id,))
                + stream_id.to_bytes(4, "little")
            )
        elif fmt == 1:
            header += ts24 + len(payload).to_bytes(3, "big") + bytes((type_id,))
        elif fmt == 2:
            header += ts24
        ext_bytes = field.to_bytes(4, "big") if ext else b""
        out = [header + ext_bytes, payload[: self.chunk_size]]
        cont = self._basic(3, csid) + ext_bytes
        for start in range(self.chunk_size, len(payload), self.chunk_size):
            out.append(cont)
            out.append(payload[start : start + self.chunk_size])
        return b"".join(out)


@dataclass
class Reply:
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes

    @property
    def values(self) -> list[Any]:
        body = self.payload[1:] if self.type_id in (15, 17) else self.payload
        return amf_decode_all(body)


class ClientChunkReader:
    """A plain per-chunk reader for the server's output (which is small)."""

    def __init__(self) -> None:
        self.chunk_size = 128
        self._buf = b""
        self._state: dict[int, dict[str, Any]] = {}

    def feed(self, data: bytes) -> list[Reply]:
        self._buf += data
        out: list[Reply] = []
        while True:
            buf = self._buf
            if not buf:
                return out
            fmt, csid, p = buf[0] >> 6, buf[0] & 0x3F, 1
            if csid == 0:
                if len(buf) < 2:
                    return out
                csid, p = buf[1] + 64, 2
            elif csid == 1:
                if len(buf) < 3:
                    return out
                csid, p = buf[1] + (buf[2] << 8) + 64, 3
            st = self._state.setdefault(
                csid,
                {
                    "ts": 0,
                    "field": 0,
                    "len": 0,
                    "type": 0,
                    "sid": 0,
                    "ext": False,
                    "parts": [],
                    "rem": 0,
                },
            )
            hlen = {0: 11, 1: 7, 2: 3, 3: 0}[fmt]
            if len(buf) < p + hlen:
                return out
            h = buf[p : p + hlen]
            field = int.from_bytes(h[:3], "big") if fmt < 3 else st["field"]
            ext = (field == 0xFFFFFF) if fmt < 3 else st["ext"]
            q = p + hlen + (4 if ext else 0)
            if len(buf) < q:
                return out
            if fmt < 3 and ext:
                field = int.from_bytes(buf[q - 4 : q], "big")
            new = st["rem"] == 0
            length = int.from_bytes(h[3:6], "big") if fmt in (0, 1) else st["len"]
            take = min(self.chunk_size, length if new else st["rem"])
            if len(buf) < q + take:
                return out
            if fmt in (0, 1):
                st["len"], st["type"] = length, h[6]
            if fmt == 0:
                st["sid"] = int.from_bytes(h[7:11], "little")
                st["ts"] = field
            elif new:
                st["ts"] += field
            if fmt < 3:
                st["field"], st["ext"] = field, ext
            if new:
                st["rem"] = length
                st["parts"] = []
            st["parts"].append(buf[q : q + take])
            st["rem"] -= take
            self._buf = buf[q + take :]
            if st["rem"] == 0:
                payload = b"".join(st["parts"])
                if st["type"] == 1:
                    self.chunk_size = int.from_bytes(payload[:4], "big")
                out.append(Reply(st["type"], st["sid"], st["ts"], payload))


# ---------------------------------------------------------------------------------------------
# FLV tag bodies


def avc_sequence_header(avcc: bytes) -> bytes:
    return b"\x17\x00\x00\x00\x00" + avcc


def avc_nalus(data: bytes, *, keyframe: bool, cto: int = 0) -> bytes:
    return bytes((0x17 if keyframe else 0x27, 1)) + (cto & 0xFFFFFF).to_bytes(3, "big") + data


def avc_end_of_sequence() -> bytes:
    return b"\x17\x02\x00\x00\x00"


def aac_sequence_header(asc: bytes) -> bytes:
    return b"\xaf\x00" + asc


def aac_raw(data: bytes) -> bytes:
    return b"\xaf\x01" + data


def ex_video(
    fourcc: bytes,
    packet_type: int,
    payload: bytes = b"",
    *,
    keyframe: bool = True,
    cto: int | None = None,
) -> bytes:
    """An Enhanced RTMP video body (IsExHeader set)."""
    head = bytes((0x80 | (1 if keyframe else 2) << 4 | packet_type,)) + fourcc
    if cto is not None:
        head += (cto & 0xFFFFFF).to_bytes(3, "big")
    return head + payload


def length_prefixed(*nalus: bytes) -> bytes:
    return b"".join(len(n).to_bytes(4, "big") + n for n in nalus)


# A real 1280x720 High-profile avcC and a 44.1 kHz stereo AAC-LC AudioSpecificConfig.
AVCC = bytes.fromhex(
    "01640020ffe1001967640020acd9405005bb011000000300100000030320f183196001000568ebecb22c"
)
ASC = bytes.fromhex("1210")


# ---------------------------------------------------------------------------------------------
# The client


class RtmpTestClient:
    """Builds the bytes of a publishing client, step by step."""

    def __init__(
        self, chunk_size: int = 128, *, digest: bool = True, compress: bool = True, seed: int = 1
    ) -> None:
        self.rng = random.Random(seed)
        self.digest = digest
        self.writer = ClientChunkWriter(128, compress=compress)
        self.reader = ClientChunkReader()
        self._wanted_chunk_size = chunk_size
        self._tid = 0
        self.c1 = b""

    # handshake
    def c0c1(self) -> bytes:
        self.c1 = make_c1(digest=self.digest, rng=self.rng)
        return b"\x03" + self.c1

    def c2(self, s0s1s2: bytes | None = None) -> bytes:
        """C2: an echo of S1 when known, else random bytes (servers must not care)."""
        if s0s1s2 is not None and len(s0s1s2) >= 1 + HANDSHAKE_SIZE:
            return s0s1s2[1 : 1 + HANDSHAKE_SIZE]
        return self.rng.randbytes(HANDSHAKE_SIZE)

    # generic
    def next_tid(self) -> float:
        self._tid += 1
        return float(self._tid)

    def command(
        self,
        name: str,
        *args: Any,
        stream_id: int = 0,
        csid: int = CSID_COMMAND,
        tid: float | None = None,
        amf3: bool = False,
    ) -> bytes:
        body = amf_encode(name, self.next_tid() if tid is None else tid, *args)
        if amf3:
            return self.writer.write(csid, 17, stream_id, 0, b"\x00" + body)
        return self.writer.write(csid, 20, stream_id, 0, body)

    def set_chunk_size(self, size: int | None = None) -> bytes:
        size = self._wanted_chunk_size if size is None else size
        out = self.writer.write(CSID_CONTROL, 1, 0, 0, struct.pack(">I", size))
        self.writer.chunk_size = size
        return out

    # publish flow
    def connect(
        self, app: str = "live", tc_url: str = "rtmp://localhost/live", **extra: Any
    ) -> bytes:
        obj = {
            "app": app,
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": tc_url,
            "tcUrl": tc_url,
            **extra,
        }
        return self.command("connect", obj)

    def release_stream(self, name: str) -> bytes:
        return self.command("releaseStream", None, name)

    def fc_publish(self, name: str) -> bytes:
        return self.command("FCPublish", None, name)

    def create_stream(self) -> bytes:
        return self.command("createStream", None)

    def publish(self, stream_id: int, name: str, kind: str = "live") -> bytes:
        return self.command(
            "publish", None, name, kind, stream_id=stream_id, csid=CSID_DATA, tid=0.0
        )

    def set_data_frame(self, stream_id: int, metadata: dict[str, Any]) -> bytes:
        body = amf_encode("@setDataFrame", "onMetaData", Ecma(metadata))
        return self.writer.write(CSID_DATA, 18, stream_id, 0, body)

    def video(self, stream_id: int, timestamp: int, body: bytes) -> bytes:
        return self.writer.write(CSID_VIDEO, 9, stream_id, timestamp, body)

    def audio(self, stream_id: int, timestamp: int, body: bytes) -> bytes:
        return self.writer.write(CSID_AUDIO, 8, stream_id, timestamp, body)

    def fc_unpublish(self, name: str) -> bytes:
        return self.command("FCUnpublish", None, name)

    def delete_stream(self, stream_id: int) -> bytes:
        return self.command("deleteStream", None, float(stream_id))

    def replies(self, data: bytes) -> list[Reply]:
        return self.reader.feed(data)


def media_messages(
    client: RtmpTestClient,
    stream_id: int,
    *,
    seconds: float,
    video_bytes: int = 25_000,
    fps: int = 30,
    audio_bytes: int = 370,
    start_ms: int = 0,
    seed: int = 7,
) -> list[bytes]:
    """Chunked A/V messages for ``seconds`` of a 30 fps H.264 + 44.1 kHz AAC publish, in
    timestamp order, roughly ``video_bytes`` per video message (keyframes 4x every 2 s)."""
    rng = random.Random(seed)
    blob = rng.randbytes(video_bytes * 8 + 4096)
    out = []
    frames = int(seconds * fps)
    audio_dur = 1024 / 44.1
    video = [(start_ms + round(i * 1000 / fps), 9, i) for i in range(frames)]
    audio = [
        (start_ms + round(j * audio_dur), 8, j) for j in range(int(seconds * 1000 / audio_dur))
    ]
    for ts, kind, i in sorted(video + audio):
        if kind == 9:
            key = i % (2 * fps) == 0
            size = (
                video_bytes * 4 if key else rng.randint(video_bytes * 3 // 4, video_bytes * 5 // 4)
            )
            off = rng.randrange(0, 4096)
            body = avc_nalus(
                len(blob[off : off + size - 9]).to_bytes(4, "big") + blob[off : off + size - 9],
                keyframe=key,
                cto=67 if i % 3 else 0,
            )
            out.append(client.video(stream_id, ts, body))
        else:
            off = rng.randrange(0, 4096)
            out.append(client.audio(stream_id, ts, aac_raw(blob[off : off + audio_bytes - 2])))
    return out


def publish_session(
    *,
    chunk_size: int = 4096,
    key: str = "streamkey",
    seconds: float = 1.0,
    video_bytes: int = 25_000,
    digest: bool = True,
    seed: int = 1,
) -> tuple[RtmpTestClient, list[bytes]]:
    """Every byte a publishing client sends, as segments in protocol order (C0C1, C2, connect,
    ..., deleteStream), not depending on what the server answers."""
    client = RtmpTestClient(chunk_size, digest=digest, seed=seed)
    segments = [
        client.c0c1(),
        client.c2(None),
        client.set_chunk_size(),
        client.connect(),
        client.release_stream(key),
        client.fc_publish(key),
        client.create_stream(),
        client.publish(1, key),
        client.set_data_frame(
            1,
            {
                "width": 1280.0,
                "height": 720.0,
                "framerate": 30.0,
                "videocodecid": 7.0,
                "audiocodecid": 10.0,
                "encoder": "test",
            },
        ),
        client.video(1, 0, avc_sequence_header(AVCC)),
        client.audio(1, 0, aac_sequence_header(ASC)),
    ]
    segments += media_messages(client, 1, seconds=seconds, video_bytes=video_bytes)
    segments += [client.fc_unpublish(key), client.delete_stream(1)]
    return client, segments
