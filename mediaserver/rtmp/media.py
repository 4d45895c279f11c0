"""FLV audio/video tag bodies (RTMP message types 8 and 9) -> typed media events.

Covers legacy FLV (H.264 codec id 7, AAC sound format 10, other sound formats as opaque frames)
and Enhanced RTMP v1/v2 (IsExHeader bit with FourCC: avc1, hvc1, av01, vp09; enhanced audio with
FourCC; ModEx prefixes; multitrack packets of which only track 0 is kept, because one RTMP
publish feeds one ladder). Payloads are sliced from the message once and never copied again.

Returns None for packets that carry nothing for us (metadata, MPEG-TS sequence starts, command
frames, extra tracks), :class:`MediaIgnored` for codecs we cannot use, and raises
:class:`ProtocolError` for bodies too short for the header they announce.
"""

from __future__ import annotations

from typing import Final

from .errors import ProtocolError
from .events import (
    AudioConfig,
    AudioFrame,
    Event,
    MediaIgnored,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
)

# Legacy FLV video codec ids we understand; 12 is the widespread (non-Adobe) HEVC extension
# that uses the AVC packet layout.
_LEGACY_VIDEO: Final = {7: "avc1", 12: "hvc1"}
_LEGACY_VIDEO_NAMES: Final = {2: "h263", 3: "screen", 4: "vp6", 5: "vp6a", 6: "screen2"}

# Enhanced RTMP video packet types.
VIDEO_SEQUENCE_START: Final = 0
VIDEO_CODED_FRAMES: Final = 1
VIDEO_SEQUENCE_END: Final = 2
VIDEO_CODED_FRAMES_X: Final = 3
VIDEO_METADATA: Final = 4
VIDEO_MPEG2TS_SEQUENCE_START: Final = 5
VIDEO_MULTITRACK: Final = 6
VIDEO_MODEX: Final = 7

# Enhanced RTMP audio packet types.
AUDIO_SEQUENCE_START: Final = 0
AUDIO_CODED_FRAMES: Final = 1
AUDIO_SEQUENCE_END: Final = 2
AUDIO_MULTICHANNEL_CONFIG: Final = 4
AUDIO_MULTITRACK: Final = 5
AUDIO_MODEX: Final = 7

MULTITRACK_ONE_TRACK: Final = 0
MULTITRACK_MANY_TRACKS: Final = 1
MULTITRACK_MANY_TRACKS_MANY_CODECS: Final = 2

_VIDEO_FOURCCS: Final = {b"avc1": "avc1", b"hvc1": "hvc1", b"av01": "av01", b"vp09": "vp09"}
# Codecs whose CodedFrames carry a 24-bit composition time offset.
_CTO_FOURCCS: Final = frozenset((b"avc1", b"hvc1"))

_AUDIO_FOURCCS: Final = {
    b"mp4a": "mp4a",
    b"Opus": "opus",
    b"fLaC": "flac",
    b".mp3": "mp3",
    b"ac-3": "ac-3",
    b"ec-3": "ec-3",
}
_LEGACY_AUDIO: Final = {
    0: "pcm",
    1: "adpcm",
    2: "mp3",
    3: "pcm_le",
    4: "nellymoser",
    5: "nellymoser",
    6: "nellymoser",
    7: "alaw",
    8: "ulaw",
    11: "speex",
    14: "mp3",
    15: "device",
}

AAC_SAMPLE_RATES: Final = (
    96000,
    88200,
    64000,
    48000,
    44100,
    32000,
    24000,
    22050,
    16000,
    12000,
    11025,
    8000,
    7350,
)
_AAC_CHANNELS: Final = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 8, 11: 7, 12: 8, 13: 24, 14: 8}


def _truncated(kind: str, need: int, have: int) -> ProtocolError:
    return ProtocolError(f"{kind} message too short: need {need} bytes, have {have}")


def _si24(b: bytes, i: int) -> int:
    v = (b[i] << 16) | (b[i + 1] << 8) | b[i + 2]
    return v - 0x1000000 if v & 0x800000 else v


# ---------------------------------------------------------------------------------------------
# Video


def parse_video(stream_id: int, timestamp: int, body: bytes) -> Event | None:
    """Parse one video message body received at ``timestamp`` (ms, the DTS)."""
    if not body:
        return None  # some encoders send empty video messages as keep-alives
    b0 = body[0]
    if b0 & 0x80:
        return _parse_enhanced_video(stream_id, timestamp, body)
    frame_type = b0 >> 4
    codec_id = b0 & 0x0F
    codec = _LEGACY_VIDEO.get(codec_id)
    if codec is None:
        if frame_type == 5:
            return None  # video info/command frame
        name = _LEGACY_VIDEO_NAMES.get(codec_id, f"codec id {codec_id}")
        return MediaIgnored(stream_id, "video", f"unsupported video codec {name}")
    if frame_type == 5:
        return None
    if len(body) < 5:
        raise _truncated("AVC video", 5, len(body))
    packet_type = body[1]
    if packet_type == 1:
        data = body[5:]
        if not data:
            return None
        return VideoFrame(
            stream_id,
            codec,
            timestamp,
            timestamp + _si24(body, 2),
            frame_type == 1 or frame_type == 4,
            data,
        )
    if packet_type == 0:
        return VideoConfig(stream_id, codec, body[5:], timestamp)
    if packet_type == 2:
        return VideoSequenceEnd(stream_id, codec, timestamp)
    return MediaIgnored(stream_id, "video", f"unknown AVC packet type {packet_type}")


