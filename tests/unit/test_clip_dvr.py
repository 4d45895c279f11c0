"""The live edge's DVR buffer for clips (issue 13): the newest segments covering at least
``dvr_seconds`` (never fewer than the playlist window) with their times, and what leaves it
handed once to whoever deletes files."""

from __future__ import annotations

from datetime import UTC, datetime

from transcode.edge import RenditionEdge
from transcode.hls import LivePlaylist, SegmentReady


def edge(dvr_seconds: float, window: int = 3) -> RenditionEdge:
    playlist = LivePlaylist(window_segments=window, segment_duration=2.0, part_target=0.5)
    return RenditionEdge(
        name="360p",
        init=b"init",
        codecs="avc1.64001e",
        width=640,
        height=360,
        frame_rate=30.0,
        playlist=playlist,
        dvr_seconds=dvr_seconds,
    )


def add(r: RenditionEdge, msn: int, duration: float, window: int = 3) -> list[int]:
    segment = SegmentReady(msn, b"x", duration, datetime.now(UTC), False)
    return r.add_segment(segment, window)


def test_the_buffer_covers_dvr_seconds_beyond_the_window() -> None:
    r = edge(dvr_seconds=7.0)
    gone_from_window: list[int] = []
    for msn in range(10):
        gone_from_window += add(r, msn, 2.0)
    # The window keeps 3 segments; the DVR the newest ones covering 7 s: 4 segments (8 s),
    # since dropping the oldest would leave 6 s.
    assert sorted(r.segments) == [7, 8, 9]
    assert [s.msn for s in r.dvr] == [6, 7, 8, 9]
    assert [s.start for s in r.dvr] == [12.0, 14.0, 16.0, 18.0]
    assert all(s.init == "init.mp4" for s in r.dvr)
    assert r.take_expired() == [0, 1, 2, 3, 4, 5]
    assert r.take_expired() == []  # handed once
    assert gone_from_window == list(range(7))


def test_without_dvr_the_window_decides() -> None:
    r = edge(dvr_seconds=0.0)
    for msn in range(6):
        add(r, msn, 2.0)
    assert [s.msn for s in r.dvr] == [3, 4, 5]
    assert r.take_expired() == [0, 1, 2]


def test_times_follow_uneven_durations() -> None:
    r = edge(dvr_seconds=100.0)
    for msn, duration in enumerate([2.0, 1.5, 2.5, 0.5]):
        add(r, msn, duration)
    assert [(s.msn, s.start, s.duration) for s in r.dvr] == [
        (0, 0.0, 2.0),
        (1, 2.0, 1.5),
        (2, 3.5, 2.5),
        (3, 6.0, 0.5),
    ]
    assert r.elapsed == 6.5
    assert r.take_expired() == []
