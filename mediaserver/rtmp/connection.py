"""The RTMP server connection state machine, without I/O (h11 / aioquic style).

Bytes go in through :meth:`ServerConnection.receive_data`, events come out; replies accumulate
until :meth:`ServerConnection.data_to_send`. Time only enters as the ``now`` argument, so the
owner keeps the timers (handshake/idle/publish timeouts, ping interval) and tests need no clock.

Only the decisions that need the rest of the server -- is this app right, is this stream key
valid -- are left to the owner (accept/reject_connect, accept/reject_publish). Everything an
encoder needs answered to get from ``connect`` to sending media (releaseStream, FCPublish,
createStream, pings, acknowledgements) is answered here, in the form OBS (librtmp) and ffmpeg
expect.

While a connect is awaiting the owner's decision, further messages are held back and processed
by accept_connect(), which returns their events: replies must not overtake the connect result.
"""

from __future__ import annotations

import enum
from typing import Any, cast

from . import amf0
from .amf0 import UNDEFINED
from .chunk import (
    ACKNOWLEDGEMENT,
    AGGREGATE,
    AUDIO,
    BANDWIDTH_DYNAMIC,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    DATA_AMF3,
    DEFAULT_CHUNK_SIZE,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    UC_PING_REQUEST,
    UC_PING_RESPONSE,
    UC_STREAM_BEGIN,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    ChunkWriter,
    Message,
    parse_u32,
    parse_user_control,
    u32,
    user_control,
)
from .errors import ProtocolError
from .events import (
    AudioFrame,
    ConnectRequested,
    Event,
    MediaIgnored,
    MetadataReceived,
    PingResponded,
    PublishEnded,
    PublishRequested,
    VideoFrame,
)
from .handshake import ServerHandshake
from .limits import Limits
from .media import parse_audio, parse_video

# Chunk stream ids we send on.
CSID_CONTROL = 2
CSID_COMMAND = 3
CSID_STREAM = 5

FMS_VERSION = "FMS/3,5,7,7009"
CAPABILITIES = 31.0

# Commands a client may send that need no more than a polite empty _result.
_ACKNOWLEDGED = frozenset(
    (
        "_checkbw",
        "getStreamLength",
        "FCSubscribe",
        "FCUnsubscribe",
        "receiveAudio",
        "receiveVideo",
        "setPeerInfo",
    )
)


# Distinct MediaIgnored reports per connection.
_MAX_REPORTS = 32


class ConnectionState(enum.Enum):
    HANDSHAKE = "handshake"
    AWAIT_CONNECT = "await_connect"
    CONNECT_PENDING = "connect_pending"
    CONNECTED = "connected"
    CLOSED = "closed"


def _as_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or value is UNDEFINED:
        return ""
    return str(value)


