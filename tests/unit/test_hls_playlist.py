"""Playlists rendered by transcode.hls.playlist, parsed back with the `m3u8` package and checked
against the RFC 8216 / rfc8216bis rules; resource-name parsing against hostile input."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone

import m3u8
import pytest
from hypothesis import given
from hypothesis import strategies as st

from transcode.hls import (
    LivePlaylist,
    PartReady,
    RenditionInfo,
    RenditionReport,
    SegmentReady,
    master_playlist,
    parse_segment_name,
    part_uri,
    segment_uri,
    vod_playlist,
)

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
PARTS = 6
PART = 2.0 / PARTS


class Feeder:
    """Drives a LivePlaylist the way the packager's events would."""

    def __init__(self, playlist: LivePlaylist, first: int = 0) -> None:
        self.playlist = playlist
        self.msn = first
        self.part = 0
        self.time = 0.0

    def part_(self, duration: float = PART, *, discontinuity: bool = False) -> None:
        pdt = START + timedelta(seconds=self.time)
        self.playlist.add_part(
            PartReady(self.msn, self.part, b"", duration, self.part == 0, discontinuity, pdt)
        )
        self.part += 1

    def segment(
        self, duration: float = 2.0, *, discontinuity: bool = False, parts: int = PARTS
    ) -> None:
        for _ in range(parts - self.part):
            self.part_(duration / parts, discontinuity=discontinuity)
        pdt = START + timedelta(seconds=self.time)
        self.playlist.add_segment(SegmentReady(self.msn, b"", duration, pdt, discontinuity))
        self.msn += 1
        self.part = 0
        self.time += duration


def live(**kw) -> tuple[LivePlaylist, Feeder]:
    kw.setdefault("segment_duration", 2.0)
    kw.setdefault("part_target", 0.334)
    playlist = LivePlaylist(**kw)
    return playlist, Feeder(playlist, kw.get("first_segment", 0))


def parse(text: str) -> m3u8.M3U8:
    assert text.startswith("#EXTM3U\n") and text.endswith("\n")
    return m3u8.loads(text)


def check_rules(text: str) -> m3u8.M3U8:
    """The invariants every live playlist we render must satisfy."""
    p = parse(text)
    assert p.version >= 9
    td = p.target_duration
    assert all(round(s.duration) <= td for s in p.segments if s.uri)
    sc = p.server_control
    assert sc.can_block_reload == "YES"
    assert sc.part_hold_back >= 3 * p.part_inf.part_target - 1e-9
    assert sc.can_skip_until >= 6 * td
    assert all(part.duration <= p.part_inf.part_target for s in p.segments for part in s.parts)
    assert [m.uri for m in p.segment_map] == ["init.mp4"]
    assert p.is_endlist == (p.preload_hint is None)
    return p


def test_live_playlist_values():
    playlist, feed = live()
    for _ in range(3):
        feed.segment()
    feed.part_()
    feed.part_()
    text = playlist.render()
    p = check_rules(text)
    assert p.target_duration == 2
    assert p.part_inf.part_target == 0.334
    assert p.server_control.part_hold_back == pytest.approx(1.002)
    assert p.server_control.can_skip_until == 12.0
    assert p.media_sequence == 0 and p.discontinuity_sequence is None
    complete = [s for s in p.segments if s.uri]
    assert [s.uri for s in complete] == ["seg0.m4s", "seg1.m4s", "seg2.m4s"]
    assert [s.duration for s in complete] == [2.0] * 3
    assert [s.program_date_time for s in complete] == [
        START + timedelta(seconds=2 * i) for i in range(3)
    ]
    in_progress = p.segments[-1]
    assert in_progress.uri is None
    assert [(x.uri, x.independent) for x in in_progress.parts] == [
        ("part3.0.m4s", "YES"),
        ("part3.1.m4s", None),
    ]
    assert p.preload_hint.hint_type == "PART" and p.preload_hint.uri == "part3.2.m4s"
    assert playlist.next_part() == (3, 2) and playlist.last_msn_part() == (3, 1)
    assert "#EXT-X-ENDLIST" not in text
    # The parts of a segment come after its PDT and before its EXTINF (rfc8216bis 4.4.4.9).
    lines = text.splitlines()
    assert lines.index(
        '#EXT-X-PART:DURATION=0.33333,URI="part2.0.m4s",INDEPENDENT=YES'
    ) > lines.index("#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:04.000Z")


