"""ClientConnection (the publisher role) against our own ServerConnection, both sans-I/O.

The two talk through bytes piped between them, whole or one byte at a time, so every step of
a publish -- handshake, connect, createStream, publish, media, unpublish -- is checked on both
ends: what the client reports and what the server understood. The server role is the well-
tested reference here; tests/unit/test_rtmp_client_wire.py checks the client's bytes against
the independent test client's reader too.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest

from mediaserver.rtmp import (
    AudioConfig,
    AudioFrame,
    ClientConnection,
    ClientState,
    ConnectAccepted,
    ConnectRequested,
    Limits,
    MetadataReceived,
    PingResponded,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    PublishStarted,
    PublishStopped,
    PublishTarget,
    RequestRejected,
    ServerConnection,
    SetupTimedOut,
    StatusReceived,
    StreamCreated,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
    amf0,
)
from mediaserver.rtmp.chunk import ACKNOWLEDGEMENT, ChunkReader
from mediaserver.rtmp.windows import Windows
from tests.rtmp_client import ASC, AVCC, length_prefixed

KEY = "sk_live_0123456789abcdef"
TARGET = PublishTarget.parse(f"rtmp://127.0.0.1:1935/live/{KEY}")
HVCC = bytes.fromhex("01016000000090000000000078f000fcfdf8f800000f03")  # shape only
AV1C = bytes.fromhex("81000c00")
OPUS_HEAD = b"OpusHead" + bytes((1, 2, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0))
NALUS = length_prefixed(b"\x65\x88\x84\x00" * 10, b"\x41\x9a")


class Pair:
    """A client and a server connected by an in-memory pipe, with a permissive server owner
    (every connect accepted, the publish accepted when the key is KEY)."""

    def __init__(
        self,
        *,
        server_limits: Limits = Limits(),
        byte_at_a_time: bool = False,
        decide: Callable[[ServerConnection, PublishRequested], None] | None = None,
        on_connect: Callable[[ServerConnection, ConnectRequested], list[Any]] | None = None,
        **client_kw: Any,
    ) -> None:
        self.server = ServerConnection(server_limits)
        self.client = ClientConnection(TARGET, **client_kw)
        self.byte_at_a_time = byte_at_a_time
        self.decide = decide or _accept_key
        self.on_connect = on_connect or (lambda conn, event: conn.accept_connect())
        self.server_events: list[Any] = []
        self.client_events: list[Any] = []
        self.to_server = bytearray()  # everything the client wrote, for wire-level checks

    def _pieces(self, data: bytes) -> list[bytes]:
        if self.byte_at_a_time:
            return [data[i : i + 1] for i in range(len(data))]
        return [data]

    def pump(self, now: float = 0.0) -> None:
        """Move bytes both ways until neither side has anything to say."""
        while True:
            moved = False
            out = self.client.data_to_send()
            if out:
                moved = True
                self.to_server += out
                for piece in self._pieces(out):
                    self._server_events(self.server.receive_data(piece, now))
            back = self.server.data_to_send()
            if back and not self.client.closed:
                moved = True
                for piece in self._pieces(back):
                    self.client_events += self.client.receive_data(piece, now)
            if not moved:
                return

    def _server_events(self, events: list[Any]) -> None:
        while events:
            more: list[Any] = []
            for event in events:
                self.server_events.append(event)
                if isinstance(event, ConnectRequested):
                    more += self.on_connect(self.server, event)
                elif isinstance(event, PublishRequested):
                    self.decide(self.server, event)
            events = more

    def media(self) -> list[Any]:
        kinds = (VideoConfig, VideoFrame, VideoSequenceEnd, AudioConfig, AudioFrame)
        return [e for e in self.server_events if isinstance(e, (*kinds, MetadataReceived))]

    def publish(self) -> Pair:
        self.pump()
        assert self.client.publishing, self.client_events
        return self


def _accept_key(conn: ServerConnection, event: PublishRequested) -> None:
    if event.name == KEY:
        conn.accept_publish(event.stream_id)
    else:
        conn.reject_publish(event.stream_id, "no such stream key")


def client_messages(wire: bytes) -> list[tuple[int, int, int, bytes]]:
    """The client's messages as our chunk reader parses them (after C0+C1 and C2)."""
    return ChunkReader(Limits()).feed(wire[1 + 1536 + 1536 :])


