"""Codec-agnostic media units handed from ingest to every consumer of a live stream.

They are deliberately independent of RTMP: the transcoder and packager only ever see these, so
another ingest protocol (SRT, WHIP) can feed the same registry later. They live here, at the
bottom, so that ingest and the live registry import ``transcode`` and never the other way round;
the live registry re-exports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MediaKind(str, Enum):
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class CodecConfig:
    """Decoder configuration of one elementary stream (avcC/hvcC/av1C record, or AAC ASC)."""

    kind: MediaKind
    codec: str  # "avc1", "hvc1", "av01", "vp09", "mp4a", "mp3"...
    data: bytes
    sample_rate: int = 0
    channels: int = 0


@dataclass(slots=True)
class MediaPacket:
    """One access unit. Times are in milliseconds on the publisher's clock.

    Shared by every consumer of a stream, so never changed after it is made (derive a new one
    with ``dataclasses.replace``). Not ``frozen``: that sets each field through
    ``object.__setattr__`` and made building one, once per frame on the ingest hot path, 4x
    slower.
    """

    kind: MediaKind
    codec: str
    dts: int
    pts: int
    keyframe: bool
    data: bytes
