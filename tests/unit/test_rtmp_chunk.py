"""Chunk stream de-multiplexer and writer.

Inputs are built byte by byte from the spec here (not with the writer under test), and every
input is fed whole, one byte at a time and in random splits: the three must agree. Feeding whole
exercises the strided fast path, one byte at a time the general per-chunk path.

Every reader test runs on both readers: the pure-Python reference and the compiled one the
server uses (``_chunks.c``).
"""

from __future__ import annotations

import random
import struct

import pytest

from mediaserver.rtmp import chunk
from mediaserver.rtmp.chunk import (
    CChunkReader,
    ChunkReader,
    ChunkWriter,
    PyChunkReader,
    basic_header,
    parse_u32,
    parse_user_control,
    user_control,
)
from mediaserver.rtmp.errors import ProtocolError
from mediaserver.rtmp.limits import Limits

READERS = [pytest.param(PyChunkReader, id="python"), pytest.param(CChunkReader, id="compiled")]


@pytest.fixture(autouse=True, params=READERS)
def reader_class(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> type:
    """Run the module's tests with ``ChunkReader`` meaning each reader in turn."""
    monkeypatch.setitem(globals(), "ChunkReader", request.param)
    return request.param  # type: ignore[no-any-return]


def test_the_compiled_reader_is_built_and_used():
    # `make` builds it; a silent fallback to the reference would cost the server its CPU goal.
    assert CChunkReader is not None
    assert chunk.ChunkReader is CChunkReader


# ---------------------------------------------------------------------------------------------
# Hand-built chunks


def bh(fmt: int, csid: int, *, form: int | None = None) -> bytes:
    """Basic header; ``form`` forces the 1/2/3-byte encoding."""
    form = form or (1 if csid < 64 else 2 if csid < 320 else 3)
    if form == 1:
        return bytes([fmt << 6 | csid])
    if form == 2:
        return bytes([fmt << 6, csid - 64])
    return bytes([fmt << 6 | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])


def u24(v: int) -> bytes:
    return v.to_bytes(3, "big")


def h0(csid: int, ts: int, length: int, type_id: int, sid: int, **kw: int) -> bytes:
    ext = ts >= 0xFFFFFF
    return (
        bh(0, csid, **kw)
        + u24(0xFFFFFF if ext else ts)
        + u24(length)
        + bytes([type_id])
        + sid.to_bytes(4, "little")
        + (ts.to_bytes(4, "big") if ext else b"")
    )


def h1(csid: int, delta: int, length: int, type_id: int, **kw: int) -> bytes:
    ext = delta >= 0xFFFFFF
    return (
        bh(1, csid, **kw)
        + u24(0xFFFFFF if ext else delta)
        + u24(length)
        + bytes([type_id])
        + (delta.to_bytes(4, "big") if ext else b"")
    )


def h2(csid: int, delta: int) -> bytes:
    ext = delta >= 0xFFFFFF
    return (
        bh(2, csid) + u24(0xFFFFFF if ext else delta) + (delta.to_bytes(4, "big") if ext else b"")
    )


def h3(csid: int, ext_ts: int | None = None, **kw: int) -> bytes:
    return bh(3, csid, **kw) + (ext_ts.to_bytes(4, "big") if ext_ts is not None else b"")


def chunked(first_header: bytes, payload: bytes, cont: bytes, size: int = 128) -> bytes:
    """A message: its first header, then type-3 continuation headers every ``size`` bytes."""
    out = [first_header, payload[:size]]
    for i in range(size, len(payload), size):
        out += [cont, payload[i : i + size]]
    return b"".join(out)


def pay(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def set_chunk_size(n: int, csid: int = 2) -> bytes:
    return h0(csid, 0, 4, 1, 0) + struct.pack(">I", n)


def abort(target: int) -> bytes:
    return h0(2, 0, 4, 2, 0) + struct.pack(">I", target)


# ---------------------------------------------------------------------------------------------
# Feeding helpers


def feed_whole(data: bytes, limits: Limits = Limits()) -> list:
    return ChunkReader(limits).feed(data)


def feed_bytewise(data: bytes, limits: Limits = Limits()) -> list:
    reader = ChunkReader(limits)
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i : i + 1])
    return out


