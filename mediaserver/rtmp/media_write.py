"""FLV / Enhanced RTMP tag headers for what we send: the writing side of :mod:`.media`.

Only the few bytes in front of a frame are built here; the frame itself (length-prefixed NAL
units, OBUs, a raw audio frame, or a codec configuration record) is passed on untouched, so the
chunk writer can send it without another copy.

Choices, and why:
- H.264 goes out in the legacy layout (codec id 7): every RTMP server and platform takes it,
  and the Enhanced RTMP ``avc1`` form adds nothing for one track.
- HEVC, AV1 and VP9 go out as Enhanced RTMP (v1) with their FourCC: the legacy "codec id 12"
  HEVC is a regional extension that platforms disagree on. HEVC frames without a composition
  offset use CodedFramesX, which saves the three offset bytes (as ffmpeg does).
- AAC goes out as sound format 10 with the fixed 0xAF byte the FLV spec prescribes whatever
  the real rate and channels; MP3 as legacy format 2; Opus, FLAC, AC-3 and E-AC-3 as Enhanced
  RTMP audio with their FourCC.
"""

from __future__ import annotations

from typing import Final

from .media import (
    AUDIO_CODED_FRAMES,
    AUDIO_SEQUENCE_END,
    AUDIO_SEQUENCE_START,
    VIDEO_CODED_FRAMES,
    VIDEO_CODED_FRAMES_X,
    VIDEO_SEQUENCE_END,
    VIDEO_SEQUENCE_START,
)

# Which packet a header introduces.
CONFIG: Final = "config"
FRAME: Final = "frame"
END: Final = "end"

_KEYFRAME: Final = 1
_INTER: Final = 2

VIDEO_FOURCCS: Final = {"hvc1": b"hvc1", "av01": b"av01", "vp09": b"vp09"}
AUDIO_FOURCCS: Final = {
    "opus": b"Opus",
    "flac": b"fLaC",
    "ac-3": b"ac-3",
    "ec-3": b"ec-3",
}
# Codecs whose CodedFrames carry a composition time offset.
_CTO_CODECS: Final = frozenset(("avc1", "hvc1"))

VIDEO_CODECS: Final = frozenset(("avc1", *VIDEO_FOURCCS))
AUDIO_CODECS: Final = frozenset(("mp4a", "mp3", *AUDIO_FOURCCS))

# Composition offsets are signed 24-bit on the wire.
_CTO_MIN: Final = -(1 << 23)
_CTO_MAX: Final = (1 << 23) - 1

_AVC_CONFIG: Final = bytes((_KEYFRAME << 4 | 7, 0, 0, 0, 0))
_AVC_END: Final = bytes((_KEYFRAME << 4 | 7, 2, 0, 0, 0))
_AAC_CONFIG: Final = b"\xaf\x00"
_AAC_FRAME: Final = b"\xaf\x01"
_MP3_FRAME: Final = b"\x2f"


# H.264 frame headers by (keyframe, composition offset): a relay builds one per frame per
# destination, and a stream uses a handful of offsets. Bounded: a source with offsets all over
# the 24-bit range only stops adding to it.
_AVC_FRAMES: dict[tuple[bool, int], bytes] = {}
_AVC_FRAMES_MAX: Final = 1024


def _si24(value: int) -> bytes:
    value = min(max(value, _CTO_MIN), _CTO_MAX)
    return (value & 0xFFFFFF).to_bytes(3, "big")


def video_header(codec: str, kind: str, *, keyframe: bool = True, cto: int = 0) -> bytes:
    """The bytes in front of a video payload of ``kind`` (CONFIG, FRAME or END).

    ``cto`` is PTS - DTS in ms; an offset beyond the 24-bit field is clamped (only a broken
    source produces one, and clamping keeps the relay going). Raises ValueError for a codec
    RTMP cannot carry: the caller chose it, the peer did not.
    """
    if codec == "avc1":
        if kind == FRAME:
            key = (keyframe, cto)
            head = _AVC_FRAMES.get(key)
            if head is None:
                b0 = (_KEYFRAME if keyframe else _INTER) << 4 | 7
                head = bytes((b0, 1)) + _si24(cto)
                if len(_AVC_FRAMES) < _AVC_FRAMES_MAX:
                    _AVC_FRAMES[key] = head
            return head
        if kind == CONFIG:
            return _AVC_CONFIG
        if kind == END:
            return _AVC_END
        raise ValueError(f"unknown video packet kind {kind!r}")
    fourcc = VIDEO_FOURCCS.get(codec)
    if fourcc is None:
        raise ValueError(f"video codec {codec!r} cannot be sent over RTMP")
    if kind == FRAME:
        frame_type = _KEYFRAME if keyframe else _INTER
        if codec in _CTO_CODECS and cto:
            return bytes((0x80 | frame_type << 4 | VIDEO_CODED_FRAMES,)) + fourcc + _si24(cto)
        packet = VIDEO_CODED_FRAMES_X if codec in _CTO_CODECS else VIDEO_CODED_FRAMES
        return bytes((0x80 | frame_type << 4 | packet,)) + fourcc
    if kind == CONFIG:
        return bytes((0x80 | _KEYFRAME << 4 | VIDEO_SEQUENCE_START,)) + fourcc
    if kind == END:
        return bytes((0x80 | _KEYFRAME << 4 | VIDEO_SEQUENCE_END,)) + fourcc
    raise ValueError(f"unknown video packet kind {kind!r}")


def audio_header(codec: str, kind: str) -> bytes:
    """The bytes in front of an audio payload of ``kind`` (CONFIG, FRAME or END).

    Legacy formats have no configuration or end packet: for those kinds the result is empty,
    meaning "nothing to send". Raises ValueError for a codec RTMP cannot carry.
    """
    if codec == "mp4a":
        if kind == FRAME:
            return _AAC_FRAME
        if kind == CONFIG:
            return _AAC_CONFIG
        if kind == END:
            return b""
        raise ValueError(f"unknown audio packet kind {kind!r}")
    if codec == "mp3":
        if kind == FRAME:
            return _MP3_FRAME
        if kind in (CONFIG, END):
            return b""
        raise ValueError(f"unknown audio packet kind {kind!r}")
    fourcc = AUDIO_FOURCCS.get(codec)
    if fourcc is None:
        raise ValueError(f"audio codec {codec!r} cannot be sent over RTMP")
    if kind == FRAME:
        packet = AUDIO_CODED_FRAMES
    elif kind == CONFIG:
        packet = AUDIO_SEQUENCE_START
    elif kind == END:
        packet = AUDIO_SEQUENCE_END
    else:
        raise ValueError(f"unknown audio packet kind {kind!r}")
    return bytes((9 << 4 | packet,)) + fourcc


__all__ = [
    "AUDIO_CODECS",
    "CONFIG",
    "END",
    "FRAME",
    "VIDEO_CODECS",
    "audio_header",
    "video_header",
]
