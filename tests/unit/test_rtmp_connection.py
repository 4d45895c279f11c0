"""ServerConnection against the independent test client: a full publish and its edge cases."""

from __future__ import annotations

import struct

import pytest

from mediaserver.rtmp import (
    AudioConfig,
    AudioFrame,
    ConnectionState,
    ConnectRequested,
    Limits,
    MediaIgnored,
    MetadataReceived,
    PingResponded,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    ServerConnection,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
)
from tests.rtmp_client import (
    ASC,
    AVCC,
    CSID_CONTROL,
    Ecma,
    RtmpTestClient,
    Undefined,
    aac_raw,
    aac_sequence_header,
    amf_encode,
    avc_end_of_sequence,
    avc_nalus,
    avc_sequence_header,
    check_server_hello,
    ex_video,
    length_prefixed,
    publish_session,
)

NALUS = length_prefixed(b"\x65\x88\x84\x00", b"\x41\x9a")


class Session:
    """A server connection and a client talking through bytes, as a socket would carry them."""

    def __init__(self, chunk_size: int = 4096, limits: Limits = Limits(), **client_kw):
        self.client = RtmpTestClient(chunk_size, **client_kw)
        self.conn = ServerConnection(limits)
        self.events: list = []
        self.replies: list = []

    def send(self, data: bytes, now: float = 0.0) -> list:
        events = self.conn.receive_data(data, now)
        self.events += events
        self.replies += self.client.replies(self.conn.data_to_send())
        return events

    def take_replies(self) -> list:
        replies, self.replies = self.replies, []
        return replies

    def handshake(self) -> None:
        assert self.conn.receive_data(self.client.c0c1()) == []
        s0s1s2 = self.conn.data_to_send()
        assert check_server_hello(self.client.c1, s0s1s2).s2_digest_valid
        self.send(self.client.c2(s0s1s2) + self.client.set_chunk_size())
        assert self.conn.state is ConnectionState.AWAIT_CONNECT

    def connect(self, **extra) -> ConnectRequested:
        self.handshake()
        (event,) = self.send(self.client.connect(**extra))
        assert isinstance(event, ConnectRequested)
        assert self.conn.accept_connect() == []
        self.replies += self.client.replies(self.conn.data_to_send())
        return event

    def publish(self, key: str = "key") -> PublishRequested:
        self.connect()
        self.send(
            self.client.release_stream(key)
            + self.client.fc_publish(key)
            + self.client.create_stream()
        )
        (event,) = self.send(self.client.publish(1, key))
        assert isinstance(event, PublishRequested)
        self.conn.accept_publish(1)
        self.replies += self.client.replies(self.conn.data_to_send())
        return event


def commands(replies: list) -> list:
    return [(r.stream_id, r.values) for r in replies if r.type_id == 20]