def _skip_modex(body: bytes, pos: int, packet_type: int, modex: int, kind: str) -> tuple[int, int]:
    """Skip ModEx prefixes (E-RTMP v2); return the real packet type and the new offset."""
    n = len(body)
    while packet_type == modex:
        if pos >= n:
            raise _truncated(kind, pos + 1, n)
        size = body[pos] + 1
        pos += 1
        if size == 256:
            if pos + 2 > n:
                raise _truncated(kind, pos + 2, n)
            size = ((body[pos] << 8) | body[pos + 1]) + 1
            pos += 2
        pos += size  # modifier data: only a nanosecond timestamp offset is defined; unused
        if pos >= n:
            raise _truncated(kind, pos + 1, n)
        packet_type = body[pos] & 0x0F
        pos += 1
    return packet_type, pos


def _track0(
    body: bytes, pos: int, packet_type: int, what: str, multitrack_type: int, modex_type: int
) -> tuple[int, bytes, int, int] | None:
    """Walk an enhanced-RTMP (multitrack) header to track 0.

    Returns ``(packet_type, fourcc, payload start, payload end)``, or ``None`` when the message
    carries no track 0. Only track 0 is kept: one RTMP publish feeds one transcoding ladder.
    """
    n = len(body)
    multitrack = -1
    if packet_type == multitrack_type:
        if pos >= n:
            raise _truncated(what, pos + 1, n)
        multitrack = body[pos] >> 4
        packet_type = body[pos] & 0x0F
        pos += 1
        if multitrack > MULTITRACK_MANY_TRACKS_MANY_CODECS:
            raise ProtocolError(f"unknown {what} multitrack type {multitrack}")
        if packet_type == multitrack_type or packet_type == modex_type:
            raise ProtocolError(f"nested multitrack/ModEx {what} packet")
    fourcc = b""
    if multitrack != MULTITRACK_MANY_TRACKS_MANY_CODECS:
        if pos + 4 > n:
            raise _truncated(what, pos + 4, n)
        fourcc = body[pos : pos + 4]
        pos += 4
    end = n
    if multitrack >= 0:
        while True:
            if multitrack == MULTITRACK_MANY_TRACKS_MANY_CODECS:
                if pos + 4 > n:
                    raise _truncated(what, pos + 4, n)
                fourcc = body[pos : pos + 4]
                pos += 4
            if pos >= n:
                raise _truncated(what, pos + 1, n)
            track_id = body[pos]
            pos += 1
            if multitrack == MULTITRACK_ONE_TRACK:
                end = n
            else:
                if pos + 3 > n:
                    raise _truncated(what, pos + 3, n)
                end = pos + 3 + ((body[pos] << 16) | (body[pos + 1] << 8) | body[pos + 2])
                pos += 3
                if end > n:
                    raise _truncated(what + " track", end, n)
            if track_id == 0:
                break
            if multitrack == MULTITRACK_ONE_TRACK or end >= n:
                return None
            pos = end
    return packet_type, bytes(fourcc), pos, end


def _parse_enhanced_video(stream_id: int, timestamp: int, body: bytes) -> Event | None:
    b0 = body[0]
    frame_type = (b0 >> 4) & 0x07
    packet_type, pos = _skip_modex(body, 1, b0 & 0x0F, VIDEO_MODEX, "enhanced video")
    if frame_type == 5 and packet_type != VIDEO_METADATA:
        return None  # command frame (seek start/end): nothing to decode
    track = _track0(body, pos, packet_type, "enhanced video", VIDEO_MULTITRACK, VIDEO_MODEX)
    if track is None:
        return None
    packet_type, fourcc, pos, end = track
    codec = _VIDEO_FOURCCS.get(bytes(fourcc))
    if codec is None:
        return MediaIgnored(stream_id, "video", f"unsupported video FourCC {bytes(fourcc)!r}")
    keyframe = frame_type == 1 or frame_type == 4
    if packet_type == VIDEO_CODED_FRAMES:
        if fourcc in _CTO_FOURCCS:
            if pos + 3 > end:
                raise _truncated("enhanced video", pos + 3, end)
            cto = _si24(body, pos)
            pos += 3
        else:
            cto = 0
        data = body[pos:end]
        if not data:
            return None
        return VideoFrame(stream_id, codec, timestamp, timestamp + cto, keyframe, data)
    if packet_type == VIDEO_CODED_FRAMES_X:
        data = body[pos:end]
        if not data:
            return None
        return VideoFrame(stream_id, codec, timestamp, timestamp, keyframe, data)
    if packet_type == VIDEO_SEQUENCE_START:
        return VideoConfig(stream_id, codec, body[pos:end], timestamp)
    if packet_type == VIDEO_SEQUENCE_END:
        return VideoSequenceEnd(stream_id, codec, timestamp)
    if packet_type == VIDEO_METADATA or packet_type == VIDEO_MPEG2TS_SEQUENCE_START:
        return None  # HDR colour info / AV1-in-TS descriptor: not needed to transcode
    return MediaIgnored(stream_id, "video", f"unknown enhanced video packet type {packet_type}")


