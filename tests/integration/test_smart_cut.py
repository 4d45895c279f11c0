"""Clip smart cut on real recordings: the product's packager writes a VOD from ffmpeg-encoded
media, ``transcode.smart_cut`` cuts it, and ffprobe/ffmpeg/PyAV check what came out.

What must hold (issue 13): the clip lasts what was asked to within one frame; its first frame
decodes; the whole GOPs in the middle are the source's packets byte for byte; a cut inside one
GOP and a cut on a keyframe work (nothing re-encoded at the head in the latter); the MP4 reads
in ffprobe and the HLS set decodes to the end without an error.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import av
import numpy as np
import pytest

from benchmarks.lib.vod_media import Rung, make_restarted_vod, make_vod
from transcode.avc import parse_avcc
from transcode.cut.reader import read_init
from transcode.cut.reencode import parameter_set_ids
from transcode.smart_cut import (
    CutError,
    CutOptions,
    CutResult,
    cut_clip,
    rendition_from_playlist,
    renditions_from_master,
)

pytestmark = pytest.mark.integration
FPS = 30
FRAME = 1 / FPS
RUNGS = [Rung("180p", 320, 180, 400), Rung("108p", 192, 108, 200)]


@pytest.fixture(scope="module")
def vod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s, two renditions, an IDR (and a segment) every 2 s, no B-frames."""
    return make_vod(tmp_path_factory.mktemp("vod"), RUNGS, 10, gop_seconds=2.0)


@pytest.fixture(scope="module")
def vod_bframes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s, one rendition, B-frames, an IDR every second (two GOPs per 2 s segment)."""
    return make_vod(tmp_path_factory.mktemp("vodb"), RUNGS[:1], 10, gop_seconds=1.0, bframes=2)


def probe(path: Path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_format",
            "-show_streams",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def decode_errors(path: Path) -> str:
    """ffmpeg's complaints decoding every stream of ``path`` to the end (empty: none)."""
    run = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0", "-f", "null", "-"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    return run.stderr.strip()


def video_packets(path: Path) -> list[tuple[float, bytes, bool]]:
    """(pts seconds, bytes, keyframe) of every video packet, in decode order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (float(p.pts * p.time_base), bytes(p), p.is_keyframe)
            for p in container.demux(stream)
            if p.pts is not None and p.size
        ]


def audio_packets(path: Path) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return [
            (float(p.pts * p.time_base), bytes(p))
            for p in container.demux(stream)
            if p.pts is not None and p.size
        ]


def pictures(path: Path, t0: float, t1: float) -> dict[int, np.ndarray]:
    """Luma of the frames presented in [t0, t1), by presentation time in ms."""
    with av.open(str(path)) as container:
        return {
            round(f.time * 1000): f.to_ndarray(format="gray").astype(np.float64)
            for f in container.decode(video=0)
            if f.time is not None and t0 - 1e-6 <= f.time < t1 - 1e-6
        }


def check_pictures(source_mp4: Path, clip_mp4: Path, start: float, end: float) -> None:
    """Frame accuracy seen in the pictures: the clip shows the source's frame at every
    instant (a frame early or late differs a lot: the test pattern moves); copied frames
    decode to exactly the source's pictures, re-encoded ones within 40 dB PSNR of them."""
    source = pictures(source_mp4, start, end)
    clip = pictures(clip_mp4, 0, end - start)
    assert len(clip) == len(source) == round((end - start) * FPS)
    exact = 0
    for t, y in clip.items():
        mse = float(((y - source[t + round(start * 1000)]) ** 2).mean())
        exact += mse == 0
        assert mse == 0 or 10 * np.log10(255**2 / mse) > 40, f"frame at {t} ms"
    assert exact > 0