def test_full_publish_flow_exact_replies():
    s = Session()
    s.handshake()
    (connect,) = s.send(s.client.connect(objectEncoding=0.0))
    assert connect == ConnectRequested(
        1.0,
        "live",
        "rtmp://localhost/live",
        {
            "app": "live",
            "type": "nonprivate",
            "flashVer": "FMLE/3.0 (compatible; FMSc/1.0)",
            "swfUrl": "rtmp://localhost/live",
            "tcUrl": "rtmp://localhost/live",
            "objectEncoding": 0.0,
        },
    )
    assert s.take_replies() == []  # nothing until the owner decides
    s.conn.accept_connect()
    s.replies += s.client.replies(s.conn.data_to_send())
    replies = s.take_replies()
    assert [(r.type_id, r.payload) for r in replies[:3]] == [
        (5, struct.pack(">I", 2_500_000)),
        (6, struct.pack(">I", 2_500_000) + b"\x02"),
        (1, struct.pack(">I", 4096)),
    ]
    assert s.client.reader.chunk_size == 4096
    assert commands(replies[3:]) == [
        (
            0,
            [
                "_result",
                1.0,
                {"fmsVer": "FMS/3,5,7,7009", "capabilities": 31.0, "mode": 1.0},
                {
                    "level": "status",
                    "code": "NetConnection.Connect.Success",
                    "description": "Connection succeeded.",
                    "objectEncoding": 0.0,
                },
            ],
        )
    ]

    assert s.send(s.client.release_stream("key")) == []
    assert commands(s.take_replies()) == [(0, ["_result", 2.0, None, Undefined()])]
    assert s.send(s.client.fc_publish("key")) == []
    assert commands(s.take_replies()) == [
        (0, ["onFCPublish", 0.0, None, {"code": "NetStream.Publish.Start", "description": "key"}]),
        (0, ["_result", 3.0, None, Undefined()]),
    ]
    assert s.send(s.client.create_stream()) == []
    assert commands(s.take_replies()) == [(0, ["_result", 4.0, None, 1.0])]

    assert s.send(s.client.publish(1, "key")) == [PublishRequested(1, "key", "live", "")]
    assert s.take_replies() == []
    # Media sent before the publish is accepted is ignored.
    assert s.send(s.client.video(1, 0, avc_sequence_header(AVCC))) == []
    s.conn.accept_publish(1)
    s.replies += s.client.replies(s.conn.data_to_send())
    replies = s.take_replies()
    assert (replies[0].type_id, replies[0].payload) == (4, b"\x00\x00\x00\x00\x00\x01")
    assert commands(replies[1:]) == [
        (
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "status",
                    "code": "NetStream.Publish.Start",
                    "description": "key is now published.",
                    "details": "key",
                },
            ],
        )
    ]

    meta = {"width": 1280.0, "height": 720.0, "videocodecid": 7.0}
    assert s.send(s.client.set_data_frame(1, meta)) == [MetadataReceived(1, meta)]
    assert s.send(
        s.client.video(1, 0, avc_sequence_header(AVCC))
        + s.client.audio(1, 0, aac_sequence_header(ASC))
    ) == [VideoConfig(1, "avc1", AVCC, 0), AudioConfig(1, "mp4a", ASC, 44100, 2, 0)]
    assert s.send(
        s.client.video(1, 33, avc_nalus(NALUS, keyframe=True, cto=-33))
        + s.client.audio(1, 46, aac_raw(b"aac"))
        + s.client.video(1, 66, avc_nalus(NALUS, keyframe=False, cto=67))
        + s.client.video(1, 99, avc_end_of_sequence())
    ) == [
        VideoFrame(1, "avc1", 33, 0, True, NALUS),
        AudioFrame(1, "mp4a", 46, b"aac"),
        VideoFrame(1, "avc1", 66, 133, False, NALUS),
        VideoSequenceEnd(1, "avc1", 99),
    ]

    assert s.send(s.client.fc_unpublish("key")) == [PublishEnded(1, "FCUnpublish")]
    assert commands(s.take_replies()) == [
        (
            0,
            [
                "onFCUnpublish",
                0.0,
                None,
                {"code": "NetStream.Unpublish.Success", "description": "key"},
            ],
        ),
        (0, ["_result", 5.0, None, Undefined()]),
        (
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "status",
                    "code": "NetStream.Unpublish.Success",
                    "description": "key is now unpublished.",
                },
            ],
        ),
    ]
    # deleteStream after FCUnpublish: the publish already ended, no second event.
    assert s.send(s.client.delete_stream(1)) == []
    assert s.take_replies() == []
    assert s.conn.publishing == frozenset()


def test_recorded_session_whole_and_bytewise_give_the_same_events():
    _, segments = publish_session(chunk_size=128, seconds=0.3, video_bytes=3000)
    setup, rest = segments[:8], b"".join(segments[8:])  # up to and including publish

    def run(pieces):
        conn = ServerConnection()
        events = []
        for piece in setup + pieces:  # setup segments one by one, as a client waits for replies
            for event in conn.receive_data(piece):
                events.append(event)
                if isinstance(event, ConnectRequested):
                    events += conn.accept_connect()
                elif isinstance(event, PublishRequested):
                    conn.accept_publish(event.stream_id)
        return events

    whole = run([rest])
    assert run([rest[i : i + 1] for i in range(len(rest))]) == whole
    assert run(segments[8:]) == whole
    assert run([rest[i : i + 1000] for i in range(0, len(rest), 1000)]) == whole
    kinds = [type(e).__name__ for e in whole]
    assert kinds[:5] == [
        "ConnectRequested",
        "PublishRequested",
        "MetadataReceived",
        "VideoConfig",
        "AudioConfig",
    ]
    assert kinds[-1] == "PublishEnded"
    assert kinds.count("VideoFrame") == 9
    assert kinds.count("AudioFrame") == 12


