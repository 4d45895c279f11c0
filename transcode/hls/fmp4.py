"""A minimal ISO-BMFF (CMAF-style fragmented MP4) writer: one init segment, then moof+mdat pairs.

Only what a live H.264 + AAC-LC rendition needs is written, so every byte can be checked
against ISO/IEC 14496-12 by reading this file: no edit lists (the packager shifts the video
decode timeline instead and signals B-frame reordering with signed composition offsets in a
version-1 ``trun``), no sample tables in ``moov`` (every sample lives in a fragment), and
every fragment self-describing (``tfdt`` per track, ``default-base-is-moof`` offsets) so any
moof+mdat pair — an LL-HLS part — can be appended to a media buffer on its own.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from transcode.avc import codec_string_avc, parse_avcc
from transcode.types import AudioTrackInfo, EncodedPacket, VideoTrackInfo

VIDEO_TRACK_ID = 1
AUDIO_TRACK_ID = 2
MOVIE_TIMESCALE = 1000

# Sample flags (14496-12, 8.8.3.1): sample_depends_on=2 (an I picture / audio frame) versus
# sample_depends_on=1 + sample_is_non_sync_sample=1. Players use these to find switch points.
SYNC_SAMPLE_FLAGS = 0x02000000
NON_SYNC_SAMPLE_FLAGS = 0x01010000

_TFHD_DEFAULT_BASE_IS_MOOF = 0x020000
_TRUN_DATA_OFFSET = 0x000001
_TRUN_DURATION = 0x000100
_TRUN_SIZE = 0x000200
_TRUN_FLAGS = 0x000400
_TRUN_CTS = 0x000800

_UNITY_MATRIX = struct.pack(">9i", 0x00010000, 0, 0, 0, 0x00010000, 0, 0, 0, 0x40000000)
_LANGUAGE_UND = 0x55C4  # ISO-639-2/T "und", three 5-bit letters minus 0x60


def box(kind: bytes, *payload: bytes) -> bytes:
    """A plain box: 32-bit size, four-character type, payload."""
    body = b"".join(payload)
    size = 8 + len(body)
    if size > 0xFFFFFFFF:
        raise ValueError(f"{kind!r} box too large for a 32-bit size")
    return struct.pack(">I4s", size, kind) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """A FullBox: a box whose payload starts with an 8-bit version and 24-bit flags."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def codec_string_aac(asc: bytes) -> str:
    """RFC 6381 ``mp4a.40.<audioObjectType>`` read from an AudioSpecificConfig (14496-3 1.6.2.1)."""
    if len(asc) < 2:
        raise ValueError("AudioSpecificConfig too short")
    aot = asc[0] >> 3
    if aot == 31:  # escape: 32 + the next 6 bits
        aot = 32 + (((asc[0] & 0x07) << 3) | (asc[1] >> 5))
    if aot == 0:
        raise ValueError("AudioSpecificConfig has audio object type 0")
    return f"mp4a.40.{aot}"


# ---------------------------------------------------------------------------------------------
# Init segment


def _ftyp(has_video: bool) -> bytes:
    # iso6 covers tfdt v1 / trun v1 negative composition offsets; cmfc claims CMAF structure.
    brands = [b"iso6", b"cmfc", b"isom", b"mp41"] + ([b"avc1"] if has_video else [])
    return box(b"ftyp", b"iso6", struct.pack(">I", 0), *brands)


def _mvhd(next_track_id: int) -> bytes:
    return full_box(
        b"mvhd",
        0,
        0,
        struct.pack(">IIII", 0, 0, MOVIE_TIMESCALE, 0),  # times, timescale, duration (fragmented)
        struct.pack(">iH", 0x00010000, 0x0100),  # rate 1.0, volume 1.0
        bytes(10),
        _UNITY_MATRIX,
        bytes(24),
        struct.pack(">I", next_track_id),
    )


def _tkhd(track_id: int, *, audio: bool, width: int = 0, height: int = 0) -> bytes:
    return full_box(
        b"tkhd",
        0,
        0x000003,  # track_enabled | track_in_movie
        struct.pack(">IIIII", 0, 0, track_id, 0, 0),
        bytes(8),
        struct.pack(">hhhH", 0, 0, 0x0100 if audio else 0, 0),  # layer, group, volume, reserved
        _UNITY_MATRIX,
        struct.pack(">II", width << 16, height << 16),
    )


