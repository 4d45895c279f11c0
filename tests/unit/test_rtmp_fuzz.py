"""Property-based fuzzing: whatever bytes arrive, only ProtocolError escapes.

A ProtocolError that wraps an unexpected exception says "internal error" -- that is still a bug
the fuzzer must report, so those fail too. Each layer has its own target (AMF0, media, chunk
reader) besides the whole connection fed random bytes and mutations of a recorded publish.
"""

from __future__ import annotations

import struct
from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaserver.rtmp import (
    ChunkReader,
    ChunkWriter,
    ConnectRequested,
    Limits,
    ProtocolError,
    PublishRequested,
    ServerConnection,
    amf0,
)
from mediaserver.rtmp.media import parse_audio, parse_video
from tests.rtmp_client import (
    RtmpTestClient,
    aac_raw,
    amf_encode,
    avc_nalus,
    ex_video,
    length_prefixed,
    publish_session,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
SMALL_LIMITS = Limits(
    max_message_size=64 * 1024, max_chunk_streams=8, max_chunk_size=8192, max_amf_depth=8
)


def check(exc: ProtocolError) -> None:
    assert "internal error" not in str(exc), str(exc)


def drive(conn: ServerConnection, pieces: list[bytes]) -> list:
    """Feed pieces, accepting connects and publishes like a permissive owner."""
    events: list = []
    try:
        for piece in pieces:
            new = conn.receive_data(piece)
            while new:
                events += new
                more = []
                for event in new:
                    if isinstance(event, ConnectRequested) and not conn.closed:
                        more += conn.accept_connect()
                    elif isinstance(event, PublishRequested):
                        conn.accept_publish(event.stream_id)
                new = more
            conn.data_to_send()
            if conn.closed:
                break
    except ProtocolError as exc:
        check(exc)
    return events


@cache
def recorded() -> tuple[bytes, bytes, bytes]:
    """(handshake, commands up to publish, media and the rest) of a publish session with a bit
    of everything in it. Media only counts once the publish is accepted, so the driver feeds the
    three parts in separate calls, as a client waiting for replies would send them."""
    client, segments = publish_session(chunk_size=128, seconds=0.15, video_bytes=700)
    c = client
    nalus = length_prefixed(b"\x65\x88", b"\x41\x9a\x00")
    extra = [
        c.video(1, 0x00FFFFF0, avc_nalus(nalus * 40, keyframe=False, cto=-5)),  # extended ts
        c.video(1, 0x01000010, ex_video(b"hvc1", 1, nalus, cto=3)),
        c.video(1, 0x01000030, ex_video(b"av01", 3, b"\x12\x00")),
        c.audio(1, 0x01000031, aac_raw(b"abc")),
        c.writer.write(2, 4, 0, 0, struct.pack(">HI", 6, 77)),
        c.writer.write(2, 5, 0, 0, struct.pack(">I", 3000)),
        c.command("unknownThing", None, {"a": [1.0, {"b": None}]}),
        c.set_chunk_size(300),
        c.video(1, 0x01000060, avc_nalus(nalus * 50, keyframe=True)),
    ]
    return (
        segments[0] + segments[1],
        b"".join(segments[2:8]),
        b"".join(segments[8:-2] + extra + segments[-2:]),
    )


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces = []
    last = 0
    for p in points + [len(data)]:
        pieces.append(data[last:p])
        last = p
    return pieces


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 30), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 30)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 30), st.binary(min_size=1, max_size=16)),
    st.tuples(
        st.just("duplicate"), st.integers(0, 1 << 30), st.integers(1, 600), st.integers(0, 1 << 30)
    ),
    st.tuples(st.just("delete"), st.integers(0, 1 << 30), st.integers(1, 300)),
    st.tuples(
        st.just("set"), st.integers(0, 1 << 30), st.sampled_from([0, 0xFF, 0x7F, 0x80, 0xC3, 0x03])
    ),
)


def mutate(data: bytes, ops: list) -> bytes:
    buf = bytearray(data)
    for op in ops:
        if not buf:
            break
        i = op[1] % len(buf)
        if op[0] == "flip":
            buf[i] ^= 1 << op[2]
        elif op[0] == "truncate":
            del buf[i:]
        elif op[0] == "insert":
            buf[i:i] = op[2]
        elif op[0] == "duplicate":
            chunk = bytes(buf[i : i + op[2]])
            j = op[3] % len(buf)
            buf[j:j] = chunk
        elif op[0] == "delete":
            del buf[i : i + op[2]]
        else:
            buf[i] = op[2]
    return bytes(buf)


# ---------------------------------------------------------------------------------------------
# Whole connection


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_random_bytes_raw(data, cuts):
    drive(ServerConnection(SMALL_LIMITS), split(data, cuts))


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_random_bytes_after_handshake(data, cuts):
    handshake, _, _ = recorded()
    drive(ServerConnection(SMALL_LIMITS), [handshake] + split(data, cuts))