def test_connect_rejected():
    s = Session()
    s.handshake()
    s.send(s.client.connect(app="wrong"))
    s.conn.reject_connect("Unknown application")
    s.replies += s.client.replies(s.conn.data_to_send())
    assert commands(s.take_replies()) == [
        (
            0,
            [
                "_error",
                1.0,
                None,
                {
                    "level": "error",
                    "code": "NetConnection.Connect.Rejected",
                    "description": "Unknown application",
                },
            ],
        )
    ]
    assert s.conn.closed
    assert s.send(s.client.create_stream()) == []
    assert s.conn.data_to_send() == b""


def test_publish_rejected():
    s = Session()
    s.connect()
    s.send(s.client.create_stream())
    s.take_replies()
    (event,) = s.send(s.client.publish(1, "badkey"))
    s.conn.reject_publish(event.stream_id, "Invalid stream key")
    s.replies += s.client.replies(s.conn.data_to_send())
    assert commands(s.take_replies()) == [
        (
            1,
            [
                "onStatus",
                0.0,
                None,
                {
                    "level": "error",
                    "code": "NetStream.Publish.BadName",
                    "description": "Invalid stream key",
                },
            ],
        )
    ]
    assert s.send(s.client.video(1, 0, avc_sequence_header(AVCC))) == []
    assert s.conn.close() == []


def test_object_encoding_3_is_answered_with_0():
    s = Session()
    s.handshake()
    s.send(s.client.connect(objectEncoding=3.0))
    s.conn.accept_connect()
    s.replies += s.client.replies(s.conn.data_to_send())
    (result,) = commands(s.take_replies())
    assert result[1][3]["objectEncoding"] == 0.0


def test_amf3_command_message_with_amf0_body_is_accepted():
    s = Session()
    s.handshake()
    (event,) = s.send(
        s.client.command("connect", {"app": "live", "tcUrl": "rtmp://h/live"}, amf3=True)
    )
    assert event == ConnectRequested(
        1.0, "live", "rtmp://h/live", {"app": "live", "tcUrl": "rtmp://h/live"}
    )
    s.conn.accept_connect()
    s.conn.data_to_send()
    s.send(s.client.command("createStream", None, amf3=True))
    s.replies += s.client.replies(s.conn.data_to_send())
    assert commands(s.take_replies()) == [(0, ["_result", 2.0, None, 1.0])]


def test_amf3_data_message_metadata():
    s = Session()
    s.publish()
    body = b"\x00" + amf_encode("@setDataFrame", "onMetaData", Ecma(width=640.0))
    assert s.send(s.client.writer.write(5, 15, 1, 0, body)) == [
        MetadataReceived(1, {"width": 640.0})
    ]
    assert s.send(s.client.writer.write(5, 18, 1, 0, amf_encode("onMetaData", {"a": 1.0}))) == [
        MetadataReceived(1, {"a": 1.0})
    ]


def test_undecodable_command_arguments_get_call_failed():
    s = Session()
    s.connect()
    s.take_replies()
    body = amf_encode("createStream", 7.0) + b"\x11\x0a\x0b\x01\x01"  # an AMF3 object
    assert s.send(s.client.writer.write(3, 20, 0, 0, body)) == []
    (reply,) = commands(s.take_replies())
    assert reply[1][:3] == ["_error", 7.0, None]
    assert reply[1][3]["code"] == "NetConnection.Call.Failed"
    assert "AMF3" in reply[1][3]["description"]
    # The connection carries on.
    s.send(s.client.create_stream())
    assert commands(s.take_replies())[0][1][0] == "_result"


def test_undecodable_command_without_transaction_id_closes():
    s = Session()
    s.connect()
    with pytest.raises(ProtocolError, match="AMF3"):
        s.send(s.client.writer.write(3, 20, 0, 0, b"\x11\x06"))
    assert s.conn.closed
    assert s.send(s.client.create_stream()) == []


def test_command_name_must_be_a_string():
    s = Session()
    s.handshake()
    with pytest.raises(ProtocolError, match="command name"):
        s.send(s.client.writer.write(3, 20, 0, 0, amf_encode(1.0, 2.0)))


def test_unknown_commands_are_answered_politely():
    s = Session()
    s.connect()
    s.take_replies()
    s.send(s.client.command("someVendorThing", None, "x"))
    s.send(s.client.command("quietThing", None, tid=0.0))
    s.send(s.client.command("_checkbw", None))
    s.send(s.client.command("onBWDone", None))
    replies = commands(s.take_replies())
    assert [r[1][:2] for r in replies] == [["_error", 2.0], ["_result", 3.0]]
    assert replies[0][1][3]["code"] == "NetConnection.Call.Failed"