class ServerConnection:
    """One client connection, server side. Raises :class:`ProtocolError` only."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self.state = ConnectionState.HANDSHAKE
        self._handshake = ServerHandshake()
        self._reader = ChunkReader(limits)
        # Until a publish is accepted the peer is a stranger: it gets the small setup limit.
        self._reader.limit_message_size(limits.setup_message_size, "max_setup_message_size")
        self._writer = ChunkWriter(DEFAULT_CHUNK_SIZE)
        self._out = bytearray()
        self._connect_tid = 0.0
        self._queued: list[Message] = []
        self._queued_bytes = 0
        self._next_stream_id = 1
        self._streams: set[int] = set()
        # Requested publishes (pending or accepted): message stream id -> stream key.
        self._publish_names: dict[int, str] = {}
        self._pending: set[int] = set()
        self._publishing: set[int] = set()
        # The compiled reader can hand out the common media messages of publishing streams as
        # finished events (its "media lane"): the same events _dispatch would make, without a
        # Python step per frame. It reads this set, so the set is only ever changed in place.
        lane = getattr(self._reader, "media_lane", None)
        if lane is not None:
            lane(self._publishing, VideoFrame, AudioFrame)
        self._reported: set[tuple[int, str, str]] = set()
        self.app = ""
        self.tc_url = ""
        self.bytes_received = 0
        self._last_ack = 0
        self.peer_window_ack_size = limits.window_ack_size
        self._sent_window_ack_size = 0
        self.last_received_at: float | None = None

    # -----------------------------------------------------------------------------------------
    # Properties

    @property
    def closed(self) -> bool:
        return self.state is ConnectionState.CLOSED

    @property
    def publishing(self) -> frozenset[int]:
        """Message stream ids whose publish was accepted and has not ended."""
        return frozenset(self._publishing)

    @property
    def peer_chunk_size(self) -> int:
        return self._reader.chunk_size

    # -----------------------------------------------------------------------------------------
    # Input

    def receive_data(self, data: bytes, now: float = 0.0) -> list[Event]:
        """Feed bytes from the socket; return the events they complete.

        Data after the connection closed (rejected, failed, close()) is ignored.
        """
        events: list[Event] = []
        if self.state is ConnectionState.CLOSED:
            return events
        self.last_received_at = now
        self.bytes_received += len(data)
        try:
            if self.state is ConnectionState.HANDSHAKE:
                used = self._handshake.receive_data(data, now)
                self._out += self._handshake.data_to_send()
                if not self._handshake.done:
                    return events
                self.state = ConnectionState.AWAIT_CONNECT
                data = data[used:]
            messages = self._reader.feed(data)
            if messages:
                self._dispatch(messages, events)
            if self.bytes_received - self._last_ack >= self.peer_window_ack_size:
                self._last_ack = self.bytes_received
                self._out += self._writer.write_control(ACKNOWLEDGEMENT, u32(self.bytes_received))
        except ProtocolError:
            self.state = ConnectionState.CLOSED
            raise
        except Exception as exc:  # a bug must still look like a dead connection to the owner
            self.state = ConnectionState.CLOSED
            raise ProtocolError(f"internal error handling RTMP input: {exc!r}") from exc
        return events

    def _dispatch(self, messages: list[Message], events: list[Event]) -> None:
        if self.state is ConnectionState.CONNECT_PENDING:
            self._queue(messages)
            return
        publishing = self._publishing
        for index, message in enumerate(messages):
            if type(message) is not tuple:  # an event from the reader's media lane
                events.append(cast(Event, message))
                continue
            type_id, stream_id, timestamp, payload = message
            if type_id == VIDEO:
                if stream_id in publishing:
                    event = parse_video(stream_id, timestamp, payload)
                    if event is not None:
                        if type(event) is MediaIgnored:
                            self._report(event, events)
                        else:
                            events.append(event)
            elif type_id == AUDIO:
                if stream_id in publishing:
                    event = parse_audio(stream_id, timestamp, payload)
                    if event is not None:
                        if type(event) is MediaIgnored:
                            self._report(event, events)
                        else:
                            events.append(event)
            else:
                state = self._handle_other(type_id, stream_id, timestamp, payload, events)
                if state is ConnectionState.CONNECT_PENDING:
                    self._queue(messages[index + 1 :])
                    return
                if state is ConnectionState.CLOSED:
                    return

    def _queue(self, messages: list[Message]) -> None:
        for message in messages:
            self._queued_bytes += len(message[3]) + 16
        if self._queued_bytes > self.limits.setup_message_size:
            raise ProtocolError(
                "client sent more than max_setup_message_size bytes before its connect was answered"
            )
        self._queued.extend(messages)

    def clip(self, text: str) -> str:
        """A peer-chosen string as we may repeat it (in a reply or an error message): at most
        ``max_name_length`` characters, so what we send or log never grows with what we got."""
        limit = self.limits.max_name_length
        return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"

    def _report(self, event: MediaIgnored, events: list[Event]) -> None:
        key = (event.stream_id, event.kind, event.reason)
        # Reasons can embed peer bytes (a FourCC): cap the set so it cannot grow without bound.
        if key not in self._reported and len(self._reported) < _MAX_REPORTS:
            self._reported.add(key)
            events.append(event)

    def _handle_other(
        self, type_id: int, stream_id: int, timestamp: int, payload: bytes, events: list[Event]
    ) -> ConnectionState:
        """Handle a non-media message; returns the state it leaves the connection in (a
        command can pause it for the owner's connect decision, or close it)."""
        if type_id == COMMAND_AMF0:
            self._handle_command(stream_id, payload, events)
        elif type_id == COMMAND_AMF3:
            # An "AMF3 command" is a format byte (0) followed by AMF0 values; any real AMF3
            # value inside is refused by the AMF0 decoder.
            self._handle_command(
                stream_id, payload[1:] if payload[:1] == b"\x00" else payload, events
            )
        elif type_id == DATA_AMF0 or type_id == DATA_AMF3:
            if type_id == DATA_AMF3 and payload[:1] == b"\x00":
                payload = payload[1:]
            self._handle_data(stream_id, payload, events)
        elif type_id == USER_CONTROL:
            event_type, value = parse_user_control(payload)
            if event_type == UC_PING_REQUEST:
                self._out += self._writer.write_control(
                    USER_CONTROL, user_control(UC_PING_RESPONSE, value)
                )
            elif event_type == UC_PING_RESPONSE:
                events.append(PingResponded(value))
        elif type_id == WINDOW_ACK_SIZE:
            size = parse_u32(payload, "Window Acknowledgement Size")
            if size == 0:
                raise ProtocolError("Window Acknowledgement Size of 0")
            self.peer_window_ack_size = size
        elif type_id == SET_PEER_BANDWIDTH:
            size = parse_u32(payload, "Set Peer Bandwidth")
            if size and size != self._sent_window_ack_size:
                # The spec asks the receiver to answer with its window if it differs.
                self._send_window_ack_size(size)
        elif type_id == AGGREGATE:
            if stream_id in self._publishing:
                self._handle_aggregate(stream_id, timestamp, payload, events)
        # ACKNOWLEDGEMENT, shared objects and unknown types: nothing to do.
        return self.state

    # -----------------------------------------------------------------------------------------
    # Commands

    def _handle_command(self, stream_id: int, body: bytes, events: list[Event]) -> None:
        depth = self.limits.max_amf_depth
        # Without a name and transaction id there is nobody to answer: the error closes us.
        name, pos = amf0.decode(body, 0, max_depth=depth)
        if not isinstance(name, str):
            raise ProtocolError(f"command name is {type(name).__name__}, not a string")
        tid = 0.0
        if pos < len(body):
            tid, pos = amf0.decode(body, pos, max_depth=depth)
            if not isinstance(tid, float):
                raise ProtocolError(f"transaction id of {self.clip(name)!r} is not a number")
        try:
            args = amf0.decode_all(body[pos:], max_depth=depth)
        except ProtocolError as exc:
            if not tid:
                raise
            self._call_failed(tid, f"cannot decode arguments of {self.clip(name)!r}: {exc}")
            return
        command_object = args[0] if args else None
        rest = args[1:]
        state = self.state
        if name == "connect":
            if state is not ConnectionState.AWAIT_CONNECT:
                self._call_failed(tid, "already connected")
                return
            params = dict(command_object) if isinstance(command_object, dict) else {}
            self.app = _as_str(params.get("app"))
            self.tc_url = _as_str(params.get("tcUrl"))
            self._connect_tid = tid
            self.state = ConnectionState.CONNECT_PENDING
            events.append(ConnectRequested(tid, self.app, self.tc_url, params))
            return
        if state is not ConnectionState.CONNECTED:
            if tid and not name.startswith("_"):
                self._call_failed(tid, f"{self.clip(name)!r} before connect")
            return
        if name == "createStream":
            if len(self._streams) >= self.limits.max_message_streams:
                self._call_failed(tid, "too many streams on this connection")
                return
            new_id = self._next_stream_id
            self._next_stream_id += 1
            self._streams.add(new_id)
            self._result(tid, None, float(new_id))
        elif name == "publish":
            self._handle_publish(stream_id, rest, events)
        elif name == "releaseStream":
            if tid:
                self._result(tid, None, UNDEFINED)
        elif name == "FCPublish":
            key = _as_str(rest[0]) if rest else ""
            self._command(
                CSID_COMMAND,
                0,
                "onFCPublish",
                0.0,
                None,
                {"code": "NetStream.Publish.Start", "description": self.clip(key)},
            )
            if tid:
                self._result(tid, None, UNDEFINED)
        elif name == "FCUnpublish":
            key = _as_str(rest[0]).split("?", 1)[0] if rest else ""
            self._command(
                CSID_COMMAND,
                0,
                "onFCUnpublish",
                0.0,
                None,
                {"code": "NetStream.Unpublish.Success", "description": self.clip(key)},
            )
            if tid:
                self._result(tid, None, UNDEFINED)
            target = self._find_publish(key)
            if target is not None:
                self._end_publish(target, "FCUnpublish", events)
        elif name == "deleteStream":
            target = rest[0] if rest else None
            if isinstance(target, float) and target.is_integer():
                self._end_publish(int(target), "deleteStream", events)
                self._streams.discard(int(target))
        elif name == "closeStream":
            self._end_publish(stream_id, "closeStream", events)
        elif name in ("play", "play2"):
            self._on_status(
                stream_id, "error", "NetStream.Play.Failed", "This server accepts publishing only."
            )
        elif name in _ACKNOWLEDGED:
            if tid:
                self._result(tid, None, UNDEFINED)
        elif name.startswith(("_", "on")):
            pass  # replies and notifications from the client: nothing to answer
        elif tid:
            self._call_failed(tid, f"unknown command {self.clip(name)!r}")

    def _handle_publish(self, stream_id: int, rest: list[Any], events: list[Event]) -> None:
        if stream_id in self._publish_names:
            self._on_status(
                stream_id,
                "error",
                "NetStream.Publish.BadConnection",
                "This stream is already publishing.",
            )
            return
        raw_name = _as_str(rest[0]) if rest else ""
        limit = self.limits.max_name_length
        if len(raw_name) > limit:
            # No key is that long: refuse before the owner spends a key lookup on it.
            self._on_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                f"stream name longer than {limit} characters",
            )
            raise ProtocolError(
                f"publish name of {len(raw_name)} characters exceeds max_name_length={limit}"
            )
        kind = self.clip(_as_str(rest[1])) if len(rest) > 1 else ""
        name, _, query = raw_name.partition("?")
        self._streams.add(stream_id)
        self._publish_names[stream_id] = name
        self._pending.add(stream_id)
        events.append(PublishRequested(stream_id, name, kind or "live", query))

    def _find_publish(self, key: str) -> int | None:
        for stream_id, name in self._publish_names.items():
            if name == key:
                return stream_id
        if len(self._publish_names) == 1:
            return next(iter(self._publish_names))
        return None

    def _end_publish(self, stream_id: int, reason: str, events: list[Event]) -> None:
        name = self._publish_names.pop(stream_id, None)
        if name is None:
            return
        self._pending.discard(stream_id)
        self._publishing.discard(stream_id)
        events.append(PublishEnded(stream_id, reason))
        self._on_status(
            stream_id, "status", "NetStream.Unpublish.Success", f"{name} is now unpublished."
        )

    def _handle_data(self, stream_id: int, body: bytes, events: list[Event]) -> None:
        if stream_id not in self._publishing:
            return
        try:
            values = amf0.decode_all(body, max_depth=self.limits.max_amf_depth)
        except ProtocolError as exc:
            self._report(
                MediaIgnored(stream_id, "data", f"undecodable data message: {exc}"), events
            )
            return
        if values and values[0] == "@setDataFrame":
            values = values[1:]
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            events.append(MetadataReceived(stream_id, dict(values[1])))

    def _handle_aggregate(
        self, stream_id: int, timestamp: int, body: bytes, events: list[Event]
    ) -> None:
        """Type 22: FLV tags back to back, timestamps relative to the first tag's."""
        pos = 0
        n = len(body)
        base: int | None = None
        while pos < n:
            if pos + 11 > n:
                raise ProtocolError("truncated tag header in aggregate message")
            tag_type = body[pos]
            size = int.from_bytes(body[pos + 1 : pos + 4], "big")
            tag_ts = int.from_bytes(body[pos + 4 : pos + 7], "big") | body[pos + 7] << 24
            start = pos + 11
            end = start + size
            if end > n:
                raise ProtocolError("tag in aggregate message runs past its end")
            if base is None:
                base = tag_ts
            ts = timestamp + ((tag_ts - base + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            tag = body[start:end]
            event: Event | None = None
            if tag_type == VIDEO:
                event = parse_video(stream_id, ts, tag)
            elif tag_type == AUDIO:
                event = parse_audio(stream_id, ts, tag)
            elif tag_type == DATA_AMF0:
                self._handle_data(stream_id, tag, events)
            if event is not None:
                if type(event) is MediaIgnored:
                    self._report(event, events)
                else:
                    events.append(event)
            pos = end + 4  # skip the back pointer

    # -----------------------------------------------------------------------------------------
    # Output

    def data_to_send(self) -> bytes:
        """Return and clear everything queued for the peer."""
        if not self._out:
            return b""
        out = bytes(self._out)
        self._out.clear()
        return out

    def _command(self, csid: int, stream_id: int, *values: Any) -> None:
        self._out += self._writer.write(csid, COMMAND_AMF0, stream_id, 0, amf0.encode_all(*values))

    def _result(self, tid: float, *values: Any) -> None:
        self._command(CSID_COMMAND, 0, "_result", tid, *values)

    def _call_failed(self, tid: float, description: str) -> None:
        if tid:
            self._command(
                CSID_COMMAND,
                0,
                "_error",
                tid,
                None,
                {"level": "error", "code": "NetConnection.Call.Failed", "description": description},
            )

    def _on_status(
        self, stream_id: int, level: str, code: str, description: str, **extra: Any
    ) -> None:
        info = {"level": level, "code": code, "description": description, **extra}
        self._command(CSID_STREAM, stream_id, "onStatus", 0.0, None, info)

    def _send_window_ack_size(self, size: int) -> None:
        self._sent_window_ack_size = size
        self._out += self._writer.write_control(WINDOW_ACK_SIZE, u32(size))

    def accept_connect(self) -> list[Event]:
        """Answer the pending connect with success, as OBS and ffmpeg expect.

        Returns the events of messages that arrived while the decision was pending (usually
        none: clients wait for the connect result).
        """
        if self.state is not ConnectionState.CONNECT_PENDING:
            raise RuntimeError(f"no connect to accept (state {self.state.value})")
        window = self.limits.window_ack_size
        self._send_window_ack_size(window)
        self._out += self._writer.write_control(
            SET_PEER_BANDWIDTH, u32(window) + bytes((BANDWIDTH_DYNAMIC,))
        )
        chunk_size = self.limits.out_chunk_size
        self._out += self._writer.write_control(SET_CHUNK_SIZE, u32(chunk_size))
        self._writer.chunk_size = chunk_size
        self._result(
            self._connect_tid,
            {"fmsVer": FMS_VERSION, "capabilities": CAPABILITIES, "mode": 1.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        )
        self.state = ConnectionState.CONNECTED
        return self._drain_queue()

    def reject_connect(self, description: str) -> None:
        """Answer the pending connect with NetConnection.Connect.Rejected; then close."""
        if self.state is not ConnectionState.CONNECT_PENDING:
            raise RuntimeError(f"no connect to reject (state {self.state.value})")
        self._command(
            CSID_COMMAND,
            0,
            "_error",
            self._connect_tid,
            None,
            {
                "level": "error",
                "code": "NetConnection.Connect.Rejected",
                "description": description,
            },
        )
        self.state = ConnectionState.CLOSED
        self._queued = []

    def _drain_queue(self) -> list[Event]:
        events: list[Event] = []
        queued, self._queued, self._queued_bytes = self._queued, [], 0
        if queued:
            try:
                self._dispatch(queued, events)
            except ProtocolError:
                self.state = ConnectionState.CLOSED
                raise
            except Exception as exc:
                self.state = ConnectionState.CLOSED
                raise ProtocolError(f"internal error handling RTMP input: {exc!r}") from exc
        return events

    def accept_publish(self, stream_id: int) -> None:
        """Start the requested publish on ``stream_id``; media is delivered from now on.

        A no-op if the publish ended (or the connection closed) while it was being decided.
        """
        if stream_id not in self._pending or self.closed:
            return
        self._pending.discard(stream_id)
        self._publishing.add(stream_id)
        # The peer holds a valid key now: media messages may be as large as the limits allow.
        self._reader.limit_message_size(self.limits.max_message_size, "max_message_size")
        name = self._publish_names[stream_id]
        self._out += self._writer.write_control(
            USER_CONTROL, user_control(UC_STREAM_BEGIN, stream_id)
        )
        self._on_status(
            stream_id,
            "status",
            "NetStream.Publish.Start",
            f"{name} is now published.",
            details=name,
        )

    def reject_publish(self, stream_id: int, description: str) -> None:
        """Refuse the requested publish (NetStream.Publish.BadName); then close the socket."""
        if stream_id not in self._pending or self.closed:
            return
        self._pending.discard(stream_id)
        self._publish_names.pop(stream_id, None)
        self._on_status(stream_id, "error", "NetStream.Publish.BadName", description)

    def send_ping(self, now: float) -> None:
        """Queue a PingRequest carrying ``now`` in ms; the answer is a PingResponded event."""
        self._out += self._writer.write_control(
            USER_CONTROL, user_control(UC_PING_REQUEST, int(now * 1000))
        )

    def close(self, reason: str = "disconnect") -> list[Event]:
        """The owner is dropping the connection: end every requested publish once."""
        events: list[Event] = []
        for stream_id in list(self._publish_names):
            self._publish_names.pop(stream_id)
            events.append(PublishEnded(stream_id, reason))
        self._pending.clear()
        self._publishing.clear()
        self.state = ConnectionState.CLOSED
        return events


__all__ = ["ConnectionState", "ServerConnection"]