def assert_appended(before: str, after: str) -> None:
    """RFC 8216 6.2.1: a live playlist only grows at the end (besides the allowed removals,
    here: EXT-X-PART tags that left the live edge and the preload hint)."""
    old = [line for line in before.splitlines() if not line.startswith("#EXT-X-PRELOAD-HINT")]
    new = after.splitlines()
    old = [line for line in old if not (line.startswith("#EXT-X-PART:") and line not in new)]
    assert new[: len(old)] == old


def test_live_playlist_is_append_only():
    playlist, feed = live(window_segments=50)
    previous = playlist.render()
    for n in range(8):
        for _ in range(PARTS):
            feed.part_(discontinuity=n == 4)
            text = playlist.render()
            assert_appended(previous, text)
            previous = text
        feed.segment(discontinuity=n == 4)
        text = playlist.render()
        assert_appended(previous, text)
        previous = text
    # Parts of older segments did leave: the check above was not vacuous.
    assert "part0.0.m4s" not in previous and "#EXT-X-PROGRAM-DATE-TIME" in previous


def test_in_progress_segment_without_part_dates_derives_one():
    playlist, feed = live()
    feed.segment()
    playlist.add_part(PartReady(1, 0, b"", PART, True))
    lines = playlist.render().splitlines()
    check_rules("\n".join(lines) + "\n")
    assert lines[-3:-1] == [
        "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:02.000Z",
        '#EXT-X-PART:DURATION=0.33333,URI="part1.0.m4s",INDEPENDENT=YES',
    ]


def test_parts_only_for_the_last_three_target_durations():
    playlist, feed = live(window_segments=6)
    for _ in range(6):
        feed.segment()
    feed.part_()
    p = check_rules(playlist.render())
    with_parts = [s.uri for s in p.segments if s.parts]
    assert with_parts == ["seg3.m4s", "seg4.m4s", "seg5.m4s", None]
    # What is listed covers at least three target durations back from the end.
    listed = sum(part.duration for s in p.segments for part in s.parts)
    assert listed >= 3 * p.target_duration


def test_media_sequence_advances_as_the_window_slides():
    playlist, feed = live(window_segments=4)
    seen = []
    for n in range(1, 10):
        feed.segment()
        p = check_rules(playlist.render())
        complete = [s for s in p.segments if s.uri]
        seen.append(p.media_sequence)
        assert len(complete) == min(n, 4)
        assert complete[0].uri == segment_uri(p.media_sequence)
        assert complete[-1].uri == segment_uri(n - 1)
    assert seen == [0, 0, 0, 0, 1, 2, 3, 4, 5]
    assert not playlist.has_segment(4) and playlist.has_segment(5) and playlist.has_part(8, 5)
    assert not playlist.has_part(4, 0) and not playlist.has_part(8, 6)


def test_target_duration_rounds_and_never_shrinks():
    playlist, feed = live(window_segments=2)
    feed.segment(2.4)  # rounds to 2: no change (RFC 8216 4.3.3.1 uses the nearest integer)
    assert check_rules(playlist.render()).target_duration == 2
    feed.segment(2.6)
    assert check_rules(playlist.render()).target_duration == 3
    for _ in range(3):
        feed.segment()
    p = check_rules(playlist.render())
    assert p.target_duration == 3 and p.server_control.can_skip_until == 18.0


def test_part_target_covers_a_longer_part():
    playlist, feed = live()
    feed.part_(0.3334)
    assert check_rules(playlist.render()).part_inf.part_target == 0.334
    feed.part_(0.36)
    p = check_rules(playlist.render())
    assert p.part_inf.part_target == 0.36 and p.server_control.part_hold_back == pytest.approx(1.08)


def expected_skip(durations: list[float], skip_until: float) -> int:
    end = sum(durations)
    count, elapsed = 0, 0.0
    for d in durations:
        elapsed += d
        if end - elapsed < skip_until:
            break
        count += 1
    return count