def feed_random(data: bytes, seed: int, limits: Limits = Limits()) -> list:
    rng = random.Random(seed)
    reader = ChunkReader(limits)
    out = []
    pos = 0
    while pos < len(data):
        n = rng.choice((1, 2, 3, 7, 64, 129, 500, 4096, 70000))
        out += reader.feed(data[pos : pos + n])
        pos += n
    return out


def parse_all_ways(data: bytes, limits: Limits = Limits()) -> list:
    whole = feed_whole(data, limits)
    assert feed_bytewise(data, limits) == whole
    for seed in range(5):
        assert feed_random(data, seed, limits) == whole
    return whole


# ---------------------------------------------------------------------------------------------
# Header types


def test_type0_single_chunk_message():
    data = h0(3, 1000, 5, 20, 0) + b"hello"
    assert parse_all_ways(data) == [(20, 0, 1000, b"hello")]


def test_type0_little_endian_stream_id():
    data = h0(4, 0, 3, 8, 0x01020304) + b"abc"
    assert parse_all_ways(data) == [(8, 0x01020304, 0, b"abc")]


@pytest.mark.parametrize(
    "csid,form",
    [
        (2, 1),
        (63, 1),
        (64, 2),
        (200, 2),
        (319, 2),
        (320, 3),
        (1000, 3),
        (65599, 3),
        (64, 3),
        (100, 3),
    ],
)
def test_basic_header_forms(csid, form):
    p1, p2 = pay(300, 1), pay(40, 2)
    data = (
        chunked(h0(csid, 10, 300, 9, 1, form=form), p1, h3(csid, form=form))
        + h1(csid, 5, 40, 9, form=form)
        + p2
    )
    assert parse_all_ways(data) == [(9, 1, 10, p1), (9, 1, 15, p2)]


def test_type1_type2_type3_headers_and_delta_reuse():
    a, b, c, d = pay(10, 1), pay(20, 2), pay(20, 3), pay(20, 4)
    data = (
        h0(6, 100, 10, 9, 1)
        + a  # absolute 100
        + h1(6, 40, 20, 9)
        + b  # +40 -> 140, new length
        + h2(6, 33)
        + c  # +33 -> 173, same length/type
        + h3(6)
        + d
    )  # new message, reuses delta 33 -> 206
    assert parse_all_ways(data) == [(9, 1, 100, a), (9, 1, 140, b), (9, 1, 173, c), (9, 1, 206, d)]


def test_type3_after_type0_uses_the_absolute_timestamp_as_delta():
    # RTMP spec 5.3.1.2.4: a type 3 may follow a type 0 when the delta equals the first
    # message's timestamp.
    a, b = pay(8, 1), pay(8, 2)
    data = h0(4, 20, 8, 8, 1) + a + h3(4) + b
    assert parse_all_ways(data) == [(8, 1, 20, a), (8, 1, 40, b)]


def test_type1_changes_type_and_keeps_stream_id():
    data = h0(5, 0, 2, 20, 7) + b"ab" + h1(5, 0, 3, 18) + b"cde"
    assert parse_all_ways(data) == [(20, 7, 0, b"ab"), (18, 7, 0, b"cde")]


def test_multi_chunk_message_with_default_chunk_size():
    p = pay(1000)
    data = chunked(h0(6, 0, 1000, 9, 1), p, h3(6))
    assert parse_all_ways(data) == [(9, 1, 0, p)]


def test_zero_length_message():
    data = h0(3, 5, 0, 20, 0) + h0(3, 6, 1, 20, 0) + b"x"
    assert parse_all_ways(data) == [(20, 0, 5, b""), (20, 0, 6, b"x")]


