"""FLV / Enhanced RTMP tag bodies -> media events."""

from __future__ import annotations

import pytest

from mediaserver.rtmp.errors import ProtocolError
from mediaserver.rtmp.events import (
    AudioConfig,
    AudioFrame,
    MediaIgnored,
    VideoConfig,
    VideoFrame,
    VideoSequenceEnd,
)
from mediaserver.rtmp.media import parse_audio, parse_audio_specific_config, parse_video
from tests.rtmp_client import ASC, AVCC, length_prefixed

NALUS = length_prefixed(b"\x65\x88\x84\x00\x10", b"\x06\x05\x01\x02")
HVCC = bytes.fromhex("01016000000090000000000078f000fcfdf8f800000f03a00001")
AV1C = bytes.fromhex("812a0000")
OBUS = bytes.fromhex("12000a0b0000002a9c7fc0")


def si24(v: int) -> bytes:
    return (v & 0xFFFFFF).to_bytes(3, "big")


# ---------------------------------------------------------------------------------------------
# Legacy H.264


def test_avc_sequence_header():
    body = b"\x17\x00\x00\x00\x00" + AVCC
    assert parse_video(1, 0, body) == VideoConfig(1, "avc1", AVCC, 0)


@pytest.mark.parametrize("cto", [0, 67, -33, 0x7FFFFF, -0x800000])
def test_avc_nalus_composition_time(cto):
    body = b"\x27\x01" + si24(cto) + NALUS
    assert parse_video(1, 1000, body) == VideoFrame(1, "avc1", 1000, 1000 + cto, False, NALUS)


def test_avc_keyframe_flag():
    frame = parse_video(1, 5, b"\x17\x01\x00\x00\x00" + NALUS)
    assert isinstance(frame, VideoFrame) and frame.keyframe
    frame = parse_video(1, 5, b"\x27\x01\x00\x00\x00" + NALUS)
    assert isinstance(frame, VideoFrame) and not frame.keyframe


def test_avc_end_of_sequence():
    assert parse_video(1, 9, b"\x17\x02\x00\x00\x00") == VideoSequenceEnd(1, "avc1", 9)


def test_avc_empty_nalu_packet_and_empty_body_are_skipped():
    assert parse_video(1, 0, b"\x27\x01\x00\x00\x00") is None
    assert parse_video(1, 0, b"") is None


def test_video_info_frame_is_skipped():
    assert parse_video(1, 0, b"\x57\x00") is None


def test_truncated_avc_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="too short"):
        parse_video(1, 0, b"\x17\x01\x00")


def test_unsupported_legacy_codec_is_reported():
    event = parse_video(1, 0, b"\x14\x00\x00")
    assert isinstance(event, MediaIgnored) and "vp6" in event.reason


def test_legacy_hevc_extension():
    assert parse_video(1, 0, b"\x1c\x00\x00\x00\x00" + HVCC) == VideoConfig(1, "hvc1", HVCC, 0)


# ---------------------------------------------------------------------------------------------
# Enhanced RTMP video


def ex(frame_type: int, packet_type: int) -> bytes:
    return bytes([0x80 | frame_type << 4 | packet_type])


def test_hevc_sequence_start_coded_frames_and_end():
    assert parse_video(1, 0, ex(1, 0) + b"hvc1" + HVCC) == VideoConfig(1, "hvc1", HVCC, 0)
    assert parse_video(1, 40, ex(1, 1) + b"hvc1" + si24(-40) + NALUS) == VideoFrame(
        1, "hvc1", 40, 0, True, NALUS
    )
    assert parse_video(1, 80, ex(2, 3) + b"hvc1" + NALUS) == VideoFrame(
        1, "hvc1", 80, 80, False, NALUS
    )
    assert parse_video(1, 90, ex(1, 2) + b"hvc1") == VideoSequenceEnd(1, "hvc1", 90)


def test_av1_has_no_composition_time():
    assert parse_video(2, 0, ex(1, 0) + b"av01" + AV1C) == VideoConfig(2, "av01", AV1C, 0)
    assert parse_video(2, 33, ex(1, 1) + b"av01" + OBUS) == VideoFrame(
        2, "av01", 33, 33, True, OBUS
    )
    assert parse_video(2, 66, ex(2, 3) + b"av01" + OBUS) == VideoFrame(
        2, "av01", 66, 66, False, OBUS
    )


def test_vp9_and_enhanced_avc():
    assert parse_video(1, 5, ex(2, 1) + b"vp09" + b"frame") == VideoFrame(
        1, "vp09", 5, 5, False, b"frame"
    )
    assert parse_video(1, 5, ex(1, 1) + b"avc1" + si24(10) + NALUS) == VideoFrame(
        1, "avc1", 5, 15, True, NALUS
    )


def test_metadata_and_mpeg2ts_sequence_start_are_ignored():
    assert parse_video(1, 0, ex(1, 4) + b"hvc1" + b"\x02\x00\x09colorInfo\x03\x00\x00\x09") is None
    assert parse_video(1, 0, ex(1, 5) + b"av01" + b"\x80") is None


def test_command_frame_is_ignored():
    assert parse_video(1, 0, ex(5, 1) + b"\x00") is None


def test_modex_prefix_is_skipped():
    body = ex(1, 7) + b"\x02" + b"\x00\x01\x00" + b"\x01" + b"hvc1" + si24(3) + NALUS
    assert parse_video(1, 10, body) == VideoFrame(1, "hvc1", 10, 13, True, NALUS)


def test_multitrack_keeps_track_zero():
    track1 = b"\x01" + (7).to_bytes(3, "big") + b"x" * 7
    track0 = b"\x00" + len(NALUS).to_bytes(3, "big") + NALUS
    body = ex(2, 6) + bytes([1 << 4 | 3]) + b"hvc1" + track1 + track0
    assert parse_video(1, 7, body) == VideoFrame(1, "hvc1", 7, 7, False, NALUS)