def test_delta_update_skips_old_segments():
    playlist, feed = live(window_segments=20)
    durations = [2.0, 1.9, 2.1] * 7
    for d in durations:
        feed.segment(d)
    feed.part_()
    full = check_rules(playlist.render())
    delta_text = playlist.render(skip=True)
    delta = check_rules(delta_text)
    window = durations[-20:]
    n = expected_skip(window, full.server_control.can_skip_until)
    assert n == 14
    assert delta.skip.skipped_segments == n
    assert delta.media_sequence == full.media_sequence
    assert [s.uri for s in delta.segments] == [s.uri for s in full.segments][n:]
    # Every skipped segment ends at least CAN-SKIP-UNTIL before the end of the last segment.
    assert sum(window[n:]) < 12.0 + window[n] and sum(window[n:]) >= 12.0 - 1e-9
    assert delta_text.count("#EXT-X-SKIP") == 1
    assert (
        "seg1.m4s" in playlist.render().splitlines() and "seg1.m4s" not in delta_text.splitlines()
    )
    assert "seg15.m4s" in delta_text.splitlines() and "seg14.m4s" not in delta_text.splitlines()


def test_delta_without_anything_to_skip_is_the_full_playlist():
    playlist, feed = live()
    for _ in range(6):
        feed.segment()
    assert playlist.render(skip=True) == playlist.render()
    assert "EXT-X-SKIP" not in playlist.render(skip=True)


def test_discontinuities_and_their_sequence():
    playlist, feed = live(window_segments=3, first_segment=10)
    feed.segment()
    feed.segment(discontinuity=True)
    feed.segment()
    text = playlist.render()
    p = check_rules(text)
    assert [s.discontinuity for s in p.segments if s.uri] == [False, True, False]
    assert p.discontinuity_sequence is None and "DISCONTINUITY-SEQUENCE" not in text
    lines = text.splitlines()
    tag = lines.index("#EXT-X-DISCONTINUITY")
    assert (
        lines[tag + 1].startswith("#EXT-X-PROGRAM-DATE-TIME") and p.segments[1].uri == "seg11.m4s"
    )

    feed.segment()  # seg10 leaves: no tag removed
    assert check_rules(playlist.render()).discontinuity_sequence is None
    feed.segment()  # seg11 (with the tag) leaves: RFC 8216 6.2.2 bumps the sequence
    p = check_rules(playlist.render())
    assert p.discontinuity_sequence == 1 and p.media_sequence == 12

    # A restarted source: the tag goes before the in-progress segment's first part.
    feed.part_(discontinuity=True)
    text = playlist.render()
    lines = text.splitlines()
    tag = lines.index("#EXT-X-DISCONTINUITY")
    assert lines[tag + 1] == "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:10.000Z"
    assert lines[tag + 2].startswith('#EXT-X-PART:DURATION=0.33333,URI="part15.0.m4s"')
    feed.segment(discontinuity=True)
    for _ in range(3):
        feed.segment()
    assert check_rules(playlist.render()).discontinuity_sequence == 2


def test_delta_keeps_the_discontinuity_sequence():
    playlist, feed = live(window_segments=12)
    feed.segment(discontinuity=True)
    for _ in range(12):
        feed.segment()
    full = check_rules(playlist.render())
    delta = check_rules(playlist.render(skip=True))
    assert delta.skip.skipped_segments == 6
    assert delta.discontinuity_sequence == full.discontinuity_sequence == 1


def test_end_of_stream():
    playlist, feed = live()
    feed.segment()
    feed.segment()
    feed.part_()
    playlist.end()
    text = playlist.render(skip=True)
    p = check_rules(text)
    assert p.is_endlist and p.preload_hint is None and "PRELOAD-HINT" not in text
    assert [s.uri for s in p.segments] == ["seg0.m4s", "seg1.m4s"], "unfinished parts are dropped"
    assert playlist.blocking_state(99, 0) == "ready", "directives are ignored after ENDLIST"
    with pytest.raises(RuntimeError):
        feed.part_()