# ---------------------------------------------------------------------------------------------
# Audio


def parse_audio_specific_config(asc: bytes) -> tuple[int, int, int]:
    """(audio object type, output sample rate, channel count) from an AudioSpecificConfig.

    For HE-AAC with explicit SBR signalling (object type 5 or 29) the output rate is the
    extension rate and parametric stereo (29) doubles a mono core.
    """
    reader = _BitReader(asc)
    try:
        aot = _read_aot(reader)
        rate = _read_rate(reader)
        channel_config = reader.read(4)
        channels = _AAC_CHANNELS.get(channel_config, 0)
        if aot == 5 or aot == 29:
            rate = _read_rate(reader)
            if aot == 29 and channels == 1:
                channels = 2
            _read_aot(reader)
    except IndexError as exc:
        raise ProtocolError(f"AudioSpecificConfig too short ({len(asc)} bytes)") from exc
    return aot, rate, channels


class _BitReader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = (value << 1) | ((byte >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value


def _read_aot(reader: _BitReader) -> int:
    aot = reader.read(5)
    return 32 + reader.read(6) if aot == 31 else aot


def _read_rate(reader: _BitReader) -> int:
    index = reader.read(4)
    if index == 15:
        return reader.read(24)
    if index >= len(AAC_SAMPLE_RATES):
        raise ProtocolError(f"AudioSpecificConfig uses reserved sampling frequency index {index}")
    return AAC_SAMPLE_RATES[index]


def parse_audio(stream_id: int, timestamp: int, body: bytes) -> Event | None:
    """Parse one audio message body received at ``timestamp`` (ms)."""
    if not body:
        return None
    b0 = body[0]
    sound_format = b0 >> 4
    if sound_format == 10:
        if len(body) < 2:
            raise _truncated("AAC audio", 2, len(body))
        if body[1] == 1:
            return AudioFrame(stream_id, "mp4a", timestamp, body[2:])
        if body[1] == 0:
            return _aac_config(stream_id, timestamp, body[2:])
        return MediaIgnored(stream_id, "audio", f"unknown AAC packet type {body[1]}")
    if sound_format == 9:
        return _parse_enhanced_audio(stream_id, timestamp, body)
    codec = _LEGACY_AUDIO.get(sound_format)
    if codec is None:
        return MediaIgnored(stream_id, "audio", f"unsupported sound format {sound_format}")
    return AudioFrame(stream_id, codec, timestamp, body[1:])


def _aac_config(stream_id: int, timestamp: int, asc: bytes) -> AudioConfig:
    _, rate, channels = parse_audio_specific_config(asc)
    return AudioConfig(stream_id, "mp4a", asc, rate, channels, timestamp)


def _parse_enhanced_audio(stream_id: int, timestamp: int, body: bytes) -> Event | None:
    packet_type, pos = _skip_modex(body, 1, body[0] & 0x0F, AUDIO_MODEX, "enhanced audio")
    track = _track0(body, pos, packet_type, "enhanced audio", AUDIO_MULTITRACK, AUDIO_MODEX)
    if track is None:
        return None
    packet_type, fourcc, pos, end = track
    codec = _AUDIO_FOURCCS.get(bytes(fourcc))
    if codec is None:
        return MediaIgnored(stream_id, "audio", f"unsupported audio FourCC {bytes(fourcc)!r}")
    if packet_type == AUDIO_CODED_FRAMES:
        return AudioFrame(stream_id, codec, timestamp, body[pos:end])
    if packet_type == AUDIO_SEQUENCE_START:
        config = body[pos:end]
        if codec == "mp4a":
            return _aac_config(stream_id, timestamp, config)
        if codec == "opus" and len(config) >= 19 and config[:8] == b"OpusHead":
            return AudioConfig(stream_id, codec, config, 48000, config[9], timestamp)
        return AudioConfig(stream_id, codec, config, 0, 0, timestamp)
    if packet_type == AUDIO_SEQUENCE_END or packet_type == AUDIO_MULTICHANNEL_CONFIG:
        return None
    return MediaIgnored(stream_id, "audio", f"unknown enhanced audio packet type {packet_type}")
