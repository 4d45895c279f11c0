"""The MP4 remux planner: a recording written by the project's own fMP4 writer (real x264
with B-frames and real AAC through PyAV) comes out as one faststart MP4 that ffprobe and PyAV
read with every sample's bytes and times unchanged, any byte range of it readable on its own,
and recordings it cannot copy faithfully refused with ``RemuxError``."""

from __future__ import annotations

import dataclasses
import random
import subprocess
from pathlib import Path

import av
import pytest

from tests.conftest import make_source
from tests.hls_media import encode_audio, encode_video, ffprobe, iter_boxes
from transcode.hls.fmp4 import fragment, init_segment
from transcode.remux import RemuxError, plan_mp4, rendition_groups, rendition_names
from transcode.types import EncodedPacket

SECONDS = 6.0


def _media() -> tuple[bytes, list[EncodedPacket], list[EncodedPacket]]:
    vinfo, video = encode_video(SECONDS, bframes=2)
    ainfo, audio = encode_audio(SECONDS)
    shift = video[0].pts - video[0].dts  # the packager's rule: the first IDR decodes at its pts
    shifted = [dataclasses.replace(p, dts=p.dts + shift) for p in video]
    return init_segment(vinfo, ainfo), shifted, [a for a in audio if a.dts >= 0]


def _write_recording(folder: Path, *, second_init: str = "init.mp4") -> tuple[list, list]:
    """Three 2 s segments of two fragments each; the last after ``second_init``."""
    init, video, audio = _media()
    folder.mkdir(parents=True)
    (folder / "init.mp4").write_bytes(init)
    (folder / second_init).write_bytes(init)
    lines = ["#EXTM3U", "#EXT-X-PLAYLIST-TYPE:VOD", '#EXT-X-MAP:URI="init.mp4"']
    seq = 0
    for n in range(3):
        data = b""
        for half in range(2):
            lo, hi = (2 * n + half) * 30, (2 * n + half + 1) * 30
            vids = video[lo:hi]
            t0, t1 = lo / 30 * 48000, hi / 30 * 48000
            auds = [a for a in audio if t0 <= a.dts < t1]
            seq += 1
            data += fragment(seq, vids, auds)
        (folder / f"seg{n}.m4s").write_bytes(data)
        if n == 2 and second_init != "init.mp4":
            lines += ["#EXT-X-DISCONTINUITY", f'#EXT-X-MAP:URI="{second_init}"']
        lines += ["#EXTINF:2.0,", f"seg{n}.m4s"]
    lines.append("#EXT-X-ENDLIST")
    (folder / "index.m3u8").write_text("\n".join(lines) + "\n")
    (folder.parent / "master.m3u8").write_text(
        f"#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n{folder.name}/index.m3u8\n"
    )
    return video, [a for a in audio if a.dts < 180 / 30 * 48000]


def _whole(plan) -> bytes:
    with plan.reader() as reader:
        data = b"".join(reader.chunks(block=10_000))
    assert len(data) == plan.size
    return data


@pytest.mark.parametrize("second_init", ["init.mp4", "init1.mp4"])
def test_the_mp4_holds_the_same_samples_faststart(tmp_path: Path, second_init: str) -> None:
    video, audio = _write_recording(tmp_path / "vod" / "108p", second_init=second_init)
    assert rendition_names(tmp_path / "vod") == ["108p"]
    groups = rendition_groups(tmp_path / "vod", "108p")
    assert len(groups) == (2 if second_init != "init.mp4" else 1)
    plan = plan_mp4(groups)
    data = _whole(plan)
    out = tmp_path / "out.mp4"
    out.write_bytes(data)

    kinds = [kind for kind, *_ in iter_boxes(data)]
    assert kinds == ["ftyp", "moov", "mdat"], kinds
    assert len(plan.head) < 64 << 10  # the header only, no media

    probe = ffprobe(out, "-show_entries", "format=duration:stream=codec_name,nb_frames")
    assert [s["codec_name"] for s in probe["streams"]] == ["h264", "aac"]
    assert abs(float(probe["format"]["duration"]) - SECONDS) <= 1 / 30 + 0.025
    assert int(probe["streams"][0]["nb_frames"]) == len(video)

    with av.open(str(out)) as c:
        got_video = [(bytes(p), p.pts, p.is_keyframe) for p in c.demux(video=0) if p.size]
    with av.open(str(out)) as c:
        got_audio = [bytes(p) for p in c.demux(audio=0) if p.size]
    assert [g[0] for g in got_video] == [p.data for p in video]
    assert [g[2] for g in got_video] == [p.keyframe for p in video]
    # Presentation times keep their spacing and order (B-frames' signed offsets survive).
    first = video[0].pts
    shift = got_video[0][1]
    assert [g[1] - shift for g in got_video] == [p.pts - first for p in video]
    assert got_audio == [a.data for a in audio]