# ---------------------------------------------------------------------------------------------
# Setup


@pytest.mark.parametrize("byte_at_a_time", [False, True])
@pytest.mark.parametrize("digest", [True, False])
def test_connect_and_publish(byte_at_a_time: bool, digest: bool) -> None:
    pair = Pair(byte_at_a_time=byte_at_a_time, digest_handshake=digest)
    assert pair.client.state is ClientState.HANDSHAKE
    pair.publish()
    assert pair.client._handshake.server_signed is digest
    kinds = [type(e) for e in pair.client_events]
    assert kinds[0] is ConnectAccepted
    assert StreamCreated in kinds and kinds[-1] is PublishStarted
    accepted = pair.client_events[0]
    assert accepted.info["code"] == "NetConnection.Connect.Success"
    assert accepted.properties["fmsVer"].startswith("FMS/")
    created = next(e for e in pair.client_events if isinstance(e, StreamCreated))
    started = pair.client_events[-1]
    assert started.stream_id == created.stream_id == pair.client.stream_id == 1
    # The server echoes the key in its description; the client redacts it.
    assert KEY not in repr(pair.client_events) and "<key>" in started.description

    connect = next(e for e in pair.server_events if isinstance(e, ConnectRequested))
    assert connect.app == "live" and connect.tc_url == "rtmp://127.0.0.1:1935/live"
    assert connect.params["type"] == "nonprivate"
    assert connect.params["flashVer"].startswith("FMLE/3.0")
    assert "fourCcList" not in connect.params
    publish = next(e for e in pair.server_events if isinstance(e, PublishRequested))
    assert (publish.name, publish.kind, publish.stream_id) == (KEY, "live", 1)
    assert pair.server.publishing == frozenset({1})
    assert pair.client.get_timer() is None


def test_setup_commands_in_encoder_order() -> None:
    pair = Pair().publish()
    names = [
        amf0.decode(payload)[0]
        for type_id, _, _, payload in client_messages(bytes(pair.to_server))
        if type_id == 20
    ]
    assert names == ["connect", "releaseStream", "FCPublish", "createStream", "publish"]


def test_enhanced_rtmp_connect_lists_fourccs() -> None:
    pair = Pair(fourcc_list=["hvc1", "av01", "avc1"]).publish()
    connect = next(e for e in pair.server_events if isinstance(e, ConnectRequested))
    assert connect.params["fourCcList"] == ["hvc1", "av01", "avc1"]


def test_wrong_key_is_rejected_and_key_redacted() -> None:
    def refuse(conn: ServerConnection, event: PublishRequested) -> None:
        conn.reject_publish(event.stream_id, f"stream key {event.name} is unknown")

    pair = Pair(decide=refuse)
    pair.pump()
    rejected = pair.client_events[-1]
    assert isinstance(rejected, RequestRejected)
    assert (rejected.stage, rejected.code) == ("publish", "NetStream.Publish.BadName")
    assert rejected.description == "stream key <key> is unknown"
    assert pair.client.closed and pair.client.get_timer() is None
    assert not pair.client.send_video("avc1", 0, 0, True, NALUS)


def test_connect_rejected() -> None:
    def refuse(conn: ServerConnection, event: ConnectRequested) -> list[Any]:
        conn.reject_connect("unknown application 'live'")
        return []

    pair = Pair(on_connect=refuse)
    pair.pump()
    assert pair.client_events == [
        RequestRejected("connect", "NetConnection.Connect.Rejected", "unknown application 'live'")
    ]
    assert pair.client.closed


def test_setup_deadline_is_data() -> None:
    client = ClientConnection(TARGET, now=100.0, setup_timeout=5.0)
    assert client.get_timer() == 105.0
    assert client.handle_timer(104.9) == []
    assert client.handle_timer(105.0) == [SetupTimedOut("handshake")]
    assert client.closed and client.get_timer() is None and client.handle_timer(200.0) == []


def test_deadline_names_the_stage_waited_for() -> None:
    pair = Pair(decide=lambda conn, event: None)  # the server never decides
    pair.pump()
    assert pair.client.state is ClientState.PUBLISH_REQUESTED
    assert pair.client.handle_timer(10.0) == [SetupTimedOut("publish")]


def test_server_ping_is_answered() -> None:
    pair = Pair().publish()
    pair.server.send_ping(12.345)
    pair.pump()
    assert pair.server_events[-1] == PingResponded(12345)