def test_commands_before_connect_are_refused():
    s = Session()
    s.handshake()
    s.send(s.client.create_stream())
    (reply,) = commands(s.take_replies())
    assert reply[1][0] == "_error"
    assert s.conn.state is ConnectionState.AWAIT_CONNECT


def test_second_connect_is_refused():
    s = Session()
    s.connect()
    s.take_replies()
    assert s.send(s.client.connect()) == []
    assert commands(s.take_replies())[0][1][0] == "_error"


def test_pipelined_commands_wait_for_the_connect_decision():
    s = Session()
    s.handshake()
    c = s.client
    events = s.send(
        c.connect()
        + c.release_stream("k")
        + c.fc_publish("k")
        + c.create_stream()
        + c.publish(1, "k?token=abc")
        + c.video(1, 0, avc_sequence_header(AVCC))
    )
    assert [type(e) for e in events] == [ConnectRequested]
    assert s.take_replies() == []
    assert s.conn.accept_connect() == [PublishRequested(1, "k", "live", "token=abc")]
    s.replies += c.replies(s.conn.data_to_send())
    names = [r[1][0] for r in commands(s.take_replies())]
    assert names == ["_result", "_result", "onFCPublish", "_result", "_result"]


def test_publish_ends_once_per_publish():
    for end in ("deleteStream", "closeStream", "close", "FCUnpublish"):
        s = Session()
        s.publish()
        c = s.client
        if end == "deleteStream":
            got = s.send(c.delete_stream(1) + c.fc_unpublish("key") + c.delete_stream(1))
        elif end == "closeStream":
            got = s.send(c.command("closeStream", None, stream_id=1, tid=0.0) + c.delete_stream(1))
        elif end == "close":
            got = s.conn.close()
        else:
            got = s.send(
                c.fc_unpublish("key")
                + c.command("closeStream", None, stream_id=1)
                + c.delete_stream(1)
            )
        assert got == [PublishEnded(1, end if end != "close" else "disconnect")], end
        assert s.conn.close() == []


@pytest.mark.parametrize("target", [float("nan"), float("inf"), 1.5, -1.0, "1", None])
def test_delete_stream_with_odd_arguments(target):
    s = Session()
    s.publish()
    assert s.send(s.client.command("deleteStream", None, target)) == []
    assert s.send(s.client.delete_stream(1)) == [PublishEnded(1, "deleteStream")]


def test_publish_twice_on_one_stream_is_refused():
    s = Session()
    s.publish()
    s.take_replies()
    assert s.send(s.client.publish(1, "key")) == []
    (reply,) = commands(s.take_replies())
    assert reply[1][3]["code"] == "NetStream.Publish.BadConnection"


def test_publish_on_second_stream_and_name_query_split():
    s = Session()
    s.publish()
    s.send(s.client.create_stream())
    assert commands(s.take_replies())[-1][1] == ["_result", 5.0, None, 2.0]
    assert s.send(s.client.publish(2, "other?a=1&b=2", "record")) == [
        PublishRequested(2, "other", "record", "a=1&b=2")
    ]


def test_create_stream_limit():
    s = Session(limits=Limits(max_message_streams=2))
    s.connect()
    s.take_replies()
    s.send(s.client.create_stream() + s.client.create_stream() + s.client.create_stream())
    assert [r[1][0] for r in commands(s.take_replies())] == ["_result", "_result", "_error"]


def test_ping_both_ways():
    s = Session()
    s.connect()
    s.take_replies()
    s.send(s.client.writer.write(CSID_CONTROL, 4, 0, 0, struct.pack(">HI", 6, 123456)))
    (pong,) = s.take_replies()
    assert (pong.type_id, pong.payload) == (4, struct.pack(">HI", 7, 123456))
    s.conn.send_ping(now=12.5)
    s.replies += s.client.replies(s.conn.data_to_send())
    (ping,) = s.take_replies()
    assert (ping.type_id, ping.payload) == (4, struct.pack(">HI", 6, 12500))
    assert s.send(s.client.writer.write(CSID_CONTROL, 4, 0, 0, struct.pack(">HI", 7, 12500))) == [
        PingResponded(12500)
    ]
    # StreamBegin / SetBufferLength from a client are accepted silently.
    assert (
        s.send(s.client.writer.write(CSID_CONTROL, 4, 0, 0, struct.pack(">HII", 3, 1, 3000))) == []
    )


