"""The compiled chunk reader against the pure-Python reference, on any input cut any way.

Three parts: the readers alone; the chunkers (what a relay writes), byte for byte; and whole
connections, where the compiled reader also makes the
common media events itself (its media lane) and must leave the connection doing exactly what
the reference path does, commands that start and end publishes between frames included.

The server parses with ``_chunks.c``; ``PyChunkReader`` is the readable specification it
must match. Both get the same bytes in the same pieces, and after every piece they must agree
on the messages, the error (its text too, since it is what the log says about a publisher),
what stays buffered and the chunk size in effect. Inputs are chunk streams built to reach deep
states (interleaved chunk streams, every header type and basic-header form, extended
timestamps repeated or not, Set Chunk Size and Abort mid-message, limits hit), then mutated;
plus plain random bytes and a recorded publish session.
"""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaserver.rtmp import (
    ConnectRequested,
    ProtocolError,
    PublishRequested,
    ServerConnection,
    connection,
)
from mediaserver.rtmp.chunk import CChunkReader, PyChunkReader
from mediaserver.rtmp.chunk_out import MessageChunker, PyMessageChunker
from mediaserver.rtmp.limits import Limits
from tests.rtmp_client import (
    AVCC,
    RtmpTestClient,
    aac_raw,
    avc_nalus,
    avc_sequence_header,
    ex_video,
    publish_session,
)

DIFF = settings(
    max_examples=600,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Chunk streams for the generated messages; 2 carries the protocol control messages.
CSIDS = (3, 4, 5, 6, 9, 63, 64, 65, 200, 319, 320, 1000, 65599)


def basic(fmt: int, csid: int, rng: random.Random) -> bytes:
    """A basic header, now and then in the 3-byte form where the 2-byte one would do."""
    if csid <= 63:
        return bytes((fmt << 6 | csid,))
    if csid <= 319 and rng.random() < 0.8:
        return bytes((fmt << 6, csid - 64))
    return bytes((fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8))


def u24(v: int) -> bytes:
    return struct.pack(">I", v)[1:]


def control(type_id: int, value: int, csz: int, rng: random.Random) -> bytes:
    """Set Chunk Size (1) or Abort (2) on chunk stream 2, chunked at ``csz`` bytes."""
    payload = struct.pack(">I", value)
    out = basic(0, 2, rng) + u24(0) + u24(4) + bytes((type_id,)) + bytes(4) + payload[:csz]
    for i in range(csz, 4, csz):
        out += basic(3, 2, rng) + payload[i : i + csz]
    return out


def build_stream(rng: random.Random, limits: Limits) -> bytes:
    """A chunk stream that is mostly valid: a rare wrong step (the ``odd`` branches) and the
    mutations afterwards make the broken ones."""
    out = bytearray()
    csz = 128
    started: set[int] = set()
    open_msgs: dict[int, tuple[int, bytes]] = {}  # csid -> (bytes left, extended timestamp)
    lengths: dict[int, int] = {}  # csid -> message length of its last header
    exts: dict[int, bytes] = {}  # csid -> extended timestamp of its last type 0/1/2 header
    csids = rng.sample(CSIDS, rng.randint(1, min(5, limits.max_chunk_streams - 1)))
    garbage_at = rng.randrange(800)
    big = min(limits.max_message_size, 3 * csz + 3)

    def odd() -> bool:
        return rng.random() < 0.02

    for step in range(rng.randint(1, 80)):
        action = rng.random()
        csid = rng.choice(csids)
        if action < 0.5 and open_msgs:
            # continue an open message with a type-3 chunk
            csid = rng.choice(list(open_msgs))
            left, ext = open_msgs[csid]
            take = min(left, csz)
            out += basic(3, csid, rng)
            if ext and rng.random() < 0.8:
                out += ext
            out += rng.randbytes(take)
            if left - take:
                open_msgs[csid] = (left - take, ext)
            else:
                del open_msgs[csid]
        elif action < 0.56:
            # Set Chunk Size, as one whole message on chunk stream 2
            size = rng.choice((128, 129, 300, 1000, 4096, rng.randint(1, limits.max_chunk_size)))
            size = min(size, limits.max_chunk_size)
            if odd():
                size = rng.choice((0, 1 << 31, limits.max_chunk_size + 1))
            out += control(1, size, csz, rng)
            if 0 < size <= limits.max_chunk_size:
                csz = size
        elif action < 0.6 and open_msgs:
            target = rng.choice(list(open_msgs))
            out += control(2, target, csz, rng)
            del open_msgs[target]
        elif step == garbage_at:
            out += rng.randbytes(rng.randint(1, 20))
        else:
            # a new message (header type 1, 2 or 3 only on a started chunk stream)
            fmt = rng.choices((0, 1, 2, 3), weights=(3, 3, 2, 3))[0] if csid in started else 0
            if csid in open_msgs and not odd():
                continue
            if odd():
                fmt = rng.choice((1, 2, 3))
            stamp = rng.choice(
                (0, 1, 33, 0xFFFFFE, 0xFFFFFF, 1 << 31, 0xFFFFFFFF, rng.randrange(1 << 32))
            )
            field = min(stamp, 0xFFFFFF)
            length = rng.choice((0, 1, 5, 127, 128, 129, 256, 1000, rng.randint(0, big)))
            if length > limits.max_message_size and not odd():
                length = limits.max_message_size
            type_id = rng.choice((8, 9, 9, 9, 18, 20, 22, 3, 4, 5, 6))
            if odd():
                type_id = 0
            if fmt >= 2:
                length = lengths.get(csid, 0)  # inherited from the chunk stream's last header
            if fmt == 3:
                ext_bytes = exts.get(csid, b"")  # so is the extended timestamp
            else:
                ext_bytes = struct.pack(">I", stamp) if field == 0xFFFFFF else b""
                exts[csid] = ext_bytes
            lengths[csid] = length
            out += basic(fmt, csid, rng)
            if fmt == 0:
                sid = rng.choice((0, 1, 7, 1 << 24))
                out += u24(field) + u24(length) + bytes((type_id,)) + struct.pack("<I", sid)
            elif fmt == 1:
                out += u24(field) + u24(length) + bytes((type_id,))
            elif fmt == 2:
                out += u24(field)
            # On a type-3 header the repeat of the extended timestamp is optional.
            out += ext_bytes if fmt != 3 or rng.random() < 0.5 else b""
            take = min(length, csz)
            out += rng.randbytes(take)
            started.add(csid)
            if length > take:
                open_msgs[csid] = (length - take, ext_bytes)
            else:
                open_msgs.pop(csid, None)
    return bytes(out)


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((0, 0, 0, 0, 0, 1, 2, 5))):
        if not buf:
            break
        i = rng.randrange(len(buf))
        kind = rng.random()
        if kind < 0.5:
            buf[i] = rng.randrange(256)
        elif kind < 0.75:
            del buf[i : i + rng.randint(1, 8)]
        else:
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
    return bytes(buf)


