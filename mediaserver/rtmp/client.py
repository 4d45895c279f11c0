"""The RTMP client (publisher) connection state machine, without I/O: the restream side.

The mirror of :class:`~mediaserver.rtmp.connection.ServerConnection`: bytes from the server go
in through :meth:`ClientConnection.receive_data` and events come out; what to send accumulates
until :meth:`ClientConnection.data_to_send`. Time only enters as ``now``; the one deadline (the
publish must start within ``setup_timeout``) is data the owner reads with :meth:`get_timer` and
fires with :meth:`handle_timer`, as aioquic does.

The setup runs by itself once constructed, in the order and form encoders use (ffmpeg, OBS):
handshake; Set Chunk Size; ``connect``; after its ``_result`` ``releaseStream``, ``FCPublish``
and ``createStream``; after that ``publish`` on the new stream. The owner acts only on the
outcome: :class:`PublishStarted` (send media) or a rejection/time-out (the connection is
closed; retry later). Pings, acknowledgements, chunk size and window changes are answered here.

Sending never blocks and never grows without bound: media is refused (``False``) once
``max_buffered`` bytes wait in the output, and the owner decides what to drop (usually
everything up to the next keyframe); protocol replies are always queued. The owner should
take ``data_to_send`` only as fast as its socket drains, so the bound measures the backlog.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from . import amf0
from .amf0 import EcmaArray
from .chunk import (
    ACKNOWLEDGEMENT,
    AUDIO,
    COMMAND_AMF0,
    COMMAND_AMF3,
    DATA_AMF0,
    SET_CHUNK_SIZE,
    SET_PEER_BANDWIDTH,
    UC_PING_REQUEST,
    UC_PING_RESPONSE,
    USER_CONTROL,
    VIDEO,
    WINDOW_ACK_SIZE,
    ChunkReader,
    parse_user_control,
    u32,
    user_control,
)
from .chunk_out import MessageChunker
from .client_events import (
    ClientEvent,
    ConnectAccepted,
    PublishStarted,
    PublishStopped,
    RequestRejected,
    SetupTimedOut,
    StatusReceived,
    StreamCreated,
)
from .client_handshake import ClientHandshake
from .errors import ProtocolError
from .events import (
    AudioConfig,
    AudioFrame,
    MetadataReceived,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
)
from .limits import Limits
from .media_write import CONFIG, END, FRAME, audio_header, video_header
from .target import PublishTarget
from .windows import Windows

# Chunk stream ids we send on (the ones ffmpeg and the test client use for the same roles).
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_AUDIO: Final = 4
CSID_DATA: Final = 5
CSID_VIDEO: Final = 6

FLASH_VER: Final = "FMLE/3.0 (compatible; AeThex Live)"
_MAX_LENGTH: Final = 0xFFFFFF


class ClientState(enum.Enum):
    HANDSHAKE = "handshake"
    CONNECTING = "connect"  # connect sent, waiting for its _result
    CREATING_STREAM = "createStream"
    PUBLISH_REQUESTED = "publish"
    PUBLISHING = "publishing"
    CLOSED = "closed"


_SETUP: Final = frozenset(
    (
        ClientState.HANDSHAKE,
        ClientState.CONNECTING,
        ClientState.CREATING_STREAM,
        ClientState.PUBLISH_REQUESTED,
    )
)


class ClientConnection:
    """One publishing connection to an RTMP server. Raises :class:`ProtocolError` only for
    what the server sends; ValueError/RuntimeError mean the owner misused it."""

    def __init__(
        self,
        target: PublishTarget,
        limits: Limits = Limits(),
        *,
        now: float = 0.0,
        setup_timeout: float = 10.0,
        max_buffered: int = 4 << 20,
        flash_ver: str = FLASH_VER,
        fourcc_list: Sequence[str] | None = None,
        digest_handshake: bool = True,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not setup_timeout > 0:
            raise ValueError(f"setup_timeout must be positive, got {setup_timeout}")
        if max_buffered < 1:
            raise ValueError(f"max_buffered must be at least 1, got {max_buffered}")
        self.target = target
        self.limits = limits
        self.max_buffered = max_buffered
        self.state = ClientState.HANDSHAKE
        self._flash_ver = flash_ver
        self._fourcc_list = list(fourcc_list) if fourcc_list is not None else None
        self._deadline = now + setup_timeout
        self._handshake = ClientHandshake(
            now=now, digest=digest_handshake, random_bytes=random_bytes
        )
        self._reader = ChunkReader(limits)
        # A server only ever sends us small commands: never let it make us buffer more.
        self._reader.limit_message_size(limits.setup_message_size, "max_setup_message_size")
        self._chunker = MessageChunker()
        self._out: list[bytes] = [self._handshake.data_to_send()]
        self._buffered = len(self._out[0])
        self._next_tid = 1
        self._pending: dict[float, str] = {}  # transaction id -> command awaiting an answer
        self.stream_id = 0
        self.bytes_sent = 0
        self.windows = Windows(limits.window_ack_size)
        self.last_received_at: float | None = None
        self.refused = 0  # media messages refused (output full or too large)

    # -----------------------------------------------------------------------------------------
    # Properties

    @property
    def closed(self) -> bool:
        return self.state is ClientState.CLOSED

    @property
    def publishing(self) -> bool:
        return self.state is ClientState.PUBLISHING

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet taken by :meth:`data_to_send`."""
        return self._buffered

    @property
    def chunk_size(self) -> int:
        """The chunk size of what we send."""
        return self._chunker.chunk_size

    @property
    def peer_chunk_size(self) -> int:
        return self._reader.chunk_size

    @property
    def bytes_received(self) -> int:
        return self.windows.bytes_received

    @property
    def unacknowledged(self) -> int:
        """Bytes sent that the server has not acknowledged (when it acknowledges at all)."""
        return self.bytes_sent - self.windows.peer_acknowledged

    # -----------------------------------------------------------------------------------------
    # Timer

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must run next (the setup deadline), or None."""
        return self._deadline if self.state in _SETUP else None

    def handle_timer(self, now: float) -> list[ClientEvent]:
        if self.state not in _SETUP or now < self._deadline:
            return []
        stage = self.state.value
        self.state = ClientState.CLOSED
        return [SetupTimedOut(stage)]

    # -----------------------------------------------------------------------------------------
    # Input

    def receive_data(
        self, data: bytes | bytearray | memoryview, now: float = 0.0
    ) -> list[ClientEvent]:
        """Feed bytes from the socket; return the events they complete. Data after the
        connection closed is ignored."""
        events: list[ClientEvent] = []
        if self.state is ClientState.CLOSED:
            return events
        self.last_received_at = now
        self.windows.bytes_received += len(data)
        try:
            if self.state is ClientState.HANDSHAKE:
                used = self._handshake.receive_data(data)
                self._queue(self._handshake.data_to_send())
                if not self._handshake.done:
                    return events
                self._start_connect()
                data = memoryview(data)[used:]
            messages = self._reader.feed(data)
            for type_id, stream_id, _, payload in messages:
                self._handle(type_id, stream_id, payload, events)
                if self.closed:
                    return events
            ack = self.windows.ack_due()
            if ack is not None:
                self._control(ACKNOWLEDGEMENT, u32(ack))
        except ProtocolError:
            self.state = ClientState.CLOSED
            raise
        except Exception as exc:  # a bug must still look like a dead connection to the owner
            self.state = ClientState.CLOSED
            raise ProtocolError(f"internal error handling RTMP input: {exc!r}") from exc
        return events

    def _handle(
        self, type_id: int, stream_id: int, payload: bytes, events: list[ClientEvent]
    ) -> None:
        if type_id == COMMAND_AMF0:
            self._on_command(stream_id, payload, events)
        elif type_id == COMMAND_AMF3:
            self._on_command(stream_id, payload[1:] if payload[:1] == b"\x00" else payload, events)
        elif type_id == USER_CONTROL:
            event_type, value = parse_user_control(payload)
            if event_type == UC_PING_REQUEST:
                self._control(USER_CONTROL, user_control(UC_PING_RESPONSE, value))
        elif type_id == WINDOW_ACK_SIZE:
            self.windows.on_window_ack_size(payload)
        elif type_id == SET_PEER_BANDWIDTH:
            window = self.windows.on_peer_bandwidth(payload)
            if window is not None:
                self._control(WINDOW_ACK_SIZE, u32(window))
        elif type_id == ACKNOWLEDGEMENT:
            self.windows.on_acknowledgement(payload, self.bytes_sent)
        # Media, data and shared-object messages from a server we publish to: nothing to do.

    # -----------------------------------------------------------------------------------------
    # Commands

    def _text(self, value: Any) -> str:
        """A peer string as we may report it: the key redacted, the length clipped."""
        text = value if isinstance(value, str) else ""
        key = self.target.stream_key
        if key and key in text:
            text = text.replace(key, "<key>")
        limit = self.limits.max_name_length
        return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"

    def _on_command(self, stream_id: int, body: bytes, events: list[ClientEvent]) -> None:
        depth = self.limits.max_amf_depth
        name, pos = amf0.decode(body, 0, max_depth=depth)
        if not isinstance(name, str):
            raise ProtocolError(f"command name is {type(name).__name__}, not a string")
        tid = 0.0
        if pos < len(body):
            tid, pos = amf0.decode(body, pos, max_depth=depth)
            if not isinstance(tid, float):
                raise ProtocolError(f"transaction id of {self._text(name)!r} is not a number")
        args = amf0.decode_all(body[pos:], max_depth=depth)
        if name == "_result" or name == "_error":
            command = self._pending.pop(tid, None)
            if command is not None:
                self._on_answer(command, name == "_result", args, events)
        elif name == "onStatus":
            self._on_status(stream_id, _info(args), events)
        elif name in ("onFCPublish", "onFCUnpublish"):
            info = _info(args)
            events.append(
                StatusReceived(
                    stream_id,
                    self._text(info.get("level")) or "status",
                    self._text(info.get("code")),
                    self._text(info.get("description")),
                )
            )
        # onBWDone, _checkbw, |RtmpSampleAccess and the like ask nothing of a publisher.

    def _on_answer(
        self, command: str, ok: bool, args: list[Any], events: list[ClientEvent]
    ) -> None:
        state = self.state
        if command == "connect" and state is ClientState.CONNECTING:
            if not ok:
                self._reject("connect", _info(args), events)
                return
            props = args[0] if args and isinstance(args[0], dict) else {}
            info = args[1] if len(args) > 1 and isinstance(args[1], dict) else {}
            events.append(ConnectAccepted(dict(props), dict(info)))
            key = self.target.stream_key
            self._call("releaseStream", key, track=False)
            self._call("FCPublish", key, track=False)
            self._call("createStream")
            self.state = ClientState.CREATING_STREAM
        elif command == "createStream" and state is ClientState.CREATING_STREAM:
            if not ok:
                self._reject("createStream", _info(args), events)
                return
            value = args[1] if len(args) > 1 else None
            if not isinstance(value, float) or not value.is_integer() or not 0 <= value < 2**32:
                raise ProtocolError(f"createStream answered without a stream id ({value!r})")
            self.stream_id = int(value)
            events.append(StreamCreated(self.stream_id))
            self._call("publish", self.target.stream_key, "live", stream_id=self.stream_id)
            self.state = ClientState.PUBLISH_REQUESTED
        elif command == "publish" and state is ClientState.PUBLISH_REQUESTED and not ok:
            self._reject("publish", _info(args), events)
        # Answers to releaseStream/FCPublish (servers differ: _result, _error or nothing).

    def _on_status(self, stream_id: int, info: dict[str, Any], events: list[ClientEvent]) -> None:
        code = self._text(info.get("code"))
        level = self._text(info.get("level"))
        description = self._text(info.get("description"))
        if code == "NetStream.Publish.Start" and self.state is ClientState.PUBLISH_REQUESTED:
            self.state = ClientState.PUBLISHING
            events.append(PublishStarted(self.stream_id, description))
        elif level == "error" and self.state is ClientState.PUBLISHING:
            self.state = ClientState.CLOSED
            events.append(PublishStopped(code, description))
        elif level == "error":
            self._reject(self.state.value, info, events)
        else:
            events.append(StatusReceived(stream_id, level, code, description))

    def _reject(self, stage: str, info: dict[str, Any], events: list[ClientEvent]) -> None:
        self.state = ClientState.CLOSED
        events.append(
            RequestRejected(
                stage, self._text(info.get("code")), self._text(info.get("description"))
            )
        )

    # -----------------------------------------------------------------------------------------
    # Output

    def data_to_send(self) -> bytes:
        """Return and clear everything queued for the server."""
        out = self.pieces_to_send()
        return out[0] if len(out) == 1 else b"".join(out)

    def pieces_to_send(self) -> list[bytes]:
        """Return and clear everything queued for the server, as the messages were queued:
        for a transport's ``writelines``, so a relay's frames are not joined (copied) again
        on their way to the socket."""
        out = self._out
        if out:
            self._out = []
            self.bytes_sent += self._buffered
            self._buffered = 0
        return out

    def _queue(self, data: bytes) -> None:
        if data:
            self._out.append(data)
            self._buffered += len(data)

    def _control(self, type_id: int, payload: bytes) -> None:
        self._queue(self._chunker.message(CSID_CONTROL, type_id, 0, 0, b"", payload))

    def _call(self, name: str, *args: Any, stream_id: int = 0, track: bool = True) -> None:
        tid = float(self._next_tid)
        self._next_tid += 1
        if track:
            self._pending[tid] = name
        body = amf0.encode_all(name, tid, None, *args)
        self._queue(self._chunker.message(CSID_COMMAND, COMMAND_AMF0, stream_id, 0, b"", body))

    def _start_connect(self) -> None:
        size = self.limits.out_chunk_size
        self._control(SET_CHUNK_SIZE, u32(size))
        self._chunker.chunk_size = size
        command: dict[str, Any] = {
            "app": self.target.app,
            "type": "nonprivate",
            "flashVer": self._flash_ver,
            "tcUrl": self.target.tc_url,
        }
        if self._fourcc_list is not None:
            command["fourCcList"] = list(self._fourcc_list)
        tid = float(self._next_tid)
        self._next_tid += 1
        self._pending[tid] = "connect"
        body = amf0.encode_all("connect", tid, command)
        self._queue(self._chunker.message(CSID_COMMAND, COMMAND_AMF0, 0, 0, b"", body))
        self.state = ClientState.CONNECTING

    def _media(
        self, csid: int, type_id: int, timestamp: int, head: bytes, data: bytes | memoryview
    ) -> bool:
        if timestamp < 0:
            # The wire has no sign: -1 would arrive as 49 days. Sources that start below zero
            # (B-frames in MP4) are the owner's to shift.
            raise ValueError(f"negative timestamp {timestamp} ms")
        if self.state is not ClientState.PUBLISHING:
            return False
        length = len(head) + len(data)
        if length > _MAX_LENGTH or (self._buffered and self._buffered + length > self.max_buffered):
            self.refused += 1
            return False
        self._queue(self._chunker.message(csid, type_id, self.stream_id, timestamp, head, data))
        return True

    def send_metadata(self, metadata: Mapping[str, Any], timestamp: int = 0) -> bool:
        """``@setDataFrame onMetaData`` with ``metadata`` (an ECMA array, as encoders send).

        Raises TypeError/ValueError for values AMF0 cannot carry.
        """
        body = amf0.encode_all("@setDataFrame", "onMetaData", EcmaArray(metadata))
        return self._media(CSID_DATA, DATA_AMF0, timestamp, b"", body)

    def send_video_config(self, codec: str, config: bytes, timestamp: int = 0) -> bool:
        """The decoder configuration record (avcC, hvcC, av1C, vpcC) of ``codec``."""
        return self._media(CSID_VIDEO, VIDEO, timestamp, video_header(codec, CONFIG), config)

    def send_video(
        self, codec: str, dts: int, pts: int, keyframe: bool, data: bytes | memoryview
    ) -> bool:
        """One video frame (length-prefixed NAL units for avc1/hvc1, OBUs for av01)."""
        head = video_header(codec, FRAME, keyframe=keyframe, cto=pts - dts)
        return self._media(CSID_VIDEO, VIDEO, dts, head, data)

    def send_video_end(self, codec: str, timestamp: int) -> bool:
        return self._media(CSID_VIDEO, VIDEO, timestamp, video_header(codec, END), b"")

    def send_audio_config(self, codec: str, config: bytes, timestamp: int = 0) -> bool:
        """The audio configuration (AudioSpecificConfig, OpusHead, ...); True when the codec
        has none to send."""
        head = audio_header(codec, CONFIG)
        return self._media(CSID_AUDIO, AUDIO, timestamp, head, config) if head else True

    def send_audio(self, codec: str, timestamp: int, data: bytes | memoryview) -> bool:
        return self._media(CSID_AUDIO, AUDIO, timestamp, audio_header(codec, FRAME), data)

    def send(
        self,
        event: VideoConfig
        | VideoFrame
        | VideoSequenceEnd
        | AudioConfig
        | AudioFrame
        | MetadataReceived,
    ) -> bool:
        """Send what a server connection reported, unchanged: relaying one RTMP to another."""
        if isinstance(event, VideoFrame):
            return self.send_video(event.codec, event.dts, event.pts, event.keyframe, event.data)
        if isinstance(event, AudioFrame):
            return self.send_audio(event.codec, event.timestamp, event.data)
        if isinstance(event, VideoConfig):
            return self.send_video_config(event.codec, event.data, event.timestamp)
        if isinstance(event, AudioConfig):
            return self.send_audio_config(event.codec, event.data, event.timestamp)
        if isinstance(event, VideoSequenceEnd):
            return self.send_video_end(event.codec, event.timestamp)
        return self.send_metadata(event.metadata)

    def unpublish(self) -> None:
        """End the publish politely (FCUnpublish, deleteStream) and close; send what is queued
        before closing the socket."""
        if self.state in (ClientState.PUBLISHING, ClientState.PUBLISH_REQUESTED):
            self._call("FCUnpublish", self.target.stream_key, track=False)
            self._call("deleteStream", float(self.stream_id), track=False)
        self.state = ClientState.CLOSED

    def close(self) -> None:
        """Stop: nothing more is sent or processed."""
        self.state = ClientState.CLOSED


def _info(args: list[Any]) -> dict[str, Any]:
    """The information object of an answer or status: the last object among the arguments
    (before it comes a command object that most servers leave null, but not all)."""
    for value in reversed(args):
        if isinstance(value, dict):
            return value
    return {}


__all__ = ["ClientConnection", "ClientState"]