def test_acknowledgement_after_the_peer_window():
    s = Session()
    s.connect()
    s.take_replies()
    s.send(s.client.writer.write(CSID_CONTROL, 5, 0, 0, struct.pack(">I", 5000)))
    assert s.conn.peer_window_ack_size == 5000
    s.send(s.client.command("nothing", None, tid=0.0))
    assert s.take_replies() == []
    s.send(s.client.writer.write(8, 20, 0, 0, amf_encode("x", 0.0, "y" * 6000)))
    (ack,) = s.take_replies()
    assert ack.type_id == 3
    assert struct.unpack(">I", ack.payload)[0] == s.conn.bytes_received


def test_set_peer_bandwidth_is_answered_with_window_ack_size():
    s = Session()
    s.connect()
    s.take_replies()
    s.send(s.client.writer.write(CSID_CONTROL, 6, 0, 0, struct.pack(">IB", 1_000_000, 2)))
    (reply,) = s.take_replies()
    assert (reply.type_id, reply.payload) == (5, struct.pack(">I", 1_000_000))
    s.send(s.client.writer.write(CSID_CONTROL, 6, 0, 0, struct.pack(">IB", 1_000_000, 2)))
    assert s.take_replies() == []


def test_bad_control_messages_close():
    s = Session()
    s.connect()
    with pytest.raises(ProtocolError, match="Window Acknowledgement Size"):
        s.send(s.client.writer.write(CSID_CONTROL, 5, 0, 0, b"\x00"))
    assert s.conn.closed


def test_enhanced_rtmp_hevc_publish():
    s = Session()
    s.publish()
    hvcc = b"\x01\x01\x60" + bytes(20)
    c = s.client
    assert s.send(
        c.video(1, 0, ex_video(b"hvc1", 0, hvcc))
        + c.video(1, 33, ex_video(b"hvc1", 1, NALUS, cto=33))
        + c.video(1, 66, ex_video(b"hvc1", 3, NALUS, keyframe=False))
        + c.video(1, 99, ex_video(b"hvc1", 2))
    ) == [
        VideoConfig(1, "hvc1", hvcc, 0),
        VideoFrame(1, "hvc1", 33, 66, True, NALUS),
        VideoFrame(1, "hvc1", 66, 66, False, NALUS),
        VideoSequenceEnd(1, "hvc1", 99),
    ]


def test_unsupported_codec_reported_once():
    s = Session()
    s.publish()
    vp6 = b"\x14\x00\x00\x00"
    events = s.send(s.client.video(1, 0, vp6) + s.client.video(1, 33, vp6))
    assert len(events) == 1 and isinstance(events[0], MediaIgnored)


def test_extended_timestamps_through_the_connection():
    s = Session(chunk_size=128)
    s.publish()
    start = 0xFFFFFF - 40
    frames = [
        s.client.video(1, start + 33 * i, avc_nalus(NALUS * 100, keyframe=False)) for i in range(4)
    ]
    events = s.send(b"".join(frames))
    assert [e.dts for e in events] == [start + 33 * i for i in range(4)]


def test_aggregate_message():
    s = Session()
    s.publish()
    body = b""
    for tag_type, ts, data in (
        (9, 1000, avc_nalus(NALUS, keyframe=True)),
        (8, 1010, aac_raw(b"a1")),
        (9, 1033, avc_nalus(NALUS, keyframe=False)),
    ):
        body += (
            bytes([tag_type])
            + len(data).to_bytes(3, "big")
            + (ts & 0xFFFFFF).to_bytes(3, "big")
            + bytes([ts >> 24])
            + b"\x00\x00\x00"
            + data
            + (11 + len(data)).to_bytes(4, "big")
        )
    events = s.send(s.client.writer.write(6, 22, 1, 5000, body))
    assert events == [
        VideoFrame(1, "avc1", 5000, 5000, True, NALUS),
        AudioFrame(1, "mp4a", 5010, b"a1"),
        VideoFrame(1, "avc1", 5033, 5033, False, NALUS),
    ]
    with pytest.raises(ProtocolError, match="aggregate"):
        s.send(s.client.writer.write(6, 22, 1, 5000, body[:-20]))