def check_clip(result: CutResult, start: float, end: float) -> dict:
    info = probe(result.mp4)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    audio = next(s for s in info["streams"] if s["codec_type"] == "audio")
    asked = end - start
    assert abs(float(video["duration"]) - asked) <= FRAME + 1e-6
    assert abs(int(video["nb_read_frames"]) - asked * FPS) <= 1
    assert abs(result.duration - asked) <= FRAME + 1e-6
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 1024 / 48000 + 1e-6
    assert abs(float(info["format"]["duration"]) - asked) <= FRAME + 1e-6
    # The first frame decodes, and is the first thing presented.
    with av.open(str(result.mp4)) as container:
        first = next(container.decode(video=0))
        assert first.time is not None and abs(first.time) < 1e-6
        assert first.width == RUNGS[0].width
    assert decode_errors(result.mp4) == ""
    assert decode_errors(result.hls_master) == ""
    # Re-encoded frames carry the source's colour description like the copied ones.
    colours = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_entries",
            "frame=color_space,color_primaries,color_range",
            "-of",
            "csv=p=0",
            str(result.mp4),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert {c.rstrip(",") for c in colours} == {"tv,bt709,bt709"}
    with av.open(str(result.thumbnail)) as container:
        assert next(container.decode(video=0)).width > 0
    return info


def same_middle(source_mp4: Path, clip_mp4: Path, start: float, lo: float, hi: float) -> int:
    """Packets the clip presents in [lo, hi) (clip time) equal the source's at + start, byte
    for byte; returns how many were compared."""
    source = {round(t * 1000): data for t, data, _ in video_packets(source_mp4)}
    compared = 0
    for t, data, _ in video_packets(clip_mp4):
        if lo - 1e-6 <= t < hi - 1e-6:
            assert data == source[round((t + start) * 1000)], f"packet at {t:.3f}s differs"
            compared += 1
    return compared


def test_clip_across_gops(vod: Path, tmp_path: Path) -> None:
    renditions = renditions_from_master(vod)
    assert [r.name for r in renditions] == ["180p", "108p"]
    result = cut_clip(renditions, 2.5, 7.3, tmp_path / "clip")
    check_clip(result, 2.5, 7.3)
    # Per rendition: 2.5-4.0 re-encoded (45 frames), 4.0-6.0 copied, 6.0-7.3 copied as the
    # first frames of a GOP without B-frames (their references are all kept).
    assert result.reencoded_video_frames == 2 * 45
    assert result.copied_video_frames == 2 * (60 + 39)
    assert same_middle(vod.parent / "source-180p.mp4", result.mp4, 2.5, 1.5, 4.8) == 99
    check_pictures(vod.parent / "source-180p.mp4", result.mp4, 2.5, 7.3)
    # Both renditions' playlists are there and decode on their own.
    for rung in RUNGS:
        playlist = result.hls_master.parent / rung.name / "index.m3u8"
        assert decode_errors(playlist) == ""
        with av.open(str(playlist)) as container:
            frames = sum(1 for _ in container.decode(video=0))
        assert frames == 144
    # One sample description: the source's parameter sets and the re-encoder's, distinct ids.
    avcc = read_init(result.hls_master.parent / "180p" / "init.mp4").video
    assert avcc is not None
    sps_ids, pps_ids = parameter_set_ids(avcc.config)
    assert len(parse_avcc(avcc.config).sps) == 2 and len(sps_ids) == 2 and len(pps_ids) == 2


def test_clip_inside_one_gop(vod: Path, tmp_path: Path) -> None:
    result = cut_clip(renditions_from_master(vod), 2.3, 3.1, tmp_path / "clip")
    check_clip(result, 2.3, 3.1)
    assert result.copied_video_frames == 0
    assert result.reencoded_video_frames == 2 * 24