def test_blocking_reload_states():
    playlist, feed = live()
    assert playlist.blocking_state(0, 0) == "wait"
    with pytest.raises(LookupError):
        playlist.last_msn_part()
    feed.segment()
    feed.segment()
    feed.part_()
    feed.part_()  # newest part: 2.1
    assert playlist.last_msn_part() == (2, 1)
    assert playlist.blocking_state(1) == "ready"
    assert playlist.blocking_state(2) == "wait"  # segment 2 is not complete yet
    assert playlist.blocking_state(2, 1) == "ready"
    assert playlist.blocking_state(2, 2) == "wait"
    assert playlist.blocking_state(1, 6) == "ready", "past the last part of 1 means 2.0"
    assert playlist.blocking_state(3, 0) == "wait"
    assert playlist.blocking_state(4) == "bad", "more than two segments ahead"
    assert playlist.blocking_state(2, 40) == "bad", "beyond the Advance Part Limit"
    assert playlist.blocking_state(-1) == "bad"
    assert playlist.has_part(2, 1) and not playlist.has_part(2, 2) and playlist.has_part(0, 5)
    feed.segment()  # segment 2 ends with 6 parts; nothing of 3 yet
    assert playlist.blocking_state(2, 20) == "wait", "part 20 of a finished segment 2 means 3.0"
    assert playlist.blocking_state(3, 20) == "bad"
    assert (
        playlist.uri_for_part(2, 2) == "part2.2.m4s" and playlist.uri_for_segment(2) == "seg2.m4s"
    )


def test_events_out_of_order_are_rejected():
    playlist, feed = live()
    feed.segment()
    with pytest.raises(ValueError):
        playlist.add_part(PartReady(3, 0, b"", PART, True))
    with pytest.raises(ValueError):
        playlist.add_part(PartReady(1, 1, b"", PART, False))
    with pytest.raises(ValueError):
        playlist.add_segment(SegmentReady(0, b"", 2.0, START, False))


def test_first_event_sets_the_starting_number():
    playlist = LivePlaylist()
    playlist.add_part(PartReady(41, 0, b"", PART, True))
    assert playlist.next_part() == (41, 1)
    assert check_rules(playlist.render()).media_sequence == 41


def test_empty_live_playlist_hints_the_first_part():
    p = check_rules(LivePlaylist(first_segment=5).render())
    assert p.media_sequence == 5 and p.preload_hint.uri == "part5.0.m4s" and not p.segments


def test_vod_playlist():
    segments = [
        ("seg0.m4s", 2.0, False),
        ("seg1.m4s", 2.0, False),
        ("seg2.m4s", 2.6, True),
        ("seg3.m4s", 1.2, False),
    ]
    text = vod_playlist(segments, 2)
    p = parse(text)
    assert p.playlist_type == "vod" and p.is_endlist and p.media_sequence == 0
    assert p.target_duration == 3, "raised to cover the 2.6 s segment"
    assert all(round(s.duration) <= p.target_duration for s in p.segments)
    assert [(s.uri, s.duration, s.discontinuity) for s in p.segments] == segments
    assert [m.uri for m in p.segment_map] == ["init.mp4"]
    assert "EXT-X-PART" not in text and "PRELOAD" not in text and "SERVER-CONTROL" not in text
    assert parse(vod_playlist([], 4)).target_duration == 4


def test_master_playlist():
    renditions = [
        RenditionInfo(
            "480p/index.m3u8", 1_200_000, 1_000_000, 854, 480, 30.0, "avc1.64001e,mp4a.40.2"
        ),
        RenditionInfo(
            "1080p/index.m3u8", 6_000_000, 5_000_000, 1920, 1080, 29.97, "avc1.640028,mp4a.40.2"
        ),
        RenditionInfo(
            "720p/index.m3u8", 3_000_000, 2_500_000, 1280, 720, 30.0, "avc1.64001f,mp4a.40.2"
        ),
    ]
    text = master_playlist(renditions)
    p = parse(text)
    assert p.is_variant and p.is_independent_segments
    assert [v.uri for v in p.playlists] == [
        "1080p/index.m3u8",
        "720p/index.m3u8",
        "480p/index.m3u8",
    ]
    top = p.playlists[0].stream_info
    assert (top.bandwidth, top.average_bandwidth, top.resolution) == (
        6_000_000,
        5_000_000,
        (1920, 1080),
    )
    assert top.frame_rate == 29.97 and top.codecs == "avc1.640028,mp4a.40.2"
    assert "FRAME-RATE=30.000" in text
    with pytest.raises(ValueError):
        master_playlist([])
    with pytest.raises(ValueError):
        master_playlist([RenditionInfo("a.m3u8", 0, 0, 1, 1, 30, "avc1.42c00b")])


