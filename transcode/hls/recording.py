"""A stream's recording on disk: files and journal as segments close, the VOD, crash recovery.

Layout under a stream's directory: ``{rendition}/init.mp4`` (``init{K}.mp4`` after a
discontinuity), ``{rendition}/seg{N}.m4s``, and ``recording.jsonl``, a journal with one JSON
line per file written, appended (and fsync'd) right after the file is in place:

    {"rendition": "720p", "init": "init.mp4", "next": 0, "codecs": "avc1.64001f,mp4a.40.2",
     "width": 1280, "height": 720, "frame_rate": 30.0, "timescale": 90000}
    {"rendition": "720p", "segment": 0, "duration": 2.0, "discontinuity": false,
     "init": "init.mp4", "bytes": 812345}

At the end of a stream ``write_vod`` turns the segment list into VOD playlists. If the process
dies first, ``recover`` rebuilds that same list from the journal and the files: every segment
it keeps is checked whole with ``scan_segment`` (a torn one is dropped; a gap it leaves becomes
a discontinuity), and segments that reached the disk without their journal line (the crash
came between the two, or a full disk cut the line) are picked up too. The journal is what
makes this exact: it says which initialization section each segment needs and what the master
playlist says of a rendition (frame rate), which the media files alone cannot. Without a
journal (recording off) there is nothing to recover.

Blocking file I/O: call from a worker thread, one writer per stream.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transcode.hls.scan import ScanError, check_init, scan_segment
from transcode.hls.syntax import parse_segment_name, segment_uri
from transcode.hls.vod import RenditionInfo, master_playlist, vod_playlist

log = logging.getLogger(__name__)

JOURNAL = "recording.jsonl"
MEDIA_PLAYLIST = "index.m3u8"
MASTER_PLAYLIST = "master.m3u8"
# A segment's duration read back from its boxes must match the journal to within this (s):
# both are the same tick count over the same timescale, so only a different file differs.
DURATION_TOLERANCE = 1e-6
# Most consecutive journal lines recovery makes up from the disk: numbers are contiguous in a
# rendition, so a record further ahead than this is corrupt, not a run of lost lines.
MAX_LOST_LINES = 1000

_RENDITION_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class RecordedSegment:
    """One closed segment of a rendition, as the VOD playlist lists it."""

    msn: int
    duration: float
    discontinuity: bool
    init: str  # the initialization section it plays after


@dataclass(frozen=True, slots=True)
class RenditionMeta:
    """What an initialization section stands for: the master playlist's view of a rendition,
    and the video timescale needed to read durations back from segments."""

    codecs: str
    width: int
    height: int
    frame_rate: float
    timescale: int


def write_file_atomic(path: Path, data: bytes, *, fsync: bool = False) -> None:
    """Readers (and a crash) see the old file or the whole new one, never a part of it.
    ``fsync``: the data is on the device before the name points at it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not also collect half-written files
        raise