def test_unpublish_ends_the_publish_on_the_server() -> None:
    pair = Pair().publish()
    pair.client.unpublish()
    pair.pump()
    assert pair.client.closed
    assert [e for e in pair.server_events if isinstance(e, PublishEnded)] == [
        PublishEnded(1, "FCUnpublish")
    ]


def test_error_status_while_publishing_stops() -> None:
    pair = Pair().publish()
    pair.server._on_status(1, "error", "NetStream.Publish.BadConnection", f"{KEY} kicked")
    pair.pump()
    assert pair.client_events[-1] == PublishStopped(
        "NetStream.Publish.BadConnection", "<key> kicked"
    )
    assert pair.client.closed


def test_other_status_is_reported() -> None:
    pair = Pair().publish()
    pair.server._on_status(1, "status", "NetStream.Publish.Idle", "idle")
    pair.pump()
    assert pair.client_events[-1] == StatusReceived(1, "status", "NetStream.Publish.Idle", "idle")
    assert pair.client.publishing


def test_fcpublish_notice_is_not_the_publish_start() -> None:
    pair = Pair(decide=lambda conn, event: None)
    pair.pump()
    notices = [e for e in pair.client_events if isinstance(e, StatusReceived)]
    assert [n.code for n in notices] == ["NetStream.Publish.Start"]  # onFCPublish
    assert not pair.client.publishing


# ---------------------------------------------------------------------------------------------
# Media


def send_everything(client: ClientConnection, base: int = 0) -> list[Any]:
    """Send one of each kind of media; return what the server should report."""
    big = length_prefixed(bytes(range(256)) * 90)  # 23 KB: many chunks at any size
    sent = [
        MetadataReceived(1, {"width": 1280.0, "height": 720.0, "encoder": "test"}),
        VideoConfig(1, "avc1", AVCC, base),
        AudioConfig(1, "mp4a", ASC, 44100, 2, base),
        VideoFrame(1, "avc1", base, base + 66, True, big),
        AudioFrame(1, "mp4a", base + 10, b"\x21\x10" * 50),
        VideoFrame(1, "avc1", base + 33, base + 33, False, NALUS),
        VideoFrame(1, "avc1", base + 66, base + 33, False, NALUS),  # negative offset
        AudioFrame(1, "mp4a", base + 33, b"\x21\x11" * 50),
        AudioFrame(1, "mp4a", base + 56, b"\x21\x12" * 50),
        VideoSequenceEnd(1, "avc1", base + 100),
        VideoConfig(1, "hvc1", HVCC, base + 200),
        VideoFrame(1, "hvc1", base + 200, base + 200, True, big),
        VideoFrame(1, "hvc1", base + 233, base + 300, False, NALUS),
        VideoConfig(1, "av01", AV1C, base + 400),
        VideoFrame(1, "av01", base + 400, base + 400, True, b"\x12\x00\x0a\x0b" * 30),
        AudioConfig(1, "opus", OPUS_HEAD, 48000, 2, base + 500),
        AudioFrame(1, "opus", base + 520, b"\xfc\xff\xfe"),
    ]
    for event in sent:
        assert client.send(event)
    return sent


@pytest.mark.parametrize("byte_at_a_time", [False, True])
def test_media_arrives_as_sent(byte_at_a_time: bool) -> None:
    pair = Pair(byte_at_a_time=byte_at_a_time).publish()
    sent = send_everything(pair.client)
    pair.pump()
    assert pair.media() == sent


def test_extended_and_wrapping_timestamps() -> None:
    """Timestamps crossing 0xFFFFFF (the extended field) and 2**32 (the wire wraps; the
    server unwraps) arrive as sent."""
    for base in (0xFFFFFF - 50, 2**32 - 300):
        pair = Pair().publish()
        sent = send_everything(pair.client, base)
        pair.pump()
        assert pair.media() == sent


@pytest.mark.parametrize("server_chunk", [128, 4096, 65536])
@pytest.mark.parametrize("client_chunk", [128, 4096, 60000])
def test_chunk_size_negotiation_both_ways(server_chunk: int, client_chunk: int) -> None:
    pair = Pair(
        server_limits=Limits(out_chunk_size=server_chunk),
        limits=Limits(out_chunk_size=client_chunk),
    ).publish()
    assert pair.client.chunk_size == pair.server.peer_chunk_size == client_chunk
    assert pair.client.peer_chunk_size == server_chunk
    sent = send_everything(pair.client)
    pair.pump()
    assert pair.media() == sent


