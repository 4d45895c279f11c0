"""The LL-HLS live media playlist.

Written from RFC 8216 and its second-edition draft (rfc8216bis) for the low-latency tags.
Everything here is text generation from in-memory state; the HTTP layer decides when to
render (blocking reload) using the lookups on ``LivePlaylist``.

Resource names and number formats live in ``syntax``, the finished (VOD, master) playlists in
``vod``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from transcode.hls.packager import PartReady, SegmentReady
from transcode.hls.syntax import (
    INIT_URI,
    LIVE_VERSION,
    ceil_ms,
    check_uri,
    format_pdt,
    format_seconds,
    part_uri,
    round_half_up,
    segment_uri,
)


@dataclass(frozen=True, slots=True)
class RenditionReport:
    """Where another rendition of the same stream stands (EXT-X-RENDITION-REPORT): a player
    switching to it asks for the right part at once instead of fetching its playlist first."""

    uri: str
    last_msn: int
    last_part: int  # -1 when that segment has no parts


@dataclass(frozen=True, slots=True)
class _Part:
    index: int
    duration: float
    independent: bool
    uri: str


@dataclass(frozen=True, slots=True)
class _Segment:
    msn: int
    duration: float
    program_date_time: datetime
    discontinuity: bool
    uri: str
    parts: tuple[_Part, ...]
    init_uri: str = INIT_URI


BlockingState = Literal["ready", "wait", "bad"]


class LivePlaylist:
    """One rendition's LL-HLS media playlist over a sliding window of segments.

    Feed it the packager's events in order (``add_part``/``add_segment``) and ``render`` it.
    The Target Duration never shrinks and, per RFC 8216 4.3.3.1, is at least every EXTINF
    rounded to the nearest integer; PART-TARGET is at least every part duration.
    """

    def __init__(
        self,
        *,
        segment_duration: float = 2.0,
        part_target: float = 0.334,
        window_segments: int = 6,
        first_segment: int = 0,
        init_uri: str = INIT_URI,
    ) -> None:
        if not segment_duration > 0 or not part_target > 0:
            raise ValueError("segment_duration and part_target must be positive")
        if window_segments < 1:
            raise ValueError("window_segments must be >= 1")
        self.window_segments = window_segments
        self.init_uri = check_uri(init_uri)
        self._target = max(1, math.ceil(segment_duration - 1e-6))
        self._part_target = ceil_ms(part_target)
        self._segments: deque[_Segment] = deque()
        self._open_msn = first_segment
        self._open_parts: list[_Part] = []
        self._open_discontinuity = False
        self._open_pdt: datetime | None = None
        self._discontinuity_sequence = 0
        self._started = False
        self._ended = False

    # -- derived header values ------------------------------------------------------------

    @property
    def target_duration(self) -> int:
        return self._target

    @property
    def part_target(self) -> float:
        return self._part_target

    @property
    def part_hold_back(self) -> float:
        """Three Part Target Durations: the spec's SHOULD (its MUST is two)."""
        return ceil_ms(3 * self._part_target)

    @property
    def can_skip_until(self) -> float:
        """The Skip Boundary: six Target Durations, the spec's minimum."""
        return 6.0 * self._target

    @property
    def media_sequence(self) -> int:
        return self._segments[0].msn if self._segments else self._open_msn

    @property
    def discontinuity_sequence(self) -> int:
        return self._discontinuity_sequence

    @property
    def ended(self) -> bool:
        return self._ended

    # -- input ------------------------------------------------------------------------------

    def add_part(self, part: PartReady) -> None:
        """Append a finished part of the segment in progress (parts come in order)."""
        if self._ended:
            raise RuntimeError("playlist has ended")
        if not self._started and not self._open_parts:
            self._open_msn = part.segment
        if part.segment != self._open_msn or part.index != len(self._open_parts):
            raise ValueError(
                f"part {part.segment}.{part.index} out of order; expected "
                f"{self._open_msn}.{len(self._open_parts)}"
            )
        self._started = True
        if part.index == 0:
            self._open_discontinuity = part.discontinuity
            self._open_pdt = part.program_date_time
            if self._open_pdt is None and self._segments:
                last = self._segments[-1]
                self._open_pdt = last.program_date_time + timedelta(seconds=last.duration)
        self._part_target = max(self._part_target, ceil_ms(part.duration))
        self._open_parts.append(
            _Part(part.index, part.duration, part.independent, part_uri(part.segment, part.index))
        )

    def add_segment(self, segment: SegmentReady) -> None:
        """Close the segment in progress; its parts (if any were added) stay attached to it."""
        if self._ended:
            raise RuntimeError("playlist has ended")
        if not self._started and not self._open_parts:
            self._open_msn = segment.segment
        if segment.segment != self._open_msn:
            raise ValueError(f"segment {segment.segment} out of order; expected {self._open_msn}")
        self._started = True
        self._segments.append(
            _Segment(
                msn=segment.segment,
                duration=segment.duration,
                program_date_time=segment.program_date_time,
                discontinuity=segment.discontinuity or self._open_discontinuity,
                uri=segment_uri(segment.segment),
                parts=tuple(self._open_parts),
                init_uri=self.init_uri,
            )
        )
        self._target = max(self._target, round_half_up(segment.duration))
        self._open_msn += 1
        self._open_parts = []
        self._open_discontinuity = False
        self._open_pdt = None
        while len(self._segments) > self.window_segments:
            removed = self._segments.popleft()
            if removed.discontinuity:
                # RFC 8216 6.2.2: removing a DISCONTINUITY tag bumps the sequence so the
                # remaining segments keep their discontinuity sequence numbers.
                self._discontinuity_sequence += 1

    def set_init_uri(self, uri: str) -> None:
        """A new initialization section for the segment in progress and the ones after it
        (a new EXT-X-MAP follows its discontinuity in the rendered playlist)."""
        self.init_uri = check_uri(uri)

    def init_uris_in_use(self) -> set[str]:
        """The initialization sections the listed segments and the one in progress need."""
        return {seg.init_uri for seg in self._segments} | {self.init_uri}

    def resume(self) -> None:
        """Take back ``end()``: the source came back before the playlist was retired, so the
        window continues (the next segment should carry a discontinuity)."""
        self._ended = False

    def end(self) -> None:
        """The stream is over: EXT-X-ENDLIST, no preload hint, unfinished parts dropped."""
        self._ended = True
        self._open_parts = []
        self._open_discontinuity = False
        self._open_pdt = None

    # -- lookups for the HTTP layer -----------------------------------------------------------

    @property
    def next_msn(self) -> int:
        """Number of the segment in progress: ``first_segment`` for a restarted packager."""
        return self._open_msn

    def last_msn_part(self) -> tuple[int, int]:
        """(MSN, part index) of the newest complete part; part is -1 for a segment added
        without parts. ``LookupError`` before anything was added."""
        if self._open_parts:
            return self._open_msn, self._open_parts[-1].index
        if self._segments:
            last = self._segments[-1]
            return last.msn, len(last.parts) - 1
        raise LookupError("no part yet")

    def report(self, uri: str) -> RenditionReport | None:
        """This playlist's rendition report, as another rendition's playlist lists it under
        ``uri``; None before it has any media."""
        try:
            msn, part = self.last_msn_part()
        except LookupError:
            return None
        return RenditionReport(uri, msn, part)

    def next_part(self) -> tuple[int, int]:
        """(MSN, part index) of the part in progress: what EXT-X-PRELOAD-HINT names."""
        return self._open_msn, len(self._open_parts)

    def _segment(self, msn: int) -> _Segment | None:
        if not self._segments or not self._segments[0].msn <= msn <= self._segments[-1].msn:
            return None
        return self._segments[msn - self._segments[0].msn]

    def has_segment(self, msn: int) -> bool:
        """Whether segment ``msn`` is complete and still in the window."""
        return self._segment(msn) is not None

    def has_part(self, msn: int, part: int) -> bool:
        """Whether part ``part`` of segment ``msn`` is complete and its segment in the window
        (listed or not: parts of older segments are dropped from the text, not from here)."""
        if part < 0:
            return False
        if msn == self._open_msn and not self._ended:
            return part < len(self._open_parts)
        seg = self._segment(msn)
        return seg is not None and part < len(seg.parts)

    def uri_for_part(self, msn: int, part: int) -> str:
        return part_uri(msn, part)

    def uri_for_segment(self, msn: int) -> str:
        return segment_uri(msn)

    def blocking_state(self, msn: int, part: int | None = None) -> BlockingState:
        """Blocking Playlist Reload (rfc8216bis 6.2.5.2) for ``_HLS_msn``/``_HLS_part``.

        "ready": render now; "wait": hold the request until the next update; "bad": too far
        ahead, answer 400. After EXT-X-ENDLIST the directives are ignored (always "ready").
        """
        if self._ended:
            return "ready"
        if msn < 0 or (part is not None and part < 0):
            return "bad"
        last_complete = self._segments[-1].msn if self._segments else self._open_msn - 1
        if msn > last_complete + 2:
            return "bad"
        if part is None:
            return "ready" if msn <= last_complete else "wait"
        seg = self._segment(msn)
        if seg is not None and part >= len(seg.parts):
            msn, part = msn + 1, 0  # past the final part of a complete segment: next one's 0
        try:
            last = self.last_msn_part()
        except LookupError:
            last = (self._open_msn, -1)
        if (msn, part) <= last:
            return "ready"
        limit = 3 / self._part_target if self._part_target < 1 else 3
        ahead = part - last[1] if msn == last[0] else part + 1
        return "bad" if ahead > limit else "wait"

    # -- rendering ----------------------------------------------------------------------------

    def _skipped_count(self) -> int:
        """Segments further than the Skip Boundary from the end of the last segment."""
        if not self._segments:
            return 0
        end = sum(s.duration for s in self._segments)
        elapsed = 0.0
        count = 0
        for seg in self._segments:
            elapsed += seg.duration
            if end - elapsed >= self.can_skip_until - 1e-9:
                count += 1
            else:
                break
        return count

    def render(self, skip: bool = False, reports: Sequence[RenditionReport] = ()) -> str:
        """The media playlist; ``skip=True`` gives a Playlist Delta Update (``_HLS_skip=YES``).
        ``reports``: the other renditions' EXT-X-RENDITION-REPORT tags (live playlists only).

        A delta replaces the segments whose end lies at least CAN-SKIP-UNTIL before the end of
        the last segment with EXT-X-SKIP; when none qualify (or the playlist has ended, where
        the directive is ignored) the full playlist is the answer.
        """
        td = self._target
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{LIVE_VERSION}",
            f"#EXT-X-TARGETDURATION:{td}",
            (
                "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
                f"PART-HOLD-BACK={self.part_hold_back:.3f},CAN-SKIP-UNTIL={self.can_skip_until:.1f}"
            ),
            f"#EXT-X-PART-INF:PART-TARGET={self._part_target:.3f}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self._discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self._discontinuity_sequence}")

        skipped = self._skipped_count() if skip and not self._ended else 0
        segments = list(self._segments)
        # The map in effect for the first listed segment (or the part in progress).
        current_map = segments[skipped].init_uri if skipped < len(segments) else self.init_uri
        lines.append(f'#EXT-X-MAP:URI="{current_map}"')
        if skipped:
            lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

        # Parts are listed for segments ending within three Target Durations of the playlist
        # end (rfc8216bis 6.2.2), plus the segment in progress.
        total = sum(s.duration for s in self._segments) + sum(p.duration for p in self._open_parts)
        elapsed = 0.0
        for i, seg in enumerate(segments):
            elapsed += seg.duration
            if i < skipped:
                continue
            if seg.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if seg.init_uri != current_map:
                current_map = seg.init_uri
                lines.append(f'#EXT-X-MAP:URI="{current_map}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(seg.program_date_time)}")
            if total - elapsed < 3 * td:
                lines.extend(self._part_line(p) for p in seg.parts)
            lines.append(f"#EXTINF:{format_seconds(seg.duration)},")
            lines.append(seg.uri)

        if self._ended:
            lines.append("#EXT-X-ENDLIST")
        else:
            if self._open_parts:
                # Same tags, same order as the segment will have once complete: the playlist
                # only ever grows at the end.
                if self._open_discontinuity:
                    lines.append("#EXT-X-DISCONTINUITY")
                if self.init_uri != current_map:
                    lines.append(f'#EXT-X-MAP:URI="{self.init_uri}"')
                if self._open_pdt is not None:
                    lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(self._open_pdt)}")
                lines.extend(self._part_line(p) for p in self._open_parts)
            msn, index = self.next_part()
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{part_uri(msn, index)}"')
            for r in reports:
                tag = f'#EXT-X-RENDITION-REPORT:URI="{check_uri(r.uri)}",LAST-MSN={r.last_msn}'
                lines.append(tag + (f",LAST-PART={r.last_part}" if r.last_part >= 0 else ""))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _part_line(part: _Part) -> str:
        line = f'#EXT-X-PART:DURATION={format_seconds(part.duration)},URI="{part.uri}"'
        return line + ",INDEPENDENT=YES" if part.independent else line