# ---------------------------------------------------------------------------------------------
# Extended timestamps


def test_extended_timestamp_type0_repeated_on_type3_continuations():
    ts = 0x01234567
    p = pay(700)
    data = chunked(h0(6, ts, 700, 9, 1), p, h3(6, ext_ts=ts))
    assert parse_all_ways(data) == [(9, 1, ts, p)]


def test_extended_timestamp_not_repeated_on_continuations_is_tolerated():
    ts = 0x01234567
    p = pay(700)
    data = chunked(h0(6, ts, 700, 9, 1), p, h3(6))
    assert parse_all_ways(data) == [(9, 1, ts, p)]


def test_extended_timestamp_on_type3_starting_a_new_message():
    # Type 0 with an extended timestamp T, then type-3 new messages: the delta is T again and
    # the extended field is present in each type-3 header (also on its continuations).
    ts = 0x01000000
    a, b = pay(200, 1), pay(200, 2)
    data = chunked(h0(6, ts, 200, 9, 1), a, h3(6, ext_ts=ts)) + chunked(
        h3(6, ext_ts=ts), b, h3(6, ext_ts=ts)
    )
    assert parse_all_ways(data) == [(9, 1, ts, a), (9, 1, 2 * ts, b)]


def test_extended_delta_on_type1_and_type2():
    big = 0x01000005
    a, b, c = pay(4, 1), pay(4, 2), pay(4, 3)
    data = h0(4, 10, 4, 8, 1) + a + h1(4, big, 4, 8) + b + h2(4, 7) + c
    assert parse_all_ways(data) == [(8, 1, 10, a), (8, 1, 10 + big, b), (8, 1, 17 + big, c)]


def test_extended_delta_reused_by_type3_new_message_with_continuations():
    big = 0x02000000
    a, b = pay(300, 1), pay(300, 2)
    data = (
        chunked(h0(4, 0, 300, 8, 1), a, h3(4))
        + chunked(h2(4, big), b, h3(4, ext_ts=big))
        + chunked(h3(4, ext_ts=big), a, h3(4, ext_ts=big))
    )
    assert parse_all_ways(data) == [(8, 1, 0, a), (8, 1, big, b), (8, 1, 2 * big, a)]


def test_timestamps_unwrap_past_32_bits():
    a = pay(3)
    data = (
        h0(4, 0xFFFFFFF0, 3, 8, 1)
        + a  # extended, near the top
        + h1(4, 0x20, 3, 8)
        + a  # delta crosses 2**32
        + h0(4, 0x30, 3, 8, 1)
        + a  # absolute after the wrap
        + h0(4, 0x20, 3, 8, 1)
        + a
    )  # a small step back stays a step back
    assert [m[2] for m in parse_all_ways(data)] == [
        0xFFFFFFF0,
        0x100000010,
        0x100000030,
        0x100000020,
    ]


def test_large_delta_counts_as_negative():
    a = pay(3)
    data = h0(4, 1000, 3, 8, 1) + a + h1(4, 0xFFFFFFFF - 99, 3, 8) + a  # delta of -100
    assert [m[2] for m in parse_all_ways(data)] == [1000, 900]


def test_delta_of_two_to_the_31_counts_as_negative_and_one_less_as_positive():
    a = pay(3)
    base = h0(4, 1 << 31, 3, 8, 1) + a
    assert [m[2] for m in parse_all_ways(base + h1(4, 1 << 31, 3, 8) + a)] == [1 << 31, 0]
    later = base + h1(4, (1 << 31) - 1, 3, 8) + a
    assert [m[2] for m in parse_all_ways(later)] == [1 << 31, (1 << 32) - 1]


# ---------------------------------------------------------------------------------------------
# Interleaving, Set Chunk Size, Abort