def test_multitrack_many_codecs_and_one_track():
    body = (
        ex(1, 6)
        + bytes([2 << 4 | 0])
        + b"av01"
        + b"\x03"
        + len(AV1C).to_bytes(3, "big")
        + AV1C
        + b"hvc1"
        + b"\x00"
        + len(HVCC).to_bytes(3, "big")
        + HVCC
    )
    assert parse_video(1, 0, body) == VideoConfig(1, "hvc1", HVCC, 0)
    assert parse_video(1, 0, ex(1, 6) + b"\x00" + b"av01" + b"\x02" + AV1C) is None
    assert parse_video(1, 0, ex(1, 6) + b"\x00" + b"av01" + b"\x00" + AV1C) == VideoConfig(
        1, "av01", AV1C, 0
    )


def test_unknown_fourcc_and_packet_type():
    event = parse_video(1, 0, ex(1, 1) + b"xxxx" + b"data")
    assert isinstance(event, MediaIgnored) and "FourCC" in event.reason
    event = parse_video(1, 0, ex(1, 9) + b"hvc1" + b"data")
    assert isinstance(event, MediaIgnored) and "packet type 9" in event.reason


@pytest.mark.parametrize(
    "body",
    [
        ex(1, 1) + b"hv",
        ex(1, 1) + b"hvc1" + b"\x00",
        ex(1, 7),
        ex(1, 7) + b"\x05\x00",
        ex(1, 6),
        ex(1, 6) + b"\x13" + b"hvc1" + b"\x00\x00\x00",
        ex(1, 6) + b"\x13" + b"hvc1" + b"\x00\x00\x00\x09abc",
        ex(1, 6) + b"\x53",
    ],
)
def test_truncated_enhanced_video(body):
    with pytest.raises(ProtocolError):
        parse_video(1, 0, body)


# ---------------------------------------------------------------------------------------------
# Audio


def asc(
    aot: int,
    rate_index: int,
    channels: int,
    *,
    explicit_rate: int = 0,
    ext: tuple[int, int] | None = None,
) -> bytes:
    bits = f"{31:05b}{aot - 32:06b}" if aot >= 31 else f"{aot:05b}"
    bits += f"{rate_index:04b}" + (f"{explicit_rate:024b}" if rate_index == 15 else "")
    bits += f"{channels:04b}"
    if ext:
        bits += f"{ext[0]:04b}{ext[1]:05b}"
    bits += "0" * (-len(bits) % 8)
    return int(bits, 2).to_bytes(len(bits) // 8, "big")


@pytest.mark.parametrize(
    "config,expected",
    [
        (ASC, (2, 44100, 2)),
        (bytes.fromhex("1188"), (2, 48000, 1)),
        (asc(2, 15, 2, explicit_rate=44056), (2, 44056, 2)),
        (asc(2, 3, 7), (2, 48000, 8)),
        (asc(5, 6, 2, ext=(3, 2)), (5, 48000, 2)),
        (asc(29, 6, 1, ext=(3, 2)), (29, 48000, 2)),
        (asc(42, 8, 1), (42, 16000, 1)),
        (asc(2, 4, 0), (2, 44100, 0)),
    ],
)
def test_audio_specific_config(config, expected):
    assert parse_audio_specific_config(config) == expected


@pytest.mark.parametrize("config", [b"", b"\x12", asc(2, 13, 2)])
def test_bad_audio_specific_config(config):
    with pytest.raises(ProtocolError):
        parse_audio_specific_config(config)


def test_aac_sequence_header_and_frames():
    assert parse_audio(1, 0, b"\xaf\x00" + ASC) == AudioConfig(1, "mp4a", ASC, 44100, 2, 0)
    assert parse_audio(1, 23, b"\xaf\x01raw") == AudioFrame(1, "mp4a", 23, b"raw")


def test_aac_truncated():
    with pytest.raises(ProtocolError):
        parse_audio(1, 0, b"\xaf")
    with pytest.raises(ProtocolError):
        parse_audio(1, 0, b"\xaf\x00")


def test_mp3_and_other_legacy_formats_are_frames_without_config():
    assert parse_audio(1, 26, b"\x2fmp3data") == AudioFrame(1, "mp3", 26, b"mp3data")
    assert parse_audio(1, 26, b"\x72alaw") == AudioFrame(1, "alaw", 26, b"alaw")
    event = parse_audio(1, 0, b"\xc0x")
    assert isinstance(event, MediaIgnored)


def test_enhanced_audio():
    assert parse_audio(1, 0, b"\x90mp4a" + ASC) == AudioConfig(1, "mp4a", ASC, 44100, 2, 0)
    assert parse_audio(1, 21, b"\x91mp4araw") == AudioFrame(1, "mp4a", 21, b"raw")
    opus_head = b"OpusHead\x01\x02\x38\x01\x80\xbb\x00\x00\x00\x00\x00"
    assert parse_audio(1, 0, b"\x90Opus" + opus_head) == AudioConfig(
        1, "opus", opus_head, 48000, 2, 0
    )
    assert parse_audio(1, 0, b"\x92Opus") is None
    multitrack = (
        b"\x95" + bytes([1 << 4 | 1]) + b"Opus" + b"\x01\x00\x00\x01a" + b"\x00\x00\x00\x01b"
    )
    assert parse_audio(1, 3, multitrack) == AudioFrame(1, "opus", 3, b"b")
    assert isinstance(parse_audio(1, 0, b"\x91zzzzdata"), MediaIgnored)
    with pytest.raises(ProtocolError):
        parse_audio(1, 0, b"\x91mp")
