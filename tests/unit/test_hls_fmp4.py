"""fMP4 writer: real x264/AAC packets in, files that ffprobe and PyAV decode frame-exactly out."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import pytest

from tests.hls_media import (
    FRAME_TICKS,
    HEIGHT,
    WIDTH,
    decode,
    encode_audio,
    encode_video,
    ffprobe,
    find,
    iter_boxes,
    nal_types,
    parse_fragments,
)
from transcode.avc import (
    annexb_to_avcc,
    avcc_from_annexb,
    codec_string_avc,
    make_avcc,
    parse_avcc,
    split_annexb,
    split_avcc,
)
from transcode.hls.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    codec_string_aac,
    fragment,
    init_segment,
)
from transcode.types import AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo


def _u32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "big")


def _gops(packets, n_per_fragment: int = 60):
    return [list(packets[i : i + n_per_fragment]) for i in range(0, len(packets), n_per_fragment)]


def _audio_for(audio, start_s: float, end_s: float, rate: int):
    return [a for a in audio if a.dts >= 0 and start_s * rate <= a.dts < end_s * rate]


def test_round_trip_decodes_every_frame_at_its_time(tmp_path: Path):
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    audio = [a for a in audio if a.dts >= 0]  # the priming packet has a negative time
    parts = [init_segment(vinfo, ainfo)]
    for seq, gop in enumerate(_gops(video), start=1):
        start, end = gop[0].dts / 90000, (gop[-1].dts + FRAME_TICKS) / 90000
        parts.append(fragment(seq, gop, _audio_for(audio, start, end, ainfo.sample_rate)))
    path = tmp_path / "out.mp4"
    path.write_bytes(b"".join(parts))

    probe = ffprobe(
        path,
        "-count_frames",
        "-show_entries",
        "stream=codec_type,codec_name,profile,width,height,nb_read_frames,sample_rate,channels",
    )
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert streams["video"]["codec_name"] == "h264"
    assert (streams["video"]["width"], streams["video"]["height"]) == (WIDTH, HEIGHT)
    assert int(streams["video"]["nb_read_frames"]) == len(video) == 120
    assert streams["audio"]["codec_name"] == "aac" and streams["audio"]["profile"] == "LC"
    assert int(streams["audio"]["sample_rate"]) == 48000 and streams["audio"]["channels"] == 2
    assert int(streams["audio"]["nb_read_frames"]) == len(audio)

    packets = ffprobe(path, "-show_entries", "packet=codec_type,pts,dts,flags")["packets"]
    vpk = [p for p in packets if p["codec_type"] == "video"]
    assert [(p["pts"], p["dts"]) for p in vpk] == [(v.pts, v.dts) for v in video]
    assert [p["flags"].startswith("K") for p in vpk] == [v.keyframe for v in video]

    decoded = decode(path)
    assert decoded["video"] == [v.pts for v in video]
    assert decoded["audio"] == [a.pts for a in audio]


def test_box_structure_sizes_and_offsets():
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    init = init_segment(vinfo, ainfo)
    assert [k for k, _, _ in iter_boxes(init)] == ["ftyp", "moov"]
    ((ftyp, ftyp_size),) = find(init, "ftyp")
    brands = {init[i : i + 4] for i in range(ftyp + 16, ftyp + ftyp_size, 4)}
    assert init[ftyp + 8 : ftyp + 12] == b"iso6" and {b"iso6", b"cmfc", b"avc1"} <= brands
    assert [k for k, _, _ in iter_boxes(init, find(init, "moov")[0][0] + 8, len(init))] == [
        "mvhd",
        "trak",
        "trak",
        "mvex",
    ]

    tkhds = find(init, "moov/trak/tkhd")
    assert [_u32(init, off + 20) for off, _ in tkhds] == [1, 2]
    assert (
        _u32(init, tkhds[0][0] + 84) >> 16 == WIDTH and _u32(init, tkhds[0][0] + 88) >> 16 == HEIGHT
    )
    assert [_u32(init, off + 20) for off, _ in find(init, "moov/trak/mdia/mdhd")] == [90000, 48000]
    assert [init[off + 16 : off + 20] for off, _ in find(init, "moov/trak/mdia/hdlr")] == [
        b"vide",
        b"soun",
    ]
    assert (
        len(find(init, "moov/trak/mdia/minf/vmhd")) == 1
        and len(find(init, "moov/trak/mdia/minf/smhd")) == 1
    )
    for table in ("stts", "stsc", "stco"):
        assert [
            _u32(init, off + 12) for off, _ in find(init, f"moov/trak/mdia/minf/stbl/{table}")
        ] == [0, 0]
    (stsd_v, _), (stsd_a, _) = find(init, "moov/trak/mdia/minf/stbl/stsd")
    avc1 = stsd_v + 16
    assert init[avc1 + 4 : avc1 + 8] == b"avc1"
    avcc_box = avc1 + 8 + 78
    assert init[avcc_box + 4 : avcc_box + 8] == b"avcC"
    assert init[avcc_box + 8 : avcc_box + _u32(init, avcc_box)] == vinfo.avcc
    mp4a = stsd_a + 16
    assert init[mp4a + 4 : mp4a + 8] == b"mp4a"
    assert struct.unpack(">H", init[mp4a + 24 : mp4a + 26])[0] == 2  # channelcount
    assert _u32(init, mp4a + 32) >> 16 == 48000
    esds = mp4a + 36
    assert init[esds + 4 : esds + 8] == b"esds"
    esds_body = init[esds + 12 : esds + _u32(init, esds)]
    # ES_Descriptor > DecoderConfigDescriptor(objectTypeIndication 0x40, AudioStream)
    # > DecoderSpecificInfo == the ASC, then SLConfigDescriptor(predefined 2).
    assert esds_body[0] == 0x03 and esds_body[5] == 0x04 and esds_body[7:9] == bytes([0x40, 0x15])
    assert esds_body[20] == 0x05 and esds_body[22 : 22 + esds_body[21]] == ainfo.asc
    assert esds_body[-3:] == bytes([0x06, 0x01, 0x02])
    assert [_u32(init, off + 12) for off, _ in find(init, "moov/mvex/trex")] == [1, 2]

    vids = list(video[:45])
    auds = [a for a in audio if 0 <= a.dts < 48000 * 1.5]
    frag = fragment(7, vids, auds)
    kinds = [(k, size) for k, _, size in iter_boxes(frag)]
    assert [k for k, _ in kinds] == ["moof", "mdat"]
    assert sum(size for _, size in kinds) == len(frag)
    assert kinds[1][1] == 8 + sum(len(p.data) for p in vids + auds)
    trafs = parse_fragments(frag)
    assert [t["sequence"] for t in trafs] == [7, 7]
    v, a = trafs
    assert (v["track_id"], a["track_id"]) == (1, 2)
    assert v["tfhd_flags"] == a["tfhd_flags"] == 0x020000  # default-base-is-moof only
    assert v["tfdt"] == vids[0].dts and a["tfdt"] == auds[0].dts
    assert v["trun_version"] == 1 and v["trun_flags"] & 0x701 == 0x701
    assert v["trun_flags"] & 0x800 == 0, "no composition offsets when pts == dts"
    assert [s["data"] for s in v["samples"]] == [p.data for p in vids]
    assert [s["data"] for s in a["samples"]] == [p.data for p in auds]
    assert [s["duration"] for s in v["samples"]] == [p.duration for p in vids]
    assert [s["flags"] for s in v["samples"]] == [
        SYNC_SAMPLE_FLAGS if p.keyframe else NON_SYNC_SAMPLE_FLAGS for p in vids
    ]
    assert all(s["flags"] == SYNC_SAMPLE_FLAGS for s in a["samples"])
    # Video bytes come first in mdat, audio right after.
    mdat_start = v["mdat"][0] + 8
    assert v["moof"] + parse_trun_offset(frag, 0) == mdat_start
    assert nal_types(v["samples"][0]["data"])[-1] == 5  # IDR slice


def parse_trun_offset(frag: bytes, index: int) -> int:
    trun, _ = find(frag, "moof/traf/trun")[index]
    return int.from_bytes(frag[trun + 16 : trun + 20], "big", signed=True)


def test_video_only_and_audio_only_fragments_have_one_traf():
    _, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    assert [t["track_id"] for t in parse_fragments(fragment(1, list(video[:3]), []))] == [1]
    assert [t["track_id"] for t in parse_fragments(fragment(1, [], list(audio[1:4])))] == [2]
    only_audio = init_segment(None, ainfo)
    assert len(find(only_audio, "moov/trak")) == 1 and b"avc1" not in only_audio[:40]
    with pytest.raises(ValueError):
        fragment(1, [], [])
    with pytest.raises(ValueError):
        init_segment(None, None)


def test_b_frames_carry_signed_composition_offsets(tmp_path: Path):
    vinfo, video = encode_video(4.0, bframes=2)
    assert any(p.pts != p.dts for p in video)
    # The packager's timeline rule: shift decode times so the first IDR decodes at its pts.
    shift = video[0].pts - video[0].dts
    assert video[0].keyframe and shift > 0
    shifted = [dataclasses.replace(p, dts=p.dts + shift) for p in video]
    frags = [fragment(i + 1, gop, []) for i, gop in enumerate(_gops(shifted))]
    trafs = parse_fragments(b"".join(frags))
    assert all(t["trun_version"] == 1 and t["trun_flags"] & 0x800 for t in trafs)
    samples = [s for t in trafs for s in t["samples"]]
    offsets = [s["pts"] - s["dts"] for s in samples]
    assert min(offsets) < 0 < max(offsets), "B-frames need negative and positive offsets"
    # ISO BMFF composition times (tfdt + durations + signed offset) are the encoder's pts.
    assert [s["pts"] for s in samples] == [p.pts for p in video]

    path = tmp_path / "b.mp4"
    path.write_bytes(init_segment(vinfo, None) + b"".join(frags))
    probe = ffprobe(path, "-count_frames", "-show_entries", "stream=nb_read_frames")
    assert int(probe["streams"][0]["nb_read_frames"]) == len(video)
    decoded = decode(path)
    # FFmpeg's mov demuxer presents negative trun offsets by adding its dts_shift (the
    # largest negative offset) to every pts; the spacing and order must be exact.
    ffmpeg_shift = -min(offsets)
    assert sorted(decoded["video"]) == decoded["video"]
    assert [t - ffmpeg_shift for t in decoded["video"]] == sorted(p.pts for p in video)


def test_codec_strings():
    vinfo, _ = encode_video(4.0)
    assert codec_string_avc(vinfo.avcc) == "avc1.42c00b"  # libx264 ultrafast: CB, level 1.1
    binfo, _ = encode_video(4.0, bframes=2)
    assert codec_string_avc(binfo.avcc).startswith("avc1.64")  # High
    assert codec_string_aac(bytes([0x12, 0x10])) == "mp4a.40.2"
    assert codec_string_aac(bytes([0x2B, 0x92, 0x08, 0x00])) == "mp4a.40.5"
    # audioObjectType escape (31): 32 + 6 bits; 42 = USAC.
    assert codec_string_aac(bytes([0xF9, 0x46, 0x40])) == "mp4a.40.42"
    with pytest.raises(ValueError):
        codec_string_aac(b"\x12")
    with pytest.raises(ValueError):
        codec_string_avc(b"\x00\x00\x00\x01\x67")


def test_high_profile_avcc_has_chroma_and_bit_depth_fields():
    binfo, _ = encode_video(4.0, bframes=2)
    info = parse_avcc(binfo.avcc)
    assert info.length_size == 4 and len(info.sps) == 1 and len(info.pps) == 1
    tail = binfo.avcc[8 + len(info.sps[0]) + 1 + 2 + len(info.pps[0]) :]
    assert tail == bytes([0xFC | 1, 0xF8, 0xF8, 0])  # 4:2:0, 8-bit luma/chroma, no SPS ext


def test_annexb_conversion():
    nal_a, nal_b, nal_c = b"\x67\x42\x00\x1f\xaa", b"\x68\xce\x38\x80", b"\x65\x88\x00\x00\x03\x01"
    stream = b"\x00\x00\x00\x01" + nal_a + b"\x00\x00\x01" + nal_b + b"\x00\x00\x00\x01" + nal_c
    assert split_annexb(stream) == [nal_a, nal_b, nal_c]
    avcc = annexb_to_avcc(stream)
    assert split_avcc(avcc) == [nal_a, nal_b, nal_c]
    assert avcc[:4] == len(nal_a).to_bytes(4, "big")
    record = avcc_from_annexb(stream)
    assert record == make_avcc([nal_a], [nal_b])
    assert record[:5] == bytes([1, 0x42, 0x00, 0x1F, 0xFF]) and record[5] == 0xE1
    assert avcc_from_annexb(record) == record  # already avcC: unchanged
    with pytest.raises(ValueError):
        split_avcc(b"\x00\x00\x00\x09abc")


def test_init_segment_rejects_bad_configs():
    vinfo, _ = encode_video(4.0)
    two_byte_lengths = bytearray(vinfo.avcc)
    two_byte_lengths[4] = 0xFC | 1
    with pytest.raises(ValueError, match="4-byte"):
        init_segment(dataclasses.replace(vinfo, avcc=bytes(two_byte_lengths)), None)
    with pytest.raises(ValueError, match="configurationVersion"):
        init_segment(dataclasses.replace(vinfo, avcc=b"\x00\x00\x00\x01\x67\x42\x00\x1f"), None)
    with pytest.raises(ValueError):
        init_segment(dataclasses.replace(vinfo, width=0), None)
    with pytest.raises(ValueError):
        init_segment(None, AudioTrackInfo(asc=b"\x00\x00", sample_rate=48000, channels=2))


def test_fragment_rejects_negative_decode_time():
    bad = EncodedPacket(
        Track.VIDEO, pts=0, dts=-3000, duration=3000, keyframe=True, data=b"\x00\x00\x00\x01\x65"
    )
    with pytest.raises(ValueError, match="negative decode time"):
        fragment(1, [bad], [])


def test_sample_entry_for_odd_sizes_and_high_rates():
    vinfo, _ = encode_video(4.0)
    init = init_segment(
        VideoTrackInfo(vinfo.avcc, 1920, 1080, 29.97), AudioTrackInfo(bytes([0x11, 0x90]), 96000, 2)
    )
    (stsd_v, _), (stsd_a, _) = find(init, "moov/trak/mdia/minf/stbl/stsd")
    assert struct.unpack(">HH", init[stsd_v + 16 + 32 : stsd_v + 16 + 36]) == (1920, 1080)
    assert _u32(init, stsd_a + 16 + 32) == 0  # 96 kHz does not fit 16.16; the ASC rules
    assert [_u32(init, off + 20) for off, _ in find(init, "moov/trak/mdia/mdhd")] == [90000, 96000]