def _mdia(
    timescale: int, handler: bytes, name: bytes, media_header: bytes, stsd_entry: bytes
) -> bytes:
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, _LANGUAGE_UND, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I4s", 0, handler), bytes(12), name + b"\x00")
    dref = full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1))
    stbl = box(
        b"stbl",
        full_box(b"stsd", 0, 0, struct.pack(">I", 1), stsd_entry),
        full_box(b"stts", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsc", 0, 0, struct.pack(">I", 0)),
        full_box(b"stsz", 0, 0, struct.pack(">II", 0, 0)),
        full_box(b"stco", 0, 0, struct.pack(">I", 0)),
    )
    minf = box(b"minf", media_header, box(b"dinf", dref), stbl)
    return box(b"mdia", mdhd, hdlr, minf)


def _avc1(video: VideoTrackInfo) -> bytes:
    if not (0 < video.width <= 0xFFFF and 0 < video.height <= 0xFFFF):
        raise ValueError(f"video size {video.width}x{video.height} out of range")
    return box(
        b"avc1",
        bytes(6),
        struct.pack(">H", 1),  # data_reference_index
        bytes(16),  # pre_defined, reserved, pre_defined[3]
        struct.pack(">HH", video.width, video.height),
        struct.pack(">II", 0x00480000, 0x00480000),  # 72 dpi
        bytes(4),
        struct.pack(">H", 1),  # frame_count
        bytes(32),  # compressorname
        struct.pack(">Hh", 0x0018, -1),  # depth, pre_defined
        box(b"avcC", video.avcc),
    )


def _descriptor(tag: int, payload: bytes) -> bytes:
    """An MPEG-4 descriptor (14496-1, 8.3.3): tag, expandable size (7 bits a byte), payload."""
    n = len(payload)
    size = [n & 0x7F]
    n >>= 7
    while n:
        size.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes([tag, *reversed(size)]) + payload


def _esds(asc: bytes) -> bytes:
    decoder_specific = _descriptor(0x05, asc)
    decoder_config = _descriptor(
        0x04,
        bytes([0x40, (0x05 << 2) | 0x01])  # Audio ISO/IEC 14496-3; AudioStream, reserved bit
        + bytes(3)  # bufferSizeDB
        + struct.pack(">II", 0, 0)  # maxBitrate, avgBitrate (unknown for live)
        + decoder_specific,
    )
    sl_config = _descriptor(0x06, b"\x02")  # predefined: reserved for MP4 files
    es = _descriptor(0x03, struct.pack(">HB", 0, 0) + decoder_config + sl_config)
    return full_box(b"esds", 0, 0, es)


def _mp4a(audio: AudioTrackInfo) -> bytes:
    codec_string_aac(audio.asc)  # validates the ASC
    if not 0 < audio.channels <= 0xFFFF or audio.sample_rate <= 0:
        raise ValueError("bad audio channel count or sample rate")
    # The 16.16 samplerate field cannot hold rates above 65535; the ASC in esds is authoritative.
    rate = audio.sample_rate if audio.sample_rate <= 0xFFFF else 0
    return box(
        b"mp4a",
        bytes(6),
        struct.pack(">H", 1),
        bytes(8),
        struct.pack(">HHHH", audio.channels, 16, 0, 0),
        struct.pack(">I", rate << 16),
        _esds(audio.asc),
    )


def _trex(track_id: int) -> bytes:
    return full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))