class RecordingWriter:
    """Writes one stream's media files in the order given, journaling each once it is in place.

    ``journal=False`` (recording off): files only, since segments leaving the live window are
    deleted and there will be no VOD to recover.
    """

    def __init__(self, directory: Path, *, journal: bool, fsync: bool) -> None:
        self.directory = directory
        self.journal = journal
        self.fsync = fsync
        self._file: Any = None

    def write_init(
        self, rendition: str, uri: str, data: bytes, meta: RenditionMeta, next_msn: int
    ) -> None:
        """An initialization section; segments from ``next_msn`` on play after it."""
        write_file_atomic(self.directory / rendition / uri, data, fsync=self.fsync)
        self._append({"rendition": rendition, "init": uri, "next": next_msn, **asdict(meta)})

    def write_segment(self, rendition: str, segment: RecordedSegment, data: bytes) -> None:
        write_file_atomic(
            self.directory / rendition / segment_uri(segment.msn), data, fsync=self.fsync
        )
        self._append(
            {
                "rendition": rendition,
                "segment": segment.msn,
                "duration": segment.duration,
                "discontinuity": segment.discontinuity,
                "init": segment.init,
                "bytes": len(data),
            }
        )

    def delete_segment(self, rendition: str, msn: int) -> None:
        (self.directory / rendition / segment_uri(msn)).unlink(missing_ok=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _append(self, record: dict[str, Any]) -> None:
        if not self.journal:
            return
        if self._file is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            # Unbuffered: a line either went out in one write or not at all, and a failed
            # write (a full disk) leaves nothing behind to come out glued to the next line.
            self._file = open(self.directory / JOURNAL, "ab", buffering=0)
        self._file.write(json.dumps(record, separators=(",", ":")).encode() + b"\n")
        if self.fsync:
            os.fsync(self._file.fileno())


def write_vod(
    directory: Path,
    recorded: Mapping[str, Sequence[RecordedSegment]],
    master: str,
    target_duration: float,
    *,
    fsync: bool = False,
) -> float:
    """The VOD playlists of every rendition with segments, then ``master``; returns the VOD
    duration (the longest rendition: they share segment boundaries)."""
    total = 0.0
    for name, segments in recorded.items():
        if not segments:
            continue
        # The recording starts with this stream: no discontinuity before its first segment.
        entries = [
            (segment_uri(s.msn), s.duration, s.discontinuity and k > 0, s.init)
            for k, s in enumerate(segments)
        ]
        write_file_atomic(
            directory / name / MEDIA_PLAYLIST,
            vod_playlist(entries, target_duration).encode(),
            fsync=fsync,
        )
        total = max(total, sum(s.duration for s in segments))
    write_file_atomic(directory / MASTER_PLAYLIST, master.encode(), fsync=fsync)
    return total


# -- recovery -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovered:
    """What a crashed stream's directory still holds, ready for ``write_vod``."""

    recorded: dict[str, list[RecordedSegment]]
    master: str
    dropped: int  # segments known (journal, numbering) but missing or not whole
    last_write: float  # when media last reached the disk (epoch seconds)


@dataclass(slots=True)
class _Rendition:
    """Replay state of one rendition."""

    meta: RenditionMeta | None = None
    init: str | None = None
    next_msn: int = 0
    # The next kept segment follows a new initialization section or a dropped segment.
    gap: bool = False
    segments: list[RecordedSegment] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


class _Replay:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.renditions: dict[str, _Rendition] = {}
        self.dropped = 0
        self.last_write = 0.0
        self._inits: dict[tuple[str, str], bool] = {}

    def init_ok(self, name: str, uri: str) -> bool:
        key = (name, uri)
        if key not in self._inits:
            try:
                check_init(self.directory / name / uri)
                self._inits[key] = True
            except (OSError, ScanError) as exc:
                log.warning(
                    "%s: initialization section %s/%s unusable: %s", self.directory, name, uri, exc
                )
                self._inits[key] = False
        return self._inits[key]

    def on_init(self, name: str, record: dict[str, Any]) -> None:
        uri, next_msn = record["init"], record["next"]
        meta = RenditionMeta(
            str(record["codecs"]),
            int(record["width"]),
            int(record["height"]),
            float(record["frame_rate"]),
            int(record["timescale"]),
        )
        resource = parse_segment_name(uri)
        if resource is None or resource.kind != "init":
            raise ValueError(f"bad init name {uri!r}")
        if not isinstance(next_msn, int) or next_msn < 0 or meta.timescale <= 0:
            raise ValueError("bad init record")
        state = self.renditions.get(name)
        if state is None:
            state = self.renditions[name] = _Rendition()
        else:
            state.gap = True  # a re-announced source: its first segment is a discontinuity
        state.meta, state.init, state.next_msn = meta, uri, next_msn

    def on_segment(self, name: str, record: dict[str, Any]) -> None:
        msn, duration, init = record["segment"], record["duration"], record["init"]
        discontinuity, size = record["discontinuity"], record["bytes"]
        state = self.renditions.get(name)
        if state is None or init != state.init:
            raise ValueError("segment record without its init record")
        if (
            not isinstance(msn, int)
            or msn < 0
            or not isinstance(duration, (int, float))
            or not isinstance(discontinuity, bool)
            or not isinstance(size, int)
        ):
            raise ValueError("bad segment record")
        if not state.next_msn <= msn <= state.next_msn + MAX_LOST_LINES:
            raise ValueError(f"segment {msn} out of order (expected {state.next_msn})")
        self.fill(name, state, msn)
        if not self.keep(name, state, msn, discontinuity, (duration, size)):
            self.dropped += 1
            state.gap = True
        state.next_msn = msn + 1

    def keep(
        self,
        name: str,
        state: _Rendition,
        msn: int,
        discontinuity: bool,
        expected: tuple[float, int] | None = None,
    ) -> bool:
        """Check segment ``msn`` (whole, and the duration and size the journal gives, if it
        has a line for it) and add it to the rendition; False if it is unusable."""
        assert state.meta is not None and state.init is not None
        if not self.init_ok(name, state.init):
            return False
        path = self.directory / name / segment_uri(msn)
        try:
            scan = scan_segment(path)
            mtime = path.stat().st_mtime
        except (OSError, ScanError) as exc:
            log.warning("%s: segment %s/%d unusable: %s", self.directory, name, msn, exc)
            return False
        duration = scan.duration(state.meta.timescale)
        if expected is not None and (
            abs(duration - expected[0]) > DURATION_TOLERANCE or scan.size != expected[1]
        ):
            log.warning(
                "%s: segment %s/%d holds %.6f s in %d bytes, the journal says %.6f s in %d",
                self.directory,
                name,
                msn,
                duration,
                scan.size,
                *expected,
            )
            return False
        state.segments.append(
            RecordedSegment(msn, duration, discontinuity or state.gap, state.init)
        )
        state.sizes.append(scan.size)
        state.gap = False
        self.last_write = max(self.last_write, mtime)
        return True

    def fill(self, name: str, state: _Rendition, end: int | None = None) -> None:
        """Segments from ``state.next_msn`` on that the disk has and the journal lacks (their
        line lost to a crash or a full disk): up to ``end`` (exclusive; one that is not whole
        is dropped and leaves a gap) or, with no end, as long as whole ones follow."""
        while end is None or state.next_msn < end:
            if end is None and not (self.directory / name / segment_uri(state.next_msn)).exists():
                break
            if self.keep(name, state, state.next_msn, False):
                state.next_msn += 1
                continue
            if end is None:
                break  # the crash cut it; the writer works in order, so nothing came after
            self.dropped += 1
            state.gap = True
            state.next_msn += 1

    def trailing(self) -> None:
        """Segments that reached the disk after the journal's last line."""
        for name, state in self.renditions.items():
            if state.meta is not None:
                self.fill(name, state)


def _read_journal(path: Path) -> list[dict[str, Any]]:
    """The journal's records, without lines that are not one (a torn last line, or a line a
    full disk cut short: every line stands on its own, so the ones after it still count)."""
    records = []
    with open(path, "rb") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get("rendition"), str):
                records.append(record)
    return records


