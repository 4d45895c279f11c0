"""A recording on disk and its recovery after a crash, on real x264 + AAC through the packager.

The recording is written the way a broadcast writes it (``RecordingWriter``: each file, then
its journal line); a crash is then imitated by cutting files and journal lines, and
``recover`` must rebuild exactly the segment list and playlists a normal archive writes from
what is still whole.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import m3u8
import pytest

from tests.hls_media import decode, encode_audio, encode_video, interleave
from transcode.hls import (
    RecordedSegment,
    RecordingWriter,
    RenditionInfo,
    RenditionMeta,
    RenditionPackager,
    SegmentReady,
    master_playlist,
    recover,
    write_vod,
)
from transcode.hls.recording import JOURNAL
from transcode.hls.scan import ScanError, check_init, scan_segment
from transcode.types import Track

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
NAME = "360p"
TARGET = 2.0


@dataclasses.dataclass
class Written:
    directory: Path
    recorded: list[RecordedSegment]
    master: str  # what a normal archive would write

    def segment(self, msn: int) -> Path:
        return self.directory / NAME / f"seg{msn}.m4s"


def record(directory: Path, *, seconds: float = 10.0, restart_at: int | None = None) -> Written:
    """Package real media into ``directory`` as ``Broadcast`` does. ``restart_at``: the source
    is re-announced before that video packet (a new packager, init1.mp4, a discontinuity)."""
    vinfo, video = encode_video(seconds)
    ainfo, audio = encode_audio(seconds)
    packets = interleave((vinfo, video), (ainfo, audio))
    meta = RenditionMeta(
        codecs="",
        width=vinfo.width,
        height=vinfo.height,
        frame_rate=vinfo.frame_rate,
        timescale=vinfo.timescale,
    )
    writer = RecordingWriter(directory, journal=True, fsync=False)
    recorded: list[RecordedSegment] = []

    def start(first: int, discontinuity: bool, uri: str) -> RenditionPackager:
        packager = RenditionPackager(
            NAME, vinfo, ainfo, start_time=START, first_segment=first, discontinuity=discontinuity
        )
        writer.write_init(
            NAME, uri, packager.init, dataclasses.replace(meta, codecs=packager.codecs), first
        )
        return packager

    def take(events, uri: str) -> None:
        for event in events:
            if isinstance(event, SegmentReady):
                segment = RecordedSegment(event.segment, event.duration, event.discontinuity, uri)
                writer.write_segment(NAME, segment, event.data)
                recorded.append(segment)

    packager, uri = start(0, False, "init.mp4"), "init.mp4"
    videos = 0
    for packet in packets:
        if packet.track is Track.VIDEO:
            if videos == restart_at:
                take(packager.flush(), uri)
                packager, uri = start(packager.next_segment, True, "init1.mp4"), "init1.mp4"
            videos += 1
        take(packager.add(packet), uri)
    take(packager.flush(), uri)
    writer.close()
    info = RenditionInfo(
        f"{NAME}/index.m3u8",
        packager.peak_bandwidth,
        packager.average_bandwidth,
        vinfo.width,
        vinfo.height,
        vinfo.frame_rate,
        packager.codecs,
    )
    return Written(directory, recorded, master_playlist([info]))


def vod_text(written: Written, recorded: list[RecordedSegment], tmp: Path) -> str:
    write_vod(tmp, {NAME: recorded}, written.master, TARGET)
    return (tmp / NAME / "index.m3u8").read_text()


def test_recovery_rebuilds_what_a_normal_archive_writes(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    assert len(written.recorded) == 5
    found = recover(written.directory)
    assert found is not None and found.dropped == 0
    # Same segments, durations read back from tfdt/trun equal to the packager's to the tick.
    assert found.recorded == {NAME: written.recorded}
    # Same master (bandwidths measured the packager's way) and same media playlist.
    assert found.master == written.master
    assert vod_text(written, found.recorded[NAME], tmp_path / "a") == vod_text(
        written, written.recorded, tmp_path / "b"
    )
    assert found.last_write <= datetime.now(UTC).timestamp()


@pytest.mark.parametrize("cut", ["in the mdat", "in the moof", "one byte"])
def test_a_torn_last_segment_is_dropped(tmp_path: Path, cut: str) -> None:
    written = record(tmp_path / "stream")
    last = written.segment(4)
    data = last.read_bytes()
    half_written = written.directory / NAME / "seg5.m4s.tmp"  # the crash came mid-write
    half_written.write_bytes(data[:100])
    moof_size = int.from_bytes(data[:4], "big")
    keep = {
        "in the mdat": moof_size + 100,
        "in the moof": moof_size // 2,
        "one byte": len(data) - 1,
    }
    last.write_bytes(data[: keep[cut]])
    found = recover(written.directory)
    assert found is not None
    assert found.recorded == {NAME: written.recorded[:4]}
    assert found.dropped == 1
    assert not half_written.exists()


def test_recovered_vod_plays(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    written.segment(4).write_bytes(written.segment(4).read_bytes()[:-10])
    found = recover(written.directory)
    assert found is not None
    duration = write_vod(written.directory, found.recorded, found.master, TARGET)
    assert duration == pytest.approx(sum(s.duration for s in written.recorded[:4]))
    playlist = m3u8.load(str(written.directory / NAME / "index.m3u8"))
    assert playlist.is_endlist and playlist.playlist_type == "vod"
    assert [s.uri for s in playlist.segments] == [f"seg{i}.m4s" for i in range(4)]
    joined = tmp_path / "joined.mp4"
    joined.write_bytes(
        (written.directory / NAME / "init.mp4").read_bytes()
        + b"".join((written.directory / NAME / s.uri).read_bytes() for s in playlist.segments)
    )
    frames = decode(joined)
    assert len(frames["video"]) == round(duration * 30) and frames["audio"]


def test_a_segment_on_disk_before_its_journal_line_is_kept(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    journal = written.directory / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    # The crash came after the last segment's rename, and cut its journal line half way.
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])
    found = recover(written.directory)
    assert found is not None and found.recorded == {NAME: written.recorded}
    # And with the line gone entirely and the file torn, the segment is not taken.
    journal.write_bytes(b"".join(lines[:-1]))
    written.segment(4).write_bytes(written.segment(4).read_bytes()[:-1])
    found = recover(written.directory)
    assert found is not None and found.recorded == {NAME: written.recorded[:4]}


def test_journal_lines_lost_in_the_middle_are_made_up_from_the_disk(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    journal = written.directory / JOURNAL
    lines = journal.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[3])["segment"] == 2
    # A full disk cut seg2's line; seg3's line came out glued to it. Both are unreadable.
    journal.write_bytes(b"".join([*lines[:3], lines[3][:20], *lines[4:]]))
    found = recover(written.directory)
    assert found is not None and found.dropped == 0
    assert found.recorded == {NAME: written.recorded}


def test_a_lost_segment_in_the_middle_leaves_a_discontinuity(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    written.segment(2).unlink()
    found = recover(written.directory)
    assert found is not None and found.dropped == 1
    kept = found.recorded[NAME]
    assert [s.msn for s in kept] == [0, 1, 3, 4]
    assert [s.discontinuity for s in kept] == [False, False, True, False]
    assert "#EXT-X-DISCONTINUITY" in vod_text(written, kept, tmp_path / "vod")


def test_a_file_that_is_not_the_journaled_segment_is_dropped(tmp_path: Path) -> None:
    written = record(tmp_path / "stream")
    written.segment(1).write_bytes(written.segment(3).read_bytes())  # whole, but not seg1
    found = recover(written.directory)
    assert found is not None and [s.msn for s in found.recorded[NAME]] == [0, 2, 3, 4]


def test_a_restarted_source_keeps_its_init_and_discontinuity(tmp_path: Path) -> None:
    written = record(tmp_path / "stream", restart_at=120)
    inits = [s.init for s in written.recorded]
    assert "init1.mp4" in inits and inits[0] == "init.mp4"
    assert [s.discontinuity for s in written.recorded].count(True) == 1
    found = recover(written.directory)
    assert found is not None and found.recorded == {NAME: written.recorded}
    text = vod_text(written, found.recorded[NAME], tmp_path / "vod")
    assert '#EXT-X-MAP:URI="init1.mp4"' in text and "#EXT-X-DISCONTINUITY" in text


def test_nothing_usable_means_nothing_recovered(tmp_path: Path) -> None:
    written = record(tmp_path / "stream", seconds=3.0)
    assert recover(tmp_path / "never-written") is None
    (written.directory / NAME / "init.mp4").write_bytes(b"\x00\x00\x00\x20ftyp")
    assert recover(written.directory) is None  # no whole init: no segment can play
    written = record(tmp_path / "unrecorded", seconds=3.0)
    (written.directory / JOURNAL).unlink()  # recording was off: no journal, no VOD
    assert recover(written.directory) is None
    written = record(tmp_path / "garbage", seconds=3.0)
    (written.directory / JOURNAL).write_bytes(b'{"rendition": "../x", "init": "init.mp4"}\n')
    assert recover(written.directory) is None


def test_scan_reads_durations_and_rejects_every_cut(tmp_path: Path) -> None:
    written = record(tmp_path / "stream", seconds=4.0)
    check_init(written.directory / NAME / "init.mp4")
    path = written.segment(0)
    data = path.read_bytes()
    scan = scan_segment(path)
    assert scan.size == len(data)
    assert scan.duration(90_000) == written.recorded[0].duration
    cut = tmp_path / "cut.m4s"
    for end in sorted({*range(0, len(data), max(1, len(data) // 400)), len(data) - 1}):
        cut.write_bytes(data[:end])
        with pytest.raises(ScanError):
            scan_segment(cut)
    for junk in (b"\x00" * 64, b"\x00\x00\x00\x08free", data[:8] + b"\xff" * 64):
        cut.write_bytes(junk)
        with pytest.raises(ScanError):
            scan_segment(cut)


def test_journal_records_are_one_line_each(tmp_path: Path) -> None:
    written = record(tmp_path / "stream", seconds=3.0)
    records = [json.loads(line) for line in (written.directory / JOURNAL).read_text().splitlines()]
    assert records[0]["init"] == "init.mp4" and records[0]["next"] == 0
    assert records[0]["timescale"] == 90_000 and records[0]["codecs"].startswith("avc1.")
    assert [r["segment"] for r in records[1:]] == [s.msn for s in written.recorded]
