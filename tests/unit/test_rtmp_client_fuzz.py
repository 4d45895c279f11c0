"""The client role's wire format and its robustness, property-based.

- The chunk writer's output, for any sequence of messages and chunk size, parses back to the
  same messages with our reader and with the independent test client's reader (which takes a
  type-3 header after a type-0 one the other way: the writer must never depend on that).
- Whatever a server sends -- garbage, truncations and mutations of a real session's replies,
  at any point of the setup or while publishing -- only ProtocolError escapes the client, and
  never one that wraps an unexpected exception ("internal error").
"""

from __future__ import annotations

from functools import cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediaserver.rtmp import (
    ChunkReader,
    ClientConnection,
    ConnectRequested,
    Limits,
    MessageChunker,
    ProtocolError,
    PublishRequested,
    PublishTarget,
    ServerConnection,
)
from tests.rtmp_client import ClientChunkReader, length_prefixed

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
KEY = "fuzz-key"
TARGET = PublishTarget.parse(f"rtmp://127.0.0.1/live/{KEY}")
SMALL = Limits(max_message_size=64 * 1024, max_chunk_streams=8, max_amf_depth=8)


def _rng(n: int) -> bytes:
    return bytes(n)  # deterministic handshakes, so recordings replay


# ---------------------------------------------------------------------------------------------
# The writer against two readers

message = st.tuples(
    st.sampled_from([2, 3, 4, 5, 6, 63, 64, 319, 320, 1000]),  # 1-, 2- and 3-byte basic headers
    st.sampled_from([8, 9, 18, 20]),
    st.sampled_from([0, 1, 7]),
    st.integers(0, 0x7FFFFFFF),
    st.binary(max_size=24),
    st.integers(0, 3000),
)


@FUZZ
@given(
    st.lists(message, min_size=1, max_size=30),
    st.sampled_from([128, 129, 500, 4096]),
    st.booleans(),
)
def test_writer_output_parses_back(messages: list, chunk_size: int, monotonic: bool) -> None:
    writer = MessageChunker(chunk_size)
    ours = ChunkReader(Limits())
    ours.chunk_size = chunk_size
    theirs = ClientChunkReader()
    theirs.chunk_size = chunk_size
    expected = []
    wire = bytearray()
    clock = 0
    for csid, type_id, stream_id, timestamp, head, size in messages:
        if monotonic:
            clock += timestamp % 5000  # realistic deltas, with repeats
            timestamp = clock
        body = bytes(range(256)) * (size // 256) + bytes(size % 256)
        wire += writer.message(csid, type_id, stream_id, timestamp, head, body)
        expected.append((type_id, stream_id, timestamp, head + body))
    assert ours.feed(bytes(wire)) == expected
    got = [(r.type_id, r.stream_id, r.timestamp, r.payload) for r in theirs.feed(bytes(wire))]
    assert got == expected


def test_writer_repeats_the_extended_timestamp_on_continuations() -> None:
    writer = MessageChunker(128)
    wire = writer.message(6, 9, 1, 0x1000000, b"", bytes(300))
    ext = (0x1000000).to_bytes(4, "big")
    # type-0 header with 0xFFFFFF, then each type-3 continuation repeats the 4 bytes.
    assert wire[1:4] == b"\xff\xff\xff" and wire[12:16] == ext
    assert wire[16 + 128 : 16 + 128 + 5] == bytes((0xC6,)) + ext


# ---------------------------------------------------------------------------------------------
# Fuzzed servers


def check(exc: ProtocolError) -> None:
    assert "internal error" not in str(exc), str(exc)


def new_client() -> ClientConnection:
    return ClientConnection(TARGET, SMALL, random_bytes=_rng)


@cache
def recorded() -> tuple[bytes, bytes]:
    """(S0+S1+S2, every later reply) of a real session with our server: connect result,
    window and bandwidth, chunk size, onFCPublish, createStream result, publish start, pings."""
    client = new_client()
    server = ServerConnection(Limits(window_ack_size=500, out_chunk_size=128))
    server._handshake._random_bytes = _rng
    replies = bytearray()
    hello = b""
    for step in range(20):
        events = server.receive_data(client.data_to_send(), step)
        for event in events:
            if isinstance(event, ConnectRequested):
                events += server.accept_connect()
            elif isinstance(event, PublishRequested):
                server.accept_publish(event.stream_id)
        if step == 3:
            server.send_ping(3.0)
        out = server.data_to_send()
        if not hello:
            hello = out
        else:
            replies += out
        client.receive_data(out, step)
    assert client.publishing
    return hello, bytes(replies)


def drive(pieces: list[bytes]) -> ClientConnection:
    client = new_client()
    try:
        for piece in pieces:
            client.receive_data(piece)
            client.data_to_send()
            if client.publishing:
                client.send_video("avc1", 0, 0, True, length_prefixed(b"\x65\x88"))
            client.handle_timer(1.0)
    except ProtocolError as exc:
        check(exc)
    return client


def cuts(data: bytes, points: list[int]) -> list[bytes]:
    bounds = sorted({0, len(data), *(p % (len(data) + 1) for p in points)})
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@FUZZ
@given(st.binary(max_size=4000))
def test_garbage_as_the_handshake(data: bytes) -> None:
    drive([bytes((3,)) + data])


@FUZZ
@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=5))
def test_garbage_after_the_handshake(data: bytes, points: list[int]) -> None:
    hello, _ = recorded()
    drive([hello, *cuts(data, points)])


@FUZZ
@given(
    st.lists(st.tuples(st.integers(0, 100_000), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 100_000),
    st.lists(st.integers(0, 100_000), max_size=4),
)
def test_mutated_replies(flips: list[tuple[int, int]], cut: int, points: list[int]) -> None:
    hello, replies = recorded()
    data = bytearray(replies)
    for pos, value in flips:
        data[pos % len(data)] = value
    data = data[: max(1, cut % (len(data) + 1))]
    drive([hello, *cuts(bytes(data), points)])


@FUZZ
@given(st.binary(min_size=1, max_size=600), st.integers(0, 100_000))
def test_garbage_spliced_into_replies(garbage: bytes, at: int) -> None:
    hello, replies = recorded()
    at %= len(replies) + 1
    drive([hello, replies[:at], garbage, replies[at:]])


def test_recorded_session_reaches_publishing_one_byte_at_a_time() -> None:
    hello, replies = recorded()
    data = hello + replies
    client = drive([data[i : i + 1] for i in range(len(data))])
    assert client.publishing
    whole = drive([hello, replies])
    assert whole.publishing and whole.bytes_received == client.bytes_received
