"""What a :class:`~mediaserver.rtmp.connection.ServerConnection` reports to its owner.

Plain frozen records, so the asyncio layer can match on them and tests can compare them. Media
events carry unwrapped millisecond timestamps (int) and the payload as ``bytes`` in the form the
container layer wants: length-prefixed NAL units for avc1/hvc1, OBUs for av01, raw frames for
audio, and the codec configuration record (avcC/hvcC/av1C/vpcC, AudioSpecificConfig) for configs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias


@dataclass(frozen=True, slots=True)
class ConnectRequested:
    """The client sent ``connect``; answer with accept_connect() or reject_connect()."""

    transaction_id: float
    app: str
    tc_url: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client sent ``publish``; answer with accept_publish() or reject_publish().

    ``name`` is the stream key without any ``?query`` (which OBS users sometimes append for
    other servers); the query, without the ``?``, is in ``query``.
    """

    stream_id: int
    name: str
    kind: str
    query: str = ""


@dataclass(frozen=True, slots=True)
class MetadataReceived:
    stream_id: int
    metadata: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VideoConfig:
    stream_id: int
    codec: str  # "avc1", "hvc1", "av01" or "vp09"
    data: bytes
    timestamp: int


# Media frames are not frozen: a frozen dataclass sets each field through object.__setattr__,
# which made building one 4x slower, and one is built per frame on the ingest hot path. They
# are still treated as immutable values.
@dataclass(slots=True)
class VideoFrame:
    stream_id: int
    codec: str
    dts: int
    pts: int
    keyframe: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class VideoSequenceEnd:
    stream_id: int
    codec: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class AudioConfig:
    stream_id: int
    codec: str  # "mp4a" (AAC); also "opus"/"flac"/... for enhanced-RTMP audio
    data: bytes
    sample_rate: int
    channels: int
    timestamp: int


@dataclass(slots=True)
class AudioFrame:
    stream_id: int
    codec: str
    timestamp: int
    data: bytes


@dataclass(frozen=True, slots=True)
class PublishEnded:
    """A publish that was requested is over; emitted once per publish.

    ``reason`` is the command that ended it ("FCUnpublish", "deleteStream", "closeStream") or
    "disconnect" when the owner called ServerConnection.close().
    """

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PingResponded:
    """The client answered a PingRequest; ``timestamp`` is the value we sent (ms, 32-bit)."""

    timestamp: int


@dataclass(frozen=True, slots=True)
class MediaIgnored:
    """Media of a kind we cannot use arrived (e.g. VP6 video); reported once per stream/reason
    so the owner can tell the publisher why a track is missing."""

    stream_id: int
    kind: str  # "audio" or "video"
    reason: str


Event: TypeAlias = (
    ConnectRequested
    | PublishRequested
    | MetadataReceived
    | VideoConfig
    | VideoFrame
    | VideoSequenceEnd
    | AudioConfig
    | AudioFrame
    | PublishEnded
    | PingResponded
    | MediaIgnored
)