def test_interleaved_chunk_streams():
    v, a = pay(400, 1), pay(300, 2)
    data = (
        h0(6, 0, 400, 9, 1)
        + v[:128]
        + h0(4, 5, 300, 8, 1)
        + a[:128]
        + h3(6)
        + v[128:256]
        + h3(4)
        + a[128:256]
        + h3(6)
        + v[256:384]
        + h3(4)
        + a[256:]
        + h3(6)
        + v[384:]
    )
    assert parse_all_ways(data) == [(8, 1, 5, a), (9, 1, 0, v)]


def test_interleaving_in_the_middle_of_a_fast_path_run():
    v, a = pay(128 * 30 + 17, 1), pay(50, 2)
    full = chunked(h0(6, 0, len(v), 9, 1), v, h3(6))
    cut = 1 + 11 + 128 + 10 * 129  # after 10 continuation chunks
    data = full[:cut] + h0(4, 3, 50, 8, 1) + a + full[cut:]
    assert parse_all_ways(data) == [(8, 1, 3, a), (9, 1, 0, v)]


@pytest.mark.parametrize("n_chunks", [2, 5, 11, 12, 13, 40, 200])
@pytest.mark.parametrize("csid,ext", [(6, False), (6, True), (100, False), (1000, True)])
def test_fast_path_matches_general_path(n_chunks, csid, ext):
    ts = 0x01020304 if ext else 77
    p = pay(128 * n_chunks - 3)
    data = chunked(h0(csid, ts, len(p), 9, 1), p, h3(csid, ext_ts=ts if ext else None))
    data += chunked(
        h3(csid, ext_ts=ts if ext else None), p[::-1], h3(csid, ext_ts=ts if ext else None)
    )
    assert parse_all_ways(data) == [(9, 1, ts, p), (9, 1, 2 * ts, p[::-1])]


def test_message_longer_than_one_fast_path_attempt():
    # More continuation chunks than the fast path checks at once (512), with an interleaved
    # message late in the run.
    p, a = pay(128 * 1300 + 5, 1), pay(20, 2)
    full = chunked(h0(6, 9, len(p), 9, 1), p, h3(6))
    cut = 12 + 128 + 1100 * 129
    data = full[:cut] + h0(4, 3, 20, 8, 1) + a + full[cut:]
    assert feed_whole(data) == [(8, 1, 3, a), (9, 1, 9, p)]
    assert feed_random(data, 1) == [(8, 1, 3, a), (9, 1, 9, p)]


def test_exact_multiple_of_chunk_size():
    p = pay(128 * 16)
    data = chunked(h0(6, 0, len(p), 9, 1), p, h3(6)) + chunked(h3(6), p, h3(6))
    assert parse_all_ways(data) == [(9, 1, 0, p), (9, 1, 0, p)]


def test_set_chunk_size_mid_stream():
    p1, p2 = pay(300, 1), pay(5000, 2)
    data = (
        chunked(h0(6, 0, 300, 9, 1), p1, h3(6))
        + set_chunk_size(4096)
        + chunked(h1(6, 33, 5000, 9), p2, h3(6), size=4096)
        + set_chunk_size(1)
        + chunked(h2(6, 33), p2, h3(6), size=1)
    )
    assert parse_all_ways(data) == [(9, 1, 0, p1), (9, 1, 33, p2), (9, 1, 66, p2)]


def test_set_chunk_size_split_across_chunks():
    # The Set Chunk Size message itself is chunked at the old size; the new size applies from
    # the chunk after its last byte.
    p = pay(200)
    data = set_chunk_size(256) + chunked(h0(6, 0, 200, 9, 1), p, h3(6), size=256)
    reader = ChunkReader()
    assert reader.feed(data) == [(9, 1, 0, p)]
    assert reader.chunk_size == 256


def test_abort_discards_the_partial_message():
    p, q = pay(300, 1), pay(10, 2)
    data = h0(6, 0, 300, 9, 1) + p[:128] + abort(6) + h0(6, 40, 10, 9, 1) + q
    assert parse_all_ways(data) == [(9, 1, 40, q)]