def init_segment(video: VideoTrackInfo | None, audio: AudioTrackInfo | None) -> bytes:
    """ftyp + moov for the given tracks (video is track 1, audio track 2).

    ``ValueError`` if the avcC does not declare 4-byte NAL lengths, because every sample the
    packager writes is in that form and a mismatch would only show up as a broken decode.
    """
    if video is None and audio is None:
        raise ValueError("an init segment needs at least one track")
    traks: list[bytes] = []
    trexs: list[bytes] = []
    if video is not None:
        if parse_avcc(video.avcc).length_size != 4:
            raise ValueError("avcC must declare 4-byte NAL unit lengths (lengthSizeMinusOne=3)")
        codec_string_avc(video.avcc)
        vmhd = full_box(b"vmhd", 0, 1, bytes(8))
        mdia = _mdia(video.timescale, b"vide", b"VideoHandler", vmhd, _avc1(video))
        tkhd = _tkhd(VIDEO_TRACK_ID, audio=False, width=video.width, height=video.height)
        traks.append(box(b"trak", tkhd, mdia))
        trexs.append(_trex(VIDEO_TRACK_ID))
    if audio is not None:
        smhd = full_box(b"smhd", 0, 0, bytes(4))
        mdia = _mdia(audio.timescale, b"soun", b"SoundHandler", smhd, _mp4a(audio))
        traks.append(box(b"trak", _tkhd(AUDIO_TRACK_ID, audio=True), mdia))
        trexs.append(_trex(AUDIO_TRACK_ID))
    moov = box(b"moov", _mvhd(AUDIO_TRACK_ID + 1), *traks, box(b"mvex", *trexs))
    return _ftyp(video is not None) + moov


# ---------------------------------------------------------------------------------------------
# Fragments


def _traf(track_id: int, samples: Sequence[EncodedPacket], data_offset: int) -> bytes:
    first = samples[0]
    if first.dts < 0:
        raise ValueError(f"negative decode time {first.dts} on track {track_id}")
    offsets = [s.pts - s.dts for s in samples]
    has_cts = any(offsets)
    flags = (
        _TRUN_DATA_OFFSET
        | _TRUN_DURATION
        | _TRUN_SIZE
        | _TRUN_FLAGS
        | (_TRUN_CTS if has_cts else 0)
    )
    rows = bytearray()
    for s, cts in zip(samples, offsets, strict=True):
        if not 0 <= s.duration <= 0xFFFFFFFF:
            raise ValueError(f"sample duration {s.duration} out of range")
        sample_flags = SYNC_SAMPLE_FLAGS if s.keyframe else NON_SYNC_SAMPLE_FLAGS
        rows += struct.pack(">III", s.duration, len(s.data), sample_flags)
        if has_cts:
            if not -(2**31) <= cts < 2**31:
                raise ValueError(f"composition offset {cts} out of range")
            rows += struct.pack(">i", cts)
    tfhd = full_box(b"tfhd", 0, _TFHD_DEFAULT_BASE_IS_MOOF, struct.pack(">I", track_id))
    tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", first.dts))
    trun = full_box(b"trun", 1, flags, struct.pack(">Ii", len(samples), data_offset), bytes(rows))
    return box(b"traf", tfhd, tfdt, trun)


def _moof(
    sequence_number: int, tracks: list[tuple[int, Sequence[EncodedPacket]]], offsets: list[int]
) -> bytes:
    mfhd = full_box(b"mfhd", 0, 0, struct.pack(">I", sequence_number))
    return box(
        b"moof", mfhd, *(_traf(tid, s, off) for (tid, s), off in zip(tracks, offsets, strict=True))
    )


def fragment(
    sequence_number: int, video: Sequence[EncodedPacket], audio: Sequence[EncodedPacket]
) -> bytes:
    """One moof + mdat (a CMAF chunk): video samples first in mdat, then audio.

    Sample durations are taken from ``packet.duration`` as given; the packager sets them so
    that each track's decode timeline is continuous (tfdt + sum of durations = next tfdt).
    """
    if not 0 <= sequence_number <= 0xFFFFFFFF:
        raise ValueError("sequence_number out of range")
    tracks: list[tuple[int, Sequence[EncodedPacket]]] = []
    if video:
        tracks.append((VIDEO_TRACK_ID, video))
    if audio:
        tracks.append((AUDIO_TRACK_ID, audio))
    if not tracks:
        raise ValueError("a fragment needs at least one sample")
    # The moof's size does not depend on the offset values, so build it once to learn it.
    moof_size = len(_moof(sequence_number, tracks, [0] * len(tracks)))
    offsets: list[int] = []
    position = moof_size + 8  # first byte after the mdat header
    for _, samples in tracks:
        offsets.append(position)
        position += sum(len(s.data) for s in samples)
    moof = _moof(sequence_number, tracks, offsets)
    payload = b"".join(s.data for _, samples in tracks for s in samples)
    return moof + box(b"mdat", payload)