@FUZZ
@given(st.binary(max_size=4000), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_random_bytes_while_publishing(data, cuts):
    handshake, setup, _ = recorded()
    drive(ServerConnection(SMALL_LIMITS), [handshake, setup] + split(data, cuts))


@settings(FUZZ, max_examples=1500)
@given(st.lists(mutation, min_size=1, max_size=5), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_mutated_media_while_publishing(ops, cuts):
    handshake, setup, media = recorded()
    drive(ServerConnection(SMALL_LIMITS), [handshake, setup] + split(mutate(media, ops), cuts))


@FUZZ
@given(st.lists(mutation, min_size=1, max_size=5), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_mutated_commands_after_handshake(ops, cuts):
    handshake, setup, media = recorded()
    drive(ServerConnection(SMALL_LIMITS), [handshake] + split(mutate(setup, ops), cuts) + [media])


@settings(FUZZ, max_examples=300)
@given(st.lists(mutation, min_size=1, max_size=3), st.lists(st.integers(0, 1 << 16), max_size=4))
def test_mutated_session_raw(ops, cuts):
    handshake, setup, media = recorded()
    drive(ServerConnection(SMALL_LIMITS), split(mutate(handshake + setup + media, ops), cuts))


def test_unmutated_session_is_clean():
    handshake, setup, media = recorded()
    events = drive(ServerConnection(SMALL_LIMITS), [handshake, setup, media])
    kinds = [type(e).__name__ for e in events]
    assert kinds[-1] == "PublishEnded"
    assert kinds.count("VideoFrame") >= 8 and kinds.count("AudioFrame") >= 5
    assert "MediaIgnored" not in kinds


# ---------------------------------------------------------------------------------------------
# Layers


amf_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=300))
def test_amf0_decode_random(data):
    try:
        amf0.decode_all(data, max_depth=8)
    except ProtocolError as exc:
        check(exc)


@FUZZ
@given(amf_values, st.lists(mutation, max_size=3))
def test_amf0_decode_mutated(value, ops):
    data = mutate(amf0.encode_all("cmd", 1.0, value), ops)
    try:
        amf0.decode_all(data, max_depth=8)
    except ProtocolError as exc:
        check(exc)


@FUZZ
@given(amf_values)
def test_amf0_round_trip_and_client_agrees(value):
    encoded = amf0.encode(value)
    assert amf0.decode(encoded) == (value, len(encoded))
    assert amf_encode(value) == encoded


@FUZZ
@given(st.binary(max_size=64), st.integers(-(1 << 40), 1 << 40))
def test_media_parse_random(body, ts):
    for parse in (parse_video, parse_audio):
        try:
            parse(1, ts, body)
        except ProtocolError as exc:
            check(exc)


@settings(FUZZ, max_examples=1000)
@given(
    st.sampled_from(
        [0x80, 0x81, 0x90, 0x91, 0x96, 0x97, 0x95, 0x86, 0x87, 0x17, 0x27, 0xAF, 0x1C, 0xD1, 0xD6]
    ),
    st.sampled_from([b"", b"\x00", b"\x01", b"\x10", b"\x21", b"\x13", b"\x20", b"\x02"]),
    st.sampled_from([b"", b"hvc1", b"avc1", b"av01", b"vp09", b"mp4a", b"Opus", b"zzzz"]),
    st.binary(max_size=24),
)
def test_media_parse_structured(first, modifier, fourcc, rest):
    """Headers that get past the first checks: ex-header bits, ModEx/multitrack bytes, FourCCs."""
    body = bytes([first]) + modifier + fourcc + rest
    for parse in (parse_video, parse_audio):
        try:
            parse(1, 0, body)
        except ProtocolError as exc:
            check(exc)


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 1 << 16), max_size=6))
def test_chunk_reader_random(data, cuts):
    reader = ChunkReader(SMALL_LIMITS)
    try:
        for piece in split(data, cuts):
            reader.feed(piece)
    except ProtocolError as exc:
        check(exc)


message = st.tuples(
    st.sampled_from([3, 4, 6, 70, 400]),
    st.sampled_from([8, 9, 18, 20]),
    st.integers(0, 3),
    st.integers(0, 0x02000000),
    st.integers(0, 1500),
)


@FUZZ
@given(
    st.lists(message, max_size=12),
    st.sampled_from([1, 7, 128, 129, 4096]),
    st.booleans(),
    st.lists(st.integers(0, 1 << 16), max_size=8),
)
def test_chunk_reader_round_trip(messages, chunk_size, compress, cuts):
    """Any message sequence the writer produces is read back exactly, however it is split."""
    writer = ChunkWriter(128, compress_headers=compress)
    data = writer.write(2, 1, 0, 0, struct.pack(">I", chunk_size))
    writer.chunk_size = chunk_size
    clock: dict[int, int] = {}
    expected = []
    for csid, type_id, stream_id, step, length in messages:
        ts = clock[csid] = clock.get(csid, 0) + step
        payload = bytes([length & 0xFF]) * length
        data += writer.write(csid, type_id, stream_id, ts, payload)
        expected.append((type_id, stream_id, ts, payload))
    reader = ChunkReader()
    got = []
    for piece in split(data, cuts):
        got += reader.feed(piece)
    assert got == expected


def test_client_writer_and_server_reader_agree_on_extended_type3():
    c = RtmpTestClient(128)
    data = c.set_chunk_size(64) + b"".join(
        c.video(1, 0x00FFFFFF * k, bytes(200)) for k in range(1, 4)
    )
    msgs = ChunkReader().feed(data)
    assert [m[2] for m in msgs] == [0x00FFFFFF * k for k in range(1, 4)]