def pieces(data: bytes, rng: random.Random) -> list[bytes]:
    out = []
    pos = 0
    while pos < len(data):
        n = rng.choice((1, 1, 2, 3, 7, 17, 64, 129, 500, 4096, 70000))
        out.append(data[pos : pos + n])
        pos += n
    return out


def limits_for(rng: random.Random) -> Limits:
    return rng.choice(
        (
            Limits(),
            Limits(max_message_size=1000, max_chunk_streams=3, max_chunk_size=8192),
            Limits(max_message_size=300, max_chunk_streams=2, max_chunk_size=128),
            Limits(max_message_size=64 * 1024, max_chunk_streams=8, max_chunk_size=4096),
        )
    )


def outcome(reader: object, piece: bytes) -> tuple:
    try:
        result: object = reader.feed(piece)  # type: ignore[attr-defined]
    except ProtocolError as exc:
        result = ("error", str(exc))
    return (result, reader.buffered, reader.chunk_size)  # type: ignore[attr-defined]


def agree(feeds: list[bytes], limits: Limits, relax_at: int = -1) -> None:
    ours = CChunkReader(limits)  # type: ignore[misc]
    ref = PyChunkReader(limits)
    for i, piece in enumerate(feeds):
        if i == relax_at:
            ours.limit_message_size(limits.max_message_size * 2, "bigger")
            ref.limit_message_size(limits.max_message_size * 2, "bigger")
        got, want = outcome(ours, piece), outcome(ref, piece)
        assert got == want, f"piece {i} of {len(feeds)}"
        if isinstance(want[0], tuple):
            # failed for good, with the same words
            assert outcome(ours, b"\x03") == outcome(ref, b"\x03")
            return


