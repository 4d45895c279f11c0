"""RenditionPackager on 10 s of real x264 + AAC: parts, segments, timing, and the edge cases."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import m3u8
import pytest

from tests.hls_media import (
    FRAME_TICKS,
    SAMPLE_RATE,
    decode,
    encode_audio,
    encode_video,
    ffprobe,
    interleave,
    nal_types,
    parse_fragments,
)
from transcode.hls import LivePlaylist, PartReady, RenditionPackager, SegmentReady, vod_playlist
from transcode.types import EncodedPacket, Track

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def run(packager: RenditionPackager, packets) -> tuple[list[PartReady], list[SegmentReady]]:
    events = []
    for p in packets:
        events += packager.add(p)
    events += packager.flush()
    parts = [e for e in events if isinstance(e, PartReady)]
    segments = [e for e in events if isinstance(e, SegmentReady)]
    return parts, segments


@pytest.fixture(scope="module")
def stream():
    vinfo, video = encode_video(10.0)
    ainfo, audio = encode_audio(10.0)
    packager = RenditionPackager("720p", vinfo, ainfo, start_time=START)
    parts, segments = run(packager, interleave((vinfo, video), (ainfo, audio)))
    return packager, parts, segments, video, audio


def test_segments_follow_the_segment_start_flags(stream):
    packager, _, segments, video, _ = stream
    assert [s.segment for s in segments] == [0, 1, 2, 3, 4]
    for s in segments:
        assert abs(s.duration - packager.segment_duration) <= 0.1 * packager.segment_duration
    assert sum(s.duration for s in segments) == pytest.approx(len(video) / 30)
    assert [s.program_date_time for s in segments] == [
        START + timedelta(seconds=2 * i) for i in range(5)
    ]
    assert not any(s.discontinuity for s in segments)
    assert packager.next_segment == 5


def test_every_segment_starts_with_an_idr(stream):
    _, _, segments, _, _ = stream
    for s in segments:
        first_video = next(t for t in parse_fragments(s.data) if t["track_id"] == 1)
        sample = first_video["samples"][0]
        assert sample["flags"] == 0x02000000
        assert 5 in nal_types(sample["data"])


def test_parts_are_about_part_duration_and_within_part_target(stream):
    packager, parts, segments, _, _ = stream
    assert packager.part_target == 0.334  # 10 frames at 30 fps, rounded up to ms
    by_segment: dict[int, list[PartReady]] = {}
    for p in parts:
        by_segment.setdefault(p.segment, []).append(p)
    assert sorted(by_segment) == [s.segment for s in segments]
    for seg in segments:
        seg_parts = by_segment[seg.segment]
        assert [p.index for p in seg_parts] == list(range(len(seg_parts)))
        assert sum(p.duration for p in seg_parts) == pytest.approx(seg.duration)
        for p in seg_parts:
            assert p.duration <= packager.part_target
            assert p.duration == pytest.approx(0.333, abs=0.01)


def test_independent_exactly_when_the_part_starts_with_a_keyframe(stream):
    _, parts, _, _, _ = stream
    for p in parts:
        first_video = next(t for t in parse_fragments(p.data) if t["track_id"] == 1)
        starts_with_sync = first_video["samples"][0]["flags"] == 0x02000000
        assert p.independent == starts_with_sync
    assert [p.index for p in parts if p.independent] == [0] * 5


def test_segment_is_the_concatenation_of_its_parts(stream):
    _, parts, segments, _, _ = stream
    for s in segments:
        assert s.data == b"".join(p.data for p in parts if p.segment == s.segment)
    sequences = [t["sequence"] for p in parts for t in parse_fragments(p.data)][::2]
    assert sequences == list(range(1, len(parts) + 1)), "mfhd numbers increase by one per part"


def test_each_segment_decodes_after_the_init_segment(stream, tmp_path: Path):
    packager, _, segments, video, audio = stream
    all_audio = 0
    for s in segments:
        path = tmp_path / f"seg{s.segment}.mp4"
        path.write_bytes(packager.init + s.data)
        decoded = decode(path)
        start = round(s.program_date_time.timestamp() - START.timestamp()) * 90000
        expected = [p.pts for p in video if start <= p.pts < start + 180000]
        assert decoded["video"] == expected and len(expected) == 60
        all_audio += len(decoded["audio"])
    assert all_audio == len([a for a in audio if a.dts >= 0])
    assert packager.counters.audio_dropped == 1  # the AAC priming packet at pts -1024


def test_whole_stream_timeline_is_continuous(stream, tmp_path: Path):
    packager, _, segments, video, audio = stream
    data = b"".join(s.data for s in segments)
    trafs = parse_fragments(data)
    for track_id in (1, 2):
        runs = [t for t in trafs if t["track_id"] == track_id]
        for a, b in itertools.pairwise(runs):
            last = a["samples"][-1]
            assert last["dts"] + last["duration"] == b["tfdt"], "no gap or overlap between parts"
    path = tmp_path / "all.mp4"
    path.write_bytes(packager.init + data)
    packets = ffprobe(path, "-show_entries", "packet=codec_type,pts")["packets"]
    assert [p["pts"] for p in packets if p["codec_type"] == "video"] == [v.pts for v in video]
    assert [p["pts"] for p in packets if p["codec_type"] == "audio"] == [
        a.pts for a in audio if a.dts >= 0
    ]


def test_codecs_and_bandwidth(stream):
    packager, _, segments, _, _ = stream
    assert packager.codecs == "avc1.42c00b,mp4a.40.2"
    rates = [len(s.data) * 8 / s.duration for s in segments]
    assert packager.peak_bandwidth == pytest.approx(max(rates), abs=1)
    total = sum(len(s.data) * 8 for s in segments) / sum(s.duration for s in segments)
    assert packager.average_bandwidth == pytest.approx(total, abs=1)
    assert packager.peak_bandwidth >= packager.average_bandwidth > 0


def test_real_events_make_a_valid_live_playlist(stream):
    packager, parts, segments, _, _ = stream
    playlist = LivePlaylist(
        segment_duration=packager.segment_duration, part_target=packager.part_target
    )
    by_segment = {s.segment: s for s in segments}
    previous = playlist.render()
    for p in parts:
        assert p.program_date_time == by_segment[p.segment].program_date_time
        assert p.discontinuity == by_segment[p.segment].discontinuity
        playlist.add_part(p)
        if p.index == max(q.index for q in parts if q.segment == p.segment):
            playlist.add_segment(by_segment[p.segment])
        text = playlist.render()
        # Append-only (RFC 8216 6.2.1), allowing only old EXT-X-PART tags and the hint to go.
        kept = [
            line for line in previous.splitlines() if not line.startswith("#EXT-X-PRELOAD-HINT")
        ]
        kept = [
            line
            for line in kept
            if not line.startswith("#EXT-X-PART:") or line in text.splitlines()
        ]
        assert text.splitlines()[: len(kept)] == kept
        previous = text
    parsed = m3u8.loads(playlist.render())
    assert parsed.part_inf.part_target == packager.part_target
    for seg in parsed.segments:
        assert round(seg.duration) <= parsed.target_duration
        for part in seg.parts:
            assert part.duration <= parsed.part_inf.part_target


def test_deterministic_bytes():
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    packets = interleave((vinfo, video), (ainfo, audio))
    first = run(RenditionPackager("a", vinfo, ainfo, start_time=START), packets)
    second = run(RenditionPackager("a", vinfo, ainfo, start_time=START), packets)
    assert first == second


def test_late_audio_goes_into_the_next_part(tmp_path: Path):
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    # Audio reaches the packager 0.5 s behind the video it belongs with.
    delayed = []
    for info, packets, lag in ((vinfo, video, 0.0), (ainfo, audio, 0.5)):
        delayed += [(p.dts / info.timescale + lag, i, p) for i, p in enumerate(packets)]
    packets = [p for *_, p in sorted(delayed, key=lambda k: (k[0], k[1]))]
    packager = RenditionPackager("a", vinfo, ainfo, start_time=START)
    parts, segments = run(packager, packets)

    late = 0
    for p in parts:
        trafs = {t["track_id"]: t for t in parse_fragments(p.data)}
        if 2 in trafs:
            audio_start = trafs[2]["tfdt"] / SAMPLE_RATE
            video_start = trafs[1]["tfdt"] / 90000
            late += audio_start < video_start - 0.1
    assert late > 0, "some parts carry audio from before their own video start"
    path = tmp_path / "late.mp4"
    path.write_bytes(packager.init + b"".join(s.data for s in segments))
    decoded = decode(path)
    assert decoded["audio"] == [a.pts for a in audio if a.dts >= 0], "all audio kept, in order"
    assert decoded["video"] == [v.pts for v in video]


def test_leading_non_keyframes_are_dropped_and_counted(tmp_path: Path):
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    joined_mid_gop = video[10:]
    packager = RenditionPackager("a", vinfo, ainfo, start_time=START, first_segment=40)
    _, segments = run(packager, interleave((vinfo, joined_mid_gop), (ainfo, audio)))
    assert packager.counters.leading_video_dropped == 50
    assert [s.segment for s in segments] == [40]
    assert segments[0].program_date_time == START  # the first kept sample is the reference
    first = parse_fragments(segments[0].data)
    assert first[0]["tfdt"] == 60 * FRAME_TICKS and first[0]["samples"][0]["flags"] == 0x02000000
    audio_tfdt = next(t["tfdt"] for t in first if t["track_id"] == 2)
    assert audio_tfdt >= 2 * SAMPLE_RATE, "audio before the first keyframe is dropped too"
    path = tmp_path / "mid.mp4"
    path.write_bytes(packager.init + segments[0].data)
    assert len(decode(path)["video"]) == 60


def test_audio_older_than_the_first_keyframe_is_dropped_even_when_it_arrives_late():
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    packager = RenditionPackager("a", vinfo, ainfo, start_time=START)
    _, segments = run(packager, list(video[10:]) + list(audio))
    before = [a for a in audio if a.dts < 2 * SAMPLE_RATE]
    assert packager.counters.audio_dropped == len(before)
    audio_samples = [
        s for t in parse_fragments(segments[0].data) if t["track_id"] == 2 for s in t["samples"]
    ]
    assert [s["data"] for s in audio_samples] == [a.data for a in audio if a.dts >= 2 * SAMPLE_RATE]
    assert audio_samples[0]["dts"] == min(a.dts for a in audio if a.dts >= 2 * SAMPLE_RATE)


def test_keyframe_without_segment_start_makes_an_independent_part_only():
    vinfo, video = encode_video(4.0, gop_seconds=1.0)
    # Keyframes every second, segment starts only at 0 s and 2 s; one bogus flag on a P-frame.
    packets = [
        dataclasses.replace(p, segment_start=p.keyframe and p.pts % 180000 == 0) for p in video
    ]
    packets[15] = dataclasses.replace(packets[15], segment_start=True)
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    parts, segments = run(packager, packets)
    assert [s.duration for s in segments] == pytest.approx([2.0, 2.0])
    assert packager.counters.segment_start_ignored == 1
    independent = [(p.segment, p.index) for p in parts if p.independent]
    assert independent == [(0, 0), (0, 3), (1, 0), (1, 3)]


def test_b_frame_rendition_is_shifted_to_start_at_its_first_pts(tmp_path: Path):
    vinfo, video = encode_video(4.0, bframes=2)
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    _, segments = run(packager, video)
    assert [s.duration for s in segments] == pytest.approx([2.0, 2.0])
    trafs = parse_fragments(b"".join(s.data for s in segments))
    assert [t["tfdt"] for t in trafs if t["samples"][0]["flags"] == 0x02000000] == [0, 180000]
    samples = [s for t in trafs for s in t["samples"]]
    assert [s["pts"] for s in samples] == [p.pts for p in video]


def test_out_of_order_video_and_audio_are_dropped_and_counted():
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    packets = interleave((vinfo, video), (ainfo, audio))
    stale_video = dataclasses.replace(video[5], segment_start=False)
    stale_audio = audio[3]
    packets.insert(packets.index(video[20]), stale_video)
    packets.insert(packets.index(audio[30]), stale_audio)
    packager = RenditionPackager("a", vinfo, ainfo, start_time=START)
    _, segments = run(packager, packets)
    assert packager.counters.video_out_of_order == 1
    assert packager.counters.audio_dropped == 2  # priming + the stale one
    video_samples = [
        s
        for t in parse_fragments(b"".join(s.data for s in segments))
        if t["track_id"] == 1
        for s in t["samples"]
    ]
    assert len(video_samples) == len(video)


def test_audio_without_an_audio_track_is_counted():
    vinfo, video = encode_video(4.0)
    _, audio = encode_audio(4.0)
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    run(packager, interleave((vinfo, video[:5]), (vinfo, audio[:3])))
    assert packager.counters.audio_dropped == 3
    assert packager.codecs == "avc1.42c00b"


def test_restart_continues_numbering_with_a_discontinuity():
    vinfo, video = encode_video(4.0)
    packager = RenditionPackager(
        "a", vinfo, None, start_time=START, first_segment=7, discontinuity=True
    )
    parts, segments = run(packager, video)
    assert [(s.segment, s.discontinuity) for s in segments] == [(7, True), (8, False)]
    assert {p.segment for p in parts if p.discontinuity} == {7}


def test_flush_ends_the_packager():
    vinfo, video = encode_video(4.0)
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    assert packager.flush() == []  # nothing started: nothing to close
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    for p in video[:20]:
        packager.add(p)
    events = packager.flush()
    assert [type(e) for e in events] == [PartReady, SegmentReady]
    assert events[1].duration == pytest.approx(20 / 30)
    assert packager.flush() == []
    with pytest.raises(RuntimeError):
        packager.add(video[20])


def test_constructor_validation():
    vinfo, _ = encode_video(4.0)
    with pytest.raises(ValueError, match="timezone"):
        RenditionPackager("a", vinfo, None, start_time=datetime(2024, 1, 1))
    with pytest.raises(ValueError):
        RenditionPackager(
            "a", vinfo, None, start_time=START, part_duration=3.0, segment_duration=2.0
        )
    with pytest.raises(ValueError):
        RenditionPackager("a", vinfo, None, start_time=START, part_duration=0)
    with pytest.raises(ValueError):
        RenditionPackager(
            "a", dataclasses.replace(vinfo, avcc=b"\x00\x00\x01\x67"), None, start_time=START
        )


def test_negative_timestamps_before_the_first_keyframe_are_not_written():
    vinfo, video = encode_video(4.0)
    shifted = [
        dataclasses.replace(p, pts=p.pts - 30 * FRAME_TICKS, dts=p.dts - 30 * FRAME_TICKS)
        for p in video
    ]
    packager = RenditionPackager("a", vinfo, None, start_time=START)
    _, segments = run(packager, shifted)
    # The IDR at pts -1 s cannot be written (tfdt is unsigned): wait for the one at +1 s.
    assert packager.counters.leading_video_dropped == 60
    assert parse_fragments(segments[0].data)[0]["tfdt"] == 30 * FRAME_TICKS


def test_audio_only_timing_does_not_close_parts():
    vinfo, video = encode_video(4.0)
    ainfo, audio = encode_audio(4.0)
    packager = RenditionPackager("a", vinfo, ainfo, start_time=START)
    assert packager.add(video[0]) == []
    for a in audio[1:100]:  # two seconds of audio, no video: nothing can be cut
        assert packager.add(a) == []
    events = packager.add(
        EncodedPacket(
            Track.VIDEO,
            pts=FRAME_TICKS * 11,
            dts=FRAME_TICKS * 11,
            duration=FRAME_TICKS,
            keyframe=False,
            data=video[11].data,
        )
    )
    assert [type(e) for e in events] == [PartReady]
    audio_samples = next(t for t in parse_fragments(events[0].data) if t["track_id"] == 2)[
        "samples"
    ]
    # Only the audio before the part's end (11 frames = 0.3667 s) goes into it.
    assert (
        audio_samples[-1]["dts"]
        < 11 * FRAME_TICKS * SAMPLE_RATE / 90000
        <= audio_samples[-1]["dts"] + 1024
    )


def test_ffmpeg_plays_the_segments_through_a_vod_playlist(stream, tmp_path: Path):
    packager, _, segments, video, audio = stream
    (tmp_path / "init.mp4").write_bytes(packager.init)
    for s in segments:
        (tmp_path / f"seg{s.segment}.m4s").write_bytes(s.data)
    (tmp_path / "index.m3u8").write_text(
        vod_playlist([(f"seg{s.segment}.m4s", s.duration, s.discontinuity) for s in segments], 2)
    )
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-of",
            "json",
            "-show_entries",
            "stream=codec_type,nb_read_frames",
            str(tmp_path / "index.m3u8"),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    counts = {s["codec_type"]: int(s["nb_read_frames"]) for s in json.loads(out.stdout)["streams"]}
    assert counts == {"video": len(video), "audio": len([a for a in audio if a.dts >= 0])}