def test_acknowledgements_at_the_window() -> None:
    """The server sets a 1000-byte window both ways: the client acknowledges what it receives
    each time the count crosses it, and announces the window back so the server acknowledges
    what the client sends."""
    pair = Pair(server_limits=Limits(window_ack_size=1000)).publish()
    assert pair.client.windows.ack_window == 1000
    assert pair.server.peer_window_ack_size == 1000  # from the client's answer
    for i in range(200):
        pair.server.send_ping(i)  # replies the client must count
        pair.pump()
    for i in range(20):
        assert pair.client.send_video("avc1", i * 33, i * 33, i == 0, NALUS * 10)
        pair.pump()
    acks = [
        struct.unpack(">I", payload)[0]
        for type_id, _, _, payload in client_messages(bytes(pair.to_server))
        if type_id == ACKNOWLEDGEMENT
    ]
    assert len(acks) >= 3
    assert all(b - a >= 1000 for a, b in zip(acks, acks[1:], strict=False))
    assert pair.client.bytes_received - acks[-1] < 1000
    # The server acknowledged the client's bytes at the client's announced window.
    assert pair.client.windows.peer_acknowledged > 0
    assert 0 <= pair.client.unacknowledged < 1000 + 4096


def test_output_is_bounded_and_the_owner_drops() -> None:
    pair = Pair(max_buffered=20_000).publish()
    client = pair.client
    frame = NALUS * 40
    sent = 0
    while client.send_video("avc1", sent * 33, sent * 33, sent == 0, frame):
        sent += 1
    assert sent > 1 and client.refused == 1
    assert client.buffered <= 20_000 < client.buffered + len(frame) + 5
    client.data_to_send()
    assert client.buffered == 0
    # One message larger than the bound still goes out when nothing waits.
    assert client.send_video("avc1", 1000, 1000, True, frame * 10)
    assert not client.send_audio("mp4a", 1000, b"\x21")
    assert client.refused == 2


def test_pieces_to_send_are_the_messages_as_queued() -> None:
    pair = Pair().publish()
    client = pair.client
    client.data_to_send()
    before = client.bytes_sent
    assert client.send_video("avc1", 0, 0, True, NALUS * 40)
    assert client.send_audio("mp4a", 0, b"\x21\x10")
    pieces = client.pieces_to_send()
    assert len(pieces) == 2 and client.buffered == 0 and client.pieces_to_send() == []
    assert client.bytes_sent == before + sum(len(p) for p in pieces)
    # The same bytes as the joined form, and the server reads both messages from them.
    assert client.send_video("avc1", 33, 33, False, NALUS)
    assert client.send_audio("mp4a", 33, b"\x21\x10")
    joined = client.data_to_send()
    events = pair.server.receive_data(b"".join(pieces) + joined)
    assert [type(e).__name__ for e in events] == ["VideoFrame", "AudioFrame"] * 2


def test_media_before_publish_start_is_refused() -> None:
    client = ClientConnection(TARGET)
    assert not client.send_video("avc1", 0, 0, True, NALUS)
    assert not client.send_metadata({"width": 1.0})


def test_unknown_codec_is_the_owners_mistake() -> None:
    pair = Pair().publish()
    with pytest.raises(ValueError, match="vp6"):
        pair.client.send_video("vp6", 0, 0, True, b"x")
    with pytest.raises(ValueError, match="speex"):
        pair.client.send_audio("speex", 0, b"x")
    with pytest.raises(ValueError, match="negative"):
        pair.client.send_video("avc1", -33, 0, True, NALUS)


# ---------------------------------------------------------------------------------------------
# Handshake