def test_abort_of_unknown_stream_is_harmless():
    assert parse_all_ways(abort(50) + h0(3, 0, 1, 20, 0) + b"x") == [(20, 0, 0, b"x")]


def test_control_messages_are_returned():
    data = (
        h0(2, 0, 4, 5, 0) + struct.pack(">I", 2500000) + h0(2, 0, 6, 4, 0) + user_control(6, 1234)
    )
    msgs = parse_all_ways(data)
    assert [(m[0], m[3]) for m in msgs] == [
        (5, struct.pack(">I", 2500000)),
        (4, b"\x00\x06\x00\x00\x04\xd2"),
    ]
    assert parse_user_control(msgs[1][3]) == (6, 1234)
    assert parse_u32(msgs[0][3], "x") == 2500000


def test_everything_together_in_one_stream():
    parts = [
        h0(3, 0, 5, 20, 0) + b"hello",
        chunked(h0(6, 0x01FFFFFF, 1000, 9, 1), pay(1000, 1), h3(6, ext_ts=0x01FFFFFF)),
        set_chunk_size(300),
        chunked(h0(70, 5, 2000, 8, 1), pay(2000, 2), h3(70), size=300),
        h1(3, 10, 3, 20) + b"abc",
        abort(6),
        chunked(h0(400, 1, 900, 9, 1), pay(900, 3), h3(400), size=300),
    ]
    msgs = parse_all_ways(b"".join(parts))
    assert [(m[0], m[2], len(m[3])) for m in msgs] == [
        (20, 0, 5),
        (9, 0x01FFFFFF, 1000),
        (8, 5, 2000),
        (20, 10, 3),
        (9, 1, 900),
    ]


# ---------------------------------------------------------------------------------------------
# Errors and limits


def test_message_longer_than_limit():
    limits = Limits(max_message_size=1000)
    with pytest.raises(ProtocolError, match="max_message_size"):
        feed_whole(h0(6, 0, 1001, 9, 1), limits)
    assert feed_whole(h0(6, 0, 1000, 9, 1) + pay(128), limits) == []


def test_too_many_chunk_streams():
    limits = Limits(max_chunk_streams=3)
    ok = b"".join(h0(c, 0, 1, 20, 0) + b"x" for c in (3, 4, 5))
    assert len(feed_whole(ok, limits)) == 3
    with pytest.raises(ProtocolError, match="max_chunk_streams"):
        feed_whole(ok + h0(6, 0, 1, 20, 0) + b"x", limits)


@pytest.mark.parametrize(
    "size,match", [(0x80000000, "bit 31"), (0, "of 0"), ((1 << 20) + 1, "max_chunk_size")]
)
def test_bad_set_chunk_size(size, match):
    with pytest.raises(ProtocolError, match=match):
        feed_whole(set_chunk_size(size))


def test_largest_allowed_chunk_size():
    reader = ChunkReader()
    reader.feed(set_chunk_size(1 << 20))
    assert reader.chunk_size == 1 << 20


def test_short_control_message():
    with pytest.raises(ProtocolError, match="Set Chunk Size"):
        feed_whole(h0(2, 0, 2, 1, 0) + b"\x00\x01")


@pytest.mark.parametrize(
    "data,match",
    [
        (h3(6) + b"x", "type-3"),
        (h2(6, 5) + b"x", "type-2"),
        (h0(6, 0, 300, 9, 1) + pay(128) + h0(6, 0, 3, 9, 1) + b"abc", "missing"),
        (h0(6, 0, 300, 9, 1) + pay(128) + h1(6, 0, 3, 9) + b"abc", "missing"),
    ],
)
def test_header_errors(data, match):
    with pytest.raises(ProtocolError, match=match):
        feed_whole(data)
    with pytest.raises(ProtocolError, match=match):
        feed_bytewise(data)


def test_reader_stays_failed():
    reader = ChunkReader()
    with pytest.raises(ProtocolError):
        reader.feed(h3(6) + b"x")
    with pytest.raises(ProtocolError, match="already failed"):
        reader.feed(h0(3, 0, 1, 20, 0) + b"x")