def test_http_on_the_rtmp_port():
    conn = ServerConnection()
    with pytest.raises(ProtocolError, match="not an RTMP handshake"):
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.closed


def test_accept_without_pending_connect_is_a_caller_error():
    conn = ServerConnection()
    with pytest.raises(RuntimeError):
        conn.accept_connect()
    with pytest.raises(RuntimeError):
        conn.reject_connect("no")
    conn.accept_publish(1)  # nothing pending: ignored
    conn.reject_publish(1, "no")
    assert conn.data_to_send() == b""


def test_flood_before_connect_decision_is_bounded():
    s = Session(limits=Limits(max_message_size=10_000))
    s.handshake()
    s.send(s.client.connect())
    with pytest.raises(ProtocolError, match="before its connect"):
        s.send(b"".join(s.client.command("x", None, "y" * 1000) for _ in range(12)))


# ---------------------------------------------------------------------------------------------
# What a client without a stream key can make the connection hold or send


def test_big_message_before_publish_is_refused_at_its_header():
    """1 MB releaseStream names are refused as soon as the chunk header announces them: the
    setup limit, not max_message_size, bounds what a key-less client makes us buffer."""
    s = Session()
    s.connect()
    big = s.client.release_stream("k" * 1_000_000)
    with pytest.raises(ProtocolError, match="max_setup_message_size=65536"):
        s.send(big[:200])  # the header and one chunk of the 1 MB message
    assert s.conn.closed


def test_setup_limit_is_lifted_once_a_publish_is_accepted():
    s = Session(limits=Limits(max_setup_message_size=1024))
    s.publish()
    nalus = length_prefixed(b"\x65" + bytes(50_000))
    (frame,) = s.send(s.client.video(1, 0, avc_nalus(nalus, keyframe=True)))
    assert isinstance(frame, VideoFrame) and frame.data == nalus


def test_media_before_any_publish_counts_against_the_setup_limit():
    s = Session(limits=Limits(max_setup_message_size=1024))
    s.connect()
    s.send(s.client.create_stream())
    with pytest.raises(ProtocolError, match="max_setup_message_size"):
        s.send(s.client.video(1, 0, avc_nalus(bytes(5000), keyframe=True)))


def test_echoed_names_are_bounded():
    """Replies quoting a client's string (FCPublish/FCUnpublish names, unknown command names)
    stay small however long the string: output never grows with the input."""
    s = Session()
    s.connect()
    s.take_replies()
    name = "n" * 60_000
    s.conn.receive_data(
        s.client.fc_publish(name)
        + s.client.fc_unpublish(name)
        + s.client.command("x" * 60_000, None)
    )
    out = s.conn.data_to_send()
    assert len(out) < 2000
    replies = commands(s.client.replies(out))
    assert [r[1][0] for r in replies] == [
        "onFCPublish",
        "_result",
        "onFCUnpublish",
        "_result",
        "_error",
    ]
    for _, values in replies:
        if isinstance(values[3], dict):
            assert len(values[3]["description"]) <= 256 + 50
    assert replies[0][1][3]["description"].startswith("n" * 256 + "...")


def test_long_stream_name_is_refused_before_the_key_check():
    s = Session()
    s.connect()
    s.send(s.client.create_stream())
    s.take_replies()
    events = s.events[:]
    with pytest.raises(ProtocolError, match="max_name_length=256"):
        s.conn.receive_data(s.client.publish(1, "k" * 257))
    assert s.events == events  # no PublishRequested: the owner never looks the key up
    (reply,) = commands(s.client.replies(s.conn.data_to_send()))
    assert reply[1][3]["code"] == "NetStream.Publish.BadName"
    assert "longer than 256" in reply[1][3]["description"]
    # A name at the limit is a normal publish request.
    s2 = Session()
    s2.connect()
    s2.send(s2.client.create_stream())
    (event,) = s2.send(s2.client.publish(1, "k" * 256))
    assert event == PublishRequested(1, "k" * 256, "live", "")


def test_error_messages_do_not_carry_whole_names():
    s = Session()
    s.connect()
    body = amf_encode("y" * 50_000, "not a number")
    with pytest.raises(ProtocolError) as info:
        s.send(s.client.writer.write(3, 20, 0, 0, body))
    assert len(str(info.value)) < 400
