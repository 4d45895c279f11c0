"""What flows from the transcoder to the packager: encoded samples and track descriptions.

Both sides are written against these types only, so the packager can be tested with packets
from any encoder and the transcoder with any sink.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

VIDEO_TIMESCALE = 90_000


class Track(str, Enum):
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True, slots=True)
class VideoTrackInfo:
    """An H.264 track as it will appear in the init segment."""

    avcc: bytes  # AVCDecoderConfigurationRecord (avcC box payload)
    width: int
    height: int
    frame_rate: float
    timescale: int = VIDEO_TIMESCALE


@dataclass(frozen=True, slots=True)
class AudioTrackInfo:
    """An AAC-LC track as it will appear in the init segment."""

    asc: bytes  # AudioSpecificConfig
    sample_rate: int
    channels: int

    @property
    def timescale(self) -> int:
        return self.sample_rate


@dataclass(slots=True)
class EncodedPacket:
    """One encoded sample in its track's timescale (90 kHz for video, the sample rate for audio).

    Video ``data`` is AVCC (4-byte length-prefixed NAL units), audio ``data`` one raw AAC frame.
    ``segment_start`` is set by the transcoder on the video keyframes where every rung starts a
    new segment, so segment numbers and boundaries are identical across renditions.
    """

    track: Track
    pts: int
    dts: int
    duration: int
    keyframe: bool
    data: bytes
    segment_start: bool = False