@pytest.mark.parametrize("uri", ["a\nb.m3u8", 'a".m3u8', "", "a\x00"])
def test_uris_cannot_inject_playlist_lines(uri):
    with pytest.raises(ValueError):
        master_playlist([RenditionInfo(uri, 1, 1, 1, 1, 30, "avc1.42c00b")])
    with pytest.raises(ValueError):
        vod_playlist([(uri, 2.0, False)], 2)
    with pytest.raises(ValueError):
        LivePlaylist(init_uri=uri)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("init.mp4", ("init", None, None)),
        ("seg0.m4s", ("segment", 0, None)),
        ("seg9999999999.m4s", ("segment", 9999999999, None)),
        ("part12.0.m4s", ("part", 12, 0)),
        ("part0.9999.m4s", ("part", 0, 9999)),
    ],
)
def test_parse_segment_name_accepts_canonical_names(name, expected):
    assert parse_segment_name(name) == expected


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "../seg1.m4s",
        "seg1.m4s/..",
        "/seg1.m4s",
        "/etc/passwd",
        "seg1.m4s/",
        "a/seg1.m4s",
        "%2f",
        "seg%2f1.m4s",
        "..%2fseg1.m4s",
        "seg1.m4s%00",
        "seg1.m4s\x00",
        "seg1.m4s\n",
        "\nseg1.m4s",
        "seg01.m4s",
        "seg-1.m4s",
        "seg+1.m4s",
        "seg 1.m4s",
        "seg1.M4S",
        "SEG1.m4s",
        "seg1.mp4",
        "seg.m4s",
        "seg1.m4s?x=1",
        "seg\u0661.m4s",
        "seg１.m4s",
        "seg99999999999.m4s",
        "seg1" + "0" * 40 + ".m4s",
        "part1.m4s",
        "part1.00.m4s",
        "part1.10000.m4s",
        "part1..0.m4s",
        "part01.0.m4s",
        "part1.0.0.m4s",
        "init.mp4/",
        "INIT.MP4",
        "init.m4s",
        "./init.mp4",
        "init.mp4 ",
        "C:\\seg1.m4s",
        "seg1.m4s\\",
        "master.m3u8",
        "index.m3u8",
    ],
)
def test_parse_segment_name_rejects_junk(name):
    assert parse_segment_name(name) is None


def test_parse_segment_name_rejects_non_strings():
    assert parse_segment_name(None) is None
    assert parse_segment_name(b"seg1.m4s") is None
    assert parse_segment_name(1) is None


@given(st.integers(0, 10**10 - 1), st.integers(0, 9999))
def test_names_round_trip(msn, part):
    assert parse_segment_name(segment_uri(msn)) == ("segment", msn, None)
    assert parse_segment_name(part_uri(msn, part)) == ("part", msn, part)


@given(st.text(max_size=40))
def test_any_accepted_name_is_canonical(name):
    parsed = parse_segment_name(name)
    if parsed is not None:
        canonical = {
            "init": lambda: "init.mp4",
            "segment": lambda: segment_uri(parsed.msn),
            "part": lambda: part_uri(parsed.msn, parsed.part),
        }[parsed.kind]()
        assert canonical == name


def test_program_date_time_is_utc_with_milliseconds():
    playlist, _ = live()
    local = timezone(timedelta(hours=2))
    playlist.add_part(PartReady(0, 0, b"", PART, True))
    playlist.add_segment(
        SegmentReady(0, b"", 2.0, datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=local), False)
    )
    text = playlist.render()
    assert "#EXT-X-PROGRAM-DATE-TIME:2024-05-01T12:00:00.123Z" in text
    assert math.isclose(
        check_rules(text).segments[0].program_date_time.timestamp(),
        datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC).timestamp(),
    )


# -- a new initialization section after a discontinuity (a restarted or changed source) -------


def test_init_epoch_names_parse_canonically() -> None:
    from transcode.hls import init_uri

    assert init_uri(0) == "init.mp4" and init_uri(3) == "init3.mp4"
    assert parse_segment_name("init3.mp4") == ("init", 3, None)
    for bad in ("init0.mp4", "init03.mp4", "init-1.mp4", "init1.m4s", "init1.mp4/", "INIT1.mp4"):
        assert parse_segment_name(bad) is None, bad