def test_clip_starting_on_a_keyframe(vod: Path, tmp_path: Path) -> None:
    result = cut_clip(renditions_from_master(vod), 6.0, 9.0, tmp_path / "clip")
    check_clip(result, 6.0, 9.0)
    # Nothing re-encoded at the head (nor at the tail: no B-frames), every packet the source's.
    assert result.reencoded_video_frames == 0
    assert result.copied_video_frames == 2 * 90
    assert same_middle(vod.parent / "source-180p.mp4", result.mp4, 6.0, 0.0, 3.0) == 90
    # Audio starts with the AAC frame nearest 6.0 s (5.995 s: AAC frames start 1024 samples
    # apart from -1024/48000 s), which the packager put in the segment before.
    source = audio_packets(vod.parent / "source-180p.mp4")
    nearest = min(source, key=lambda p: abs(p[0] - 6.0))
    assert abs(nearest[0] - 5.99467) < 1e-4
    first = audio_packets(result.mp4)[0]
    assert first[1] == nearest[1] and abs(first[0]) < 1e-6


def test_clip_between_frames_rounds_to_the_nearest(vod: Path, tmp_path: Path) -> None:
    # 1.01 s is nearest the frame at 1.0 s; 3.349 nearest 3.333 (not kept: the end is open).
    result = cut_clip(renditions_from_master(vod), 1.01, 3.349, tmp_path / "clip")
    assert round(result.duration * FPS) == 70


def test_clip_with_bframes(vod_bframes: Path, tmp_path: Path) -> None:
    rendition = rendition_from_playlist(vod_bframes.parent / "180p" / "index.m3u8")
    result = cut_clip([rendition], 2.5, 7.3, tmp_path / "clip")
    check_clip(result, 2.5, 7.3)
    # Head 2.5-3.0 and tail 7.0-7.3 re-encoded (reordered frames), 3.0-7.0 copied.
    assert result.reencoded_video_frames == 15 + 9
    assert result.copied_video_frames == 120
    assert same_middle(vod_bframes.parent / "source-180p.mp4", result.mp4, 2.5, 0.5, 4.5) == 120
    check_pictures(vod_bframes.parent / "source-180p.mp4", result.mp4, 2.5, 7.3)


def test_clip_without_audio(tmp_path: Path) -> None:
    master = make_vod(tmp_path / "vod", RUNGS[1:], 4, audio=False)
    result = cut_clip(renditions_from_master(master), 0.5, 3.0, tmp_path / "clip")
    streams = probe(result.mp4)["streams"]
    assert [s["codec_type"] for s in streams] == ["video"]
    assert int(streams[0]["nb_read_frames"]) == 75
    assert (result.width, result.height) == (192, 108)
    assert decode_errors(result.hls_master) == ""


def test_clip_after_a_restart_of_the_source(tmp_path: Path) -> None:
    """Segments after a reconnect play after ``init1.mp4`` (other parameter sets, timestamps
    from 0 again): a clip there uses that init; one across the restart is refused."""
    master = make_restarted_vod(tmp_path / "vod", RUNGS[1], 4, 4)
    rendition = renditions_from_master(master)[0]
    assert [s.init.name if s.init else None for s in rendition.segments] == [
        None,
        None,
        "init1.mp4",
        "init1.mp4",
    ]
    result = cut_clip([rendition], 4.5, 7.5, tmp_path / "clip")
    assert abs(float(probe(result.mp4)["format"]["duration"]) - 3.0) <= FRAME + 1e-6
    assert result.copied_video_frames == 45 and result.reencoded_video_frames == 45
    assert decode_errors(result.mp4) == "" and decode_errors(result.hls_master) == ""
    with pytest.raises(CutError, match="restart"):
        cut_clip([rendition], 3.0, 5.0, tmp_path / "across")


def test_bad_ranges(vod: Path, tmp_path: Path) -> None:
    renditions = renditions_from_master(vod)
    with pytest.raises(CutError):
        cut_clip(renditions, 3.0, 3.0, tmp_path / "a")
    with pytest.raises(CutError):
        cut_clip(renditions, -1.0, 3.0, tmp_path / "b")
    with pytest.raises(CutError):
        cut_clip(renditions, 0.0, 9.0, tmp_path / "c", CutOptions(max_duration=5.0))
    with pytest.raises(CutError):
        cut_clip(renditions, 20.0, 25.0, tmp_path / "d")
    with pytest.raises(CutError):
        cut_clip([], 1.0, 2.0, tmp_path / "e")