def test_not_an_rtmp_server() -> None:
    client = ClientConnection(TARGET)
    client.data_to_send()
    with pytest.raises(ProtocolError, match="not an RTMP server"):
        client.receive_data(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    assert client.closed
    assert client.receive_data(b"more") == []


def test_signed_s1_with_a_forged_s2_is_refused() -> None:
    server = ServerConnection()
    client = ClientConnection(TARGET)
    server.receive_data(client.data_to_send())
    s0s1s2 = bytearray(server.data_to_send())
    s0s1s2[-1] ^= 0xFF  # breaks the S2 digest (and it is no echo of C1)
    with pytest.raises(ProtocolError, match="S2"):
        client.receive_data(bytes(s0s1s2))


def test_handshake_then_chunks_in_one_segment() -> None:
    """S0+S1+S2 and the server's first chunks can arrive in one read."""
    server = ServerConnection()
    client = ClientConnection(TARGET)
    server.receive_data(client.data_to_send())
    hello = server.data_to_send()
    client.receive_data(hello)
    server.receive_data(client.data_to_send())  # C2, Set Chunk Size, connect
    events = server.receive_data(b"")
    assert events == [] and server.state.value == "connect_pending"
    server.accept_connect()
    assert client.receive_data(server.data_to_send())[0].__class__ is ConnectAccepted


# ---------------------------------------------------------------------------------------------
# Targets


@pytest.mark.parametrize(
    ("url", "key", "expected"),
    [
        ("rtmp://live.twitch.tv/app/KEY", None, ("rtmp", "live.twitch.tv", 1935, "app", "KEY")),
        ("rtmps://a.example:443/live2", "KEY", ("rtmps", "a.example", 443, "live2", "KEY")),
        ("rtmps://h.example/rtmp/", "KEY", ("rtmps", "h.example", 443, "rtmp", "KEY")),
        ("rtmp://h:1936/app/inst/KEY?t=1", None, ("rtmp", "h", 1936, "app/inst", "KEY?t=1")),
        ("RTMP://[::1]:1935/live/KEY", None, ("rtmp", "::1", 1935, "live", "KEY")),
    ],
)
def test_target_parse(url: str, key: str | None, expected: tuple[Any, ...]) -> None:
    target = PublishTarget.parse(url, key)
    assert (target.scheme, target.host, target.port, target.app, target.stream_key) == expected
    assert "KEY" not in repr(target) and "KEY" not in target.redacted
    assert target.tls is (target.scheme == "rtmps")


def test_target_tc_url() -> None:
    assert PublishTarget.parse("rtmp://[::1]/live/k").tc_url == "rtmp://[::1]:1935/live"
    assert TARGET.redacted == "rtmp://127.0.0.1:1935/live/<key>"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h/live/SECRET", "rtmp://"),
        ("rtmp:///live/SECRET", "no host"),
        ("rtmp://h/SECRET", "no application"),
        ("rtmp://h/live/", "no stream key"),
        ("rtmp://h:99999/live/SECRET", "not a valid"),
    ],
)
def test_target_errors_never_quote_the_key(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        PublishTarget.parse(url)
    assert "SECRET" not in str(info.value)


# ---------------------------------------------------------------------------------------------
# Windows


def test_acknowledgement_sequence_numbers_wrap() -> None:
    windows = Windows(1000)
    sent = 2**32 + 5000
    windows.on_acknowledgement(struct.pack(">I", 4000), sent)  # 2**32 + 4000, modulo 2**32
    assert windows.peer_acknowledged == 2**32 + 4000
    windows.on_acknowledgement(struct.pack(">I", 3000), sent)  # older: ignored
    assert windows.peer_acknowledged == 2**32 + 4000


def test_peer_bandwidth_limit_types() -> None:
    windows = Windows(1000)
    assert windows.on_peer_bandwidth(struct.pack(">IB", 5000, 2)) == 5000  # dynamic, first
    assert windows.on_peer_bandwidth(struct.pack(">IB", 8000, 1)) is None
    assert windows.peer_bandwidth == 5000  # soft: the smaller one holds, nothing to announce
    assert windows.on_peer_bandwidth(struct.pack(">IB", 9000, 0)) == 9000  # hard: taken
    assert windows.on_peer_bandwidth(struct.pack(">IB", 7000, 2)) == 7000  # dynamic after hard
    assert windows.on_peer_bandwidth(struct.pack(">IB", 7000, 0)) is None  # unchanged: silent
    with pytest.raises(ProtocolError, match="limit type"):
        windows.on_peer_bandwidth(struct.pack(">IB", 7000, 9))
    with pytest.raises(ProtocolError, match="of 0"):
        windows.on_peer_bandwidth(struct.pack(">IB", 0, 0))
    with pytest.raises(ProtocolError, match="needs 4"):
        windows.on_peer_bandwidth(b"\x00")