def recover(directory: Path) -> Recovered | None:
    """Rebuild a crashed stream's recording from its directory; None if nothing usable (or
    no journal: the stream was not being recorded). Files the crash left half written
    (``*.tmp``) are removed either way."""
    for tmp in [*directory.glob("*.tmp"), *directory.glob("*/*.tmp")]:
        tmp.unlink(missing_ok=True)
    journal = directory / JOURNAL
    try:
        records = _read_journal(journal)
        journal_mtime = journal.stat().st_mtime
    except FileNotFoundError:
        return None
    replay = _Replay(directory)
    replay.last_write = journal_mtime
    for record in records:
        name = record["rendition"]
        try:
            if not _RENDITION_RE.fullmatch(name):
                raise ValueError(f"bad rendition name {name!r}")
            if "segment" in record:
                replay.on_segment(name, record)
            else:
                replay.on_init(name, record)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("%s: bad journal record skipped (%s): %r", directory, exc, record)
    replay.trailing()
    recorded = {name: s.segments for name, s in replay.renditions.items() if s.segments}
    if not recorded:
        return None
    infos = []
    for name in recorded:
        state = replay.renditions[name]
        assert state.meta is not None
        infos.append(_rendition_info(name, state.meta, state.segments, state.sizes))
    return Recovered(recorded, master_playlist(infos), replay.dropped, replay.last_write)


def _rendition_info(
    name: str, meta: RenditionMeta, segments: Sequence[RecordedSegment], sizes: Sequence[int]
) -> RenditionInfo:
    """The master playlist entry, with bandwidths measured as the packager measures them:
    the highest segment bit rate, and total bits over total duration."""
    rates = [
        size * 8 / s.duration for s, size in zip(segments, sizes, strict=True) if s.duration > 0
    ]
    seconds = sum(s.duration for s in segments)
    average = math.ceil(sum(sizes) * 8 / seconds) if seconds > 0 else 0
    return RenditionInfo(
        uri=f"{name}/{MEDIA_PLAYLIST}",
        bandwidth=max(1, math.ceil(max(rates, default=0))),
        average_bandwidth=max(1, average),
        width=meta.width,
        height=meta.height,
        frame_rate=meta.frame_rate,
        codecs=meta.codecs,
    )