@DIFF
@given(st.randoms(use_true_random=False))
def test_built_streams_agree(rng: random.Random) -> None:
    limits = limits_for(rng)
    data = mutate(build_stream(rng, limits), rng)
    feeds = pieces(data, rng)
    agree(feeds, limits, relax_at=rng.choice((-1, -1, rng.randrange(len(feeds) + 1))))


@DIFF
@given(st.binary(max_size=600), st.randoms(use_true_random=False))
def test_random_bytes_agree(data: bytes, rng: random.Random) -> None:
    agree(pieces(data, rng), limits_for(rng))


@pytest.mark.parametrize("chunk_size", [128, 4096])
def test_a_recorded_publish_agrees_cut_every_way(chunk_size: int) -> None:
    _, segments = publish_session(chunk_size=chunk_size, seconds=0.5, video_bytes=9000)
    data = b"".join(segments[2:])  # past the handshake (C0 C1, C2)
    for seed in range(20):
        agree(pieces(data, random.Random(seed)), Limits())
    agree([data], Limits())


# ---------------------------------------------------------------------------------------------
# Whole connections: the compiled reader's media lane against the reference path


def run_connection(reference: bool, feeds: list[bytes]) -> list:
    """Everything a connection does with ``feeds`` (C0 C1, C2, then the rest; a permissive
    owner accepting connect and publish): its events, its replies and its error."""
    saved = connection.ChunkReader
    if reference:
        connection.ChunkReader = PyChunkReader  # type: ignore[misc]
    try:
        conn = ServerConnection(Limits())
    finally:
        connection.ChunkReader = saved  # type: ignore[misc]
    trace: list = []
    for i, piece in enumerate(feeds):
        try:
            new = conn.receive_data(piece)
            while new:
                trace += new
                more = []
                for event in new:
                    if isinstance(event, ConnectRequested) and not conn.closed:
                        more += conn.accept_connect()
                    elif isinstance(event, PublishRequested):
                        conn.accept_publish(event.stream_id)
                new = more
        except ProtocolError as exc:
            trace.append(("error", str(exc)))
            break
        replies = conn.data_to_send()
        if i >= 2:  # the handshake's replies (to C0 C1 and C2) are random
            trace.append(replies)
    return trace


def connections_agree(feeds: list[bytes]) -> None:
    assert run_connection(False, feeds) == run_connection(True, feeds)


def lane_session(rng: random.Random) -> list[bytes]:
    """A publish whose media mixes what the lane takes (H.264 and AAC frames) with what it
    leaves to Python (configs, enhanced and legacy HEVC video, other audio, empty and short
    bodies, a second stream id, data messages), and commands that end or restart the publish
    between frames of the same read."""
    client = RtmpTestClient(rng.choice((128, 4096, 60000)))
    out = [
        client.c0c1(),
        client.c2(None),
        client.set_chunk_size(),
        client.connect(),
        client.create_stream(),
        client.publish(1, "key"),
        client.video(1, 0, avc_sequence_header(AVCC)),
    ]
    ts = 0
    bodies = [
        lambda: avc_nalus(rng.randbytes(rng.randint(1, 9000)), keyframe=rng.random() < 0.2),
        lambda: avc_nalus(b"", keyframe=True),
        lambda: avc_nalus(rng.randbytes(50), keyframe=False, cto=rng.choice((0, 33, -33, -1))),
        lambda: bytes((0x1C, 1, 0, 0, 40)) + rng.randbytes(100),  # legacy HEVC (codec id 12)
        lambda: bytes((rng.choice((0x37, 0x47)), 1, 0, 0, 0)) + b"x",  # disposable, generated key
        lambda: bytes((0x57, 1, 0, 0, 0)) + b"x",  # command frame
        lambda: bytes((0x22, 1, 0, 0, 0)) + b"x",  # H.263: ignored, reported once
        lambda: bytes((0x17, 2, 0, 0, 0)),  # end of sequence
        lambda: rng.randbytes(rng.randint(0, 6)),
        lambda: ex_video(b"hvc1", 1, rng.randbytes(30), cto=5),
    ]
    for _ in range(rng.randint(5, 40)):
        ts += rng.choice((0, 1, 23, 33))
        kind = rng.random()
        stream = 1 if rng.random() < 0.9 else 2
        if kind < 0.45:
            out.append(client.video(stream, ts, rng.choice(bodies)()))
        elif kind < 0.8:
            body = rng.choice(
                (aac_raw(rng.randbytes(rng.randint(0, 400))), b"\xaf\x01", b"\xaf", b"\x2f\x01a")
            )
            out.append(client.audio(stream, ts, body))
        elif kind < 0.85:
            out.append(client.fc_unpublish("key"))
        elif kind < 0.9:
            out.append(client.publish(1, "key"))
        elif kind < 0.95:
            out.append(client.set_data_frame(1, {"width": 640.0}))
        else:
            out.append(client.delete_stream(1))
    return out