def test_any_byte_range_reads_on_its_own(tmp_path: Path) -> None:
    _write_recording(tmp_path / "vod" / "108p")
    plan = plan_mp4(rendition_groups(tmp_path / "vod", "108p"))
    data = _whole(plan)
    rng = random.Random(7)
    with plan.reader() as reader:
        for _ in range(200):
            start = rng.randrange(plan.size)
            n = rng.randrange(1, 300_000)
            assert reader.read(start, n) == data[start : start + n]
        assert reader.read(plan.size - 3, 100) == data[-3:]
        assert (
            b"".join(reader.chunks(len(plan.head) - 5, len(plan.head) + 5))
            == (data[len(plan.head) - 5 : len(plan.head) + 5])
        )


def test_recordings_it_cannot_copy_are_refused(tmp_path: Path) -> None:
    folder = tmp_path / "vod" / "108p"
    _write_recording(folder)
    seg = folder / "seg1.m4s"
    whole = seg.read_bytes()

    seg.write_bytes(whole[:-10])  # torn: the last mdat is cut
    with pytest.raises(RemuxError):
        plan_mp4(rendition_groups(tmp_path / "vod", "108p"))
    seg.unlink()
    with pytest.raises(RemuxError):
        plan_mp4(rendition_groups(tmp_path / "vod", "108p"))
    seg.write_bytes(whole)

    with pytest.raises(RemuxError):
        rendition_groups(tmp_path / "vod", "../108p")
    with pytest.raises(RemuxError):
        rendition_groups(tmp_path / "vod", "720p")  # no such rendition
    playlist = folder / "index.m3u8"
    playlist.write_text(playlist.read_text().replace("seg0.m4s", "../../etc/passwd"))
    with pytest.raises(RemuxError):
        rendition_groups(tmp_path / "vod", "108p")


def test_a_segment_changing_after_the_plan_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "vod" / "108p"
    _write_recording(folder)
    plan = plan_mp4(rendition_groups(tmp_path / "vod", "108p"))
    (folder / "seg2.m4s").write_bytes(b"")
    with plan.reader() as reader, pytest.raises(RemuxError):
        for _ in reader.chunks():
            pass


def test_an_fmp4_hls_written_by_ffmpeg_comes_out_the_same(tmp_path: Path) -> None:
    """Another writer's fragments (tfhd defaults, first-sample flags): the same samples."""
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=4, bitrate="300k")
    folder = tmp_path / "vod" / "v"
    folder.mkdir(parents=True)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(source), "-c", "copy", "-f", "hls"]
        + ["-hls_segment_type", "fmp4", "-hls_time", "2", "-hls_playlist_type", "vod"]
        + ["-hls_fmp4_init_filename", "init.mp4"]
        + ["-hls_segment_filename", str(folder / "seg%d.m4s"), str(folder / "index.m3u8")],
        check=True,
    )
    plan = plan_mp4(rendition_groups(tmp_path / "vod", "v"))
    out = tmp_path / "out.mp4"
    out.write_bytes(_whole(plan))
    playlist = folder / "index.m3u8"
    for kind in ("video", "audio"):
        with av.open(str(out)) as got, av.open(str(playlist)) as want:
            assert [bytes(p) for p in got.demux(**{kind: 0}) if p.size] == [
                bytes(p) for p in want.demux(**{kind: 0}) if p.size
            ], kind
    probe = ffprobe(out, "-show_entries", "format=duration")
    assert abs(float(probe["format"]["duration"]) - 4.0) <= 0.05