def test_partial_messages_are_bounded():
    limits = Limits(max_message_size=1000)
    data = b"".join(h0(c, 0, 1000, 9, 1) + pay(128) for c in range(3, 12))
    with pytest.raises(ProtocolError, match="partially received"):
        feed_whole(data, limits)


def test_partial_messages_may_reach_the_bound_exactly():
    limits = Limits(max_message_size=1000)
    first = set_chunk_size(500) + h0(3, 0, 1000, 9, 1) + pay(500)
    assert parse_all_ways(first + h0(4, 0, 1000, 9, 1) + pay(500), limits) == []  # 1000 held
    over = first + set_chunk_size(501) + h0(4, 0, 1000, 9, 1) + pay(501)  # 1001 held
    with pytest.raises(ProtocolError, match="hold 1001 bytes"):
        feed_whole(over, limits)


def test_incomplete_input_is_buffered_not_lost():
    p = pay(1000)
    data = chunked(h0(6, 0, 1000, 9, 1), p, h3(6))
    reader = ChunkReader()
    assert reader.feed(data[:-1]) == []
    assert reader.buffered > 0
    assert reader.feed(data[-1:]) == [(9, 1, 0, p)]
    assert reader.buffered == 0


# ---------------------------------------------------------------------------------------------
# Writer


def test_basic_header_encoding():
    assert basic_header(0, 2) == b"\x02"
    assert basic_header(3, 63) == b"\xff"
    assert basic_header(1, 64) == b"\x40\x00"
    assert basic_header(0, 319) == b"\x00\xff"
    assert basic_header(2, 320) == b"\x81\x00\x01"
    assert basic_header(0, 65599) == b"\x01\xff\xff"
    with pytest.raises(ValueError):
        basic_header(0, 1)


def test_writer_exact_bytes():
    writer = ChunkWriter(4)
    assert writer.write(3, 20, 1, 0x10, b"abcdef") == (
        b"\x03\x00\x00\x10\x00\x00\x06\x14\x01\x00\x00\x00abcd\xc3ef"
    )


def test_writer_extended_timestamp_repeated():
    writer = ChunkWriter(4)
    assert writer.write(3, 20, 0, 0x01000000, b"abcdef") == (
        b"\x03\xff\xff\xff\x00\x00\x06\x14\x00\x00\x00\x00\x01\x00\x00\x00abcd"
        b"\xc3\x01\x00\x00\x00ef"
    )


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 128, 4096])
def test_writer_reader_round_trip(compress, chunk_size):
    rng = random.Random(chunk_size)
    writer = ChunkWriter(chunk_size, compress_headers=compress)
    msgs = []
    ts = {4: 0, 6: 0, 400: 0x00FFFFF0}
    for i in range(60):
        csid = rng.choice((4, 6, 400))
        ts[csid] += rng.choice((0, 23, 33, 33, 0x01000000))
        length = rng.choice((0, 5, 5, 300, 5000))
        msgs.append((rng.choice((8, 9)), 1, ts[csid], pay(length, i), csid))
    data = set_chunk_size(chunk_size) + b"".join(
        writer.write(csid, t, s, ts_, p) for t, s, ts_, p, csid in msgs
    )
    assert parse_all_ways(data) == [m[:4] for m in msgs]


def test_writer_rejects_oversized_message():
    with pytest.raises(ValueError):
        ChunkWriter().write(3, 9, 1, 0, bytes(1 << 24))


def test_limits_validation():
    with pytest.raises(ValueError, match="max_chunk_size"):
        Limits(max_chunk_size=10)
    with pytest.raises(ValueError, match="max_amf_depth"):
        Limits(max_amf_depth=0)
    with pytest.raises(ValueError, match="integer"):
        Limits(out_chunk_size=4096.0)  # type: ignore[arg-type]