@DIFF
@given(st.randoms(use_true_random=False))
def test_connections_agree_on_mixed_media_and_commands(rng: random.Random) -> None:
    segments = lane_session(rng)
    body = mutate(b"".join(segments[2:]), rng) if rng.random() < 0.3 else b"".join(segments[2:])
    connections_agree(segments[:2] + pieces(body, rng))
    connections_agree(segments[:2] + [body])


@pytest.mark.parametrize("chunk_size", [128, 4096])
def test_connections_agree_on_a_recorded_publish(chunk_size: int) -> None:
    _, segments = publish_session(chunk_size=chunk_size, seconds=0.5, video_bytes=9000)
    body = b"".join(segments[2:])
    connections_agree(segments)
    for seed in range(10):
        connections_agree(segments[:2] + pieces(body, random.Random(seed)))


# ---------------------------------------------------------------------------------------------
# The chunker: the compiled one against chunk_out.py's, byte for byte

send = st.tuples(
    st.sampled_from([2, 3, 4, 5, 6, 63, 64, 319, 320, 65599]),  # 1-, 2- and 3-byte headers
    st.sampled_from([1, 8, 9, 18, 20]),
    st.sampled_from([0, 1, 7, 0xFFFFFFFF]),
    st.one_of(
        st.integers(0, 5000),  # small steps: type 2 and 3 headers
        st.sampled_from([0xFFFFFE, 0xFFFFFF, 0x1000000, 0xFFFFFFFF, 1 << 32, (1 << 40) + 7]),
        st.integers(-(1 << 40), 1 << 53),
    ),
    st.binary(max_size=8),
    st.integers(0, 9000),
    st.sampled_from([None, 128, 129, 500, 4096, 60000]),  # a new chunk size before it, or not
)


@DIFF
@given(st.lists(send, min_size=1, max_size=40), st.booleans())
def test_the_chunkers_write_the_same_bytes(calls: list, steps: bool) -> None:
    ours, ref = MessageChunker(128), PyMessageChunker(128)
    clock = 0
    for csid, type_id, stream_id, stamp, head, size, chunk_size in calls:
        if chunk_size is not None:
            ours.chunk_size = ref.chunk_size = chunk_size
        if steps:  # realistic: the same few deltas again and again
            clock += stamp % 67
            stamp = clock
        body = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert ours.message(csid, type_id, stream_id, stamp, head, body) == ref.message(
            csid, type_id, stream_id, stamp, head, body
        )
        assert ours.message(csid, type_id, stream_id, stamp, head) == ref.message(
            csid, type_id, stream_id, stamp, head
        )


def test_the_compiled_chunker_is_the_one_used_and_refuses_what_it_cannot_write() -> None:
    assert MessageChunker is not PyMessageChunker
    chunker = MessageChunker(128)
    with pytest.raises(ValueError, match="2..65599"):
        chunker.message(1, 9, 1, 0, b"")
    with pytest.raises(ValueError, match="24-bit"):
        chunker.message(3, 9, 1, 0, b"", bytes(1 << 24))
    with pytest.raises(ValueError, match="first chunk"):
        chunker.message(3, 9, 1, 0, bytes(200), bytes(100))
    with pytest.raises(ValueError, match="chunk size"):
        chunker.chunk_size = 0
    assert chunker.message(3, 9, 1, 0, memoryview(b"ab"), memoryview(b"cd"))[-4:] == b"abcd"