def test_new_map_follows_the_discontinuity_and_survives_skips() -> None:
    playlist, feed = live(window_segments=12)
    for _ in range(4):
        feed.segment()
    playlist.set_init_uri("init1.mp4")
    feed.part_(discontinuity=True)
    text = playlist.render()
    # The part in progress already announces its discontinuity and its map, in that order.
    tail = text[text.index("seg3.m4s") :]
    assert tail.index("#EXT-X-DISCONTINUITY") < tail.index('#EXT-X-MAP:URI="init1.mp4"')
    assert text.count("#EXT-X-MAP") == 2 and text.index('URI="init.mp4"') < text.index("seg0.m4s")
    feed.segment(discontinuity=True)
    for _ in range(6):
        feed.segment()
    p = parse(playlist.render())
    assert [m.uri for m in p.segment_map] == ["init.mp4", "init1.mp4"]
    assert [s.discontinuity for s in p.segments].count(True) == 1
    assert playlist.init_uris_in_use() == {"init.mp4", "init1.mp4"}
    # A delta playlist that skips past the switch starts with the map its first segment needs.
    delta = playlist.render(skip=True)
    assert "#EXT-X-SKIP" in delta
    assert delta.count("#EXT-X-MAP") == 1 and 'URI="init1.mp4"' in delta
    # Once the old segments leave the window only the new map is in use.
    for _ in range(12):
        feed.segment()
    assert playlist.init_uris_in_use() == {"init1.mp4"}
    assert [m.uri for m in parse(playlist.render()).segment_map] == ["init1.mp4"]


def test_resume_takes_back_the_end() -> None:
    playlist, feed = live()
    feed.segment()
    playlist.end()
    assert playlist.render().rstrip().endswith("#EXT-X-ENDLIST")
    playlist.resume()
    feed.segment(discontinuity=True)
    text = playlist.render()
    assert "#EXT-X-ENDLIST" not in text and "#EXT-X-PRELOAD-HINT" in text
    assert "#EXT-X-DISCONTINUITY" in text


def test_vod_switches_maps_per_segment() -> None:
    text = vod_playlist(
        [
            ("seg0.m4s", 2.0, False, "init.mp4"),
            ("seg1.m4s", 2.0, False, "init.mp4"),
            ("seg2.m4s", 2.0, True, "init1.mp4"),
        ],
        2.0,
    )
    p = parse(text)
    assert [m.uri for m in p.segment_map] == ["init.mp4", "init1.mp4"]
    assert text.index("#EXT-X-DISCONTINUITY") < text.index("init1.mp4") < text.index("seg2.m4s")


def test_rendition_reports_say_where_the_other_renditions_stand() -> None:
    playlist, feed = live()
    other, other_feed = live()
    assert other.report("../480p/index.m3u8") is None  # nothing yet: nothing to report
    other_feed.segment()
    other_feed.part_()
    other_feed.part_()
    report = other.report("../480p/index.m3u8")
    assert report == RenditionReport("../480p/index.m3u8", 1, 1)
    feed.segment()
    feed.part_()
    text = playlist.render(reports=[report, RenditionReport("../240p/index.m3u8", 0, -1)])
    p = check_rules(text)
    assert [(r.uri, r.last_msn, r.last_part) for r in p.rendition_reports] == [
        ("../480p/index.m3u8", 1, 1),
        ("../240p/index.m3u8", 0, None),
    ]
    # After the preload hint (the playlist grows only before it), in the delta update too.
    lines = text.splitlines()
    assert lines.index(next(x for x in lines if x.startswith("#EXT-X-PRELOAD-HINT"))) < lines.index(
        '#EXT-X-RENDITION-REPORT:URI="../480p/index.m3u8",LAST-MSN=1,LAST-PART=1'
    )
    assert "#EXT-X-RENDITION-REPORT" in playlist.render(skip=True, reports=[report])
    with pytest.raises(ValueError):
        playlist.render(reports=[RenditionReport('bad"uri', 0, 0)])
    playlist.end()
    assert "RENDITION-REPORT" not in playlist.render(reports=[report])  # a finished playlist
