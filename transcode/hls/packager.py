"""One rendition's encoded packets -> LL-HLS parts (CMAF chunks) and segments.

The packager is a pure state machine: packets in, events out, no clock and no I/O, so the
same input always gives the same bytes. It never chooses segment boundaries: the transcoder
flags them (``segment_start``) on keyframes aligned across renditions, which keeps segment
numbers and times identical in every rendition of a stream.

Timeline: the video decode timeline is shifted by a constant (``pts - dts`` of the first
keyframe, i.e. the encoder's reorder delay), so the first keyframe decodes at its own
presentation time. Every later segment-starting IDR then has ``tfdt == pts`` too, B-frames get
signed composition offsets, no edit list is needed, and renditions with and without B-frames
still line up. Presentation times are never changed.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from transcode.avc import codec_string_avc
from transcode.hls.fmp4 import codec_string_aac, fragment, init_segment
from transcode.types import AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

AAC_FRAME_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class PartReady:
    """A finished LL-HLS partial segment: one moof+mdat, playable after the init segment.

    ``discontinuity`` and ``program_date_time`` repeat what the parent segment's SegmentReady
    will say, so a playlist can print EXT-X-DISCONTINUITY and EXT-X-PROGRAM-DATE-TIME before
    the segment's first EXT-X-PART: those tags must precede the parts (rfc8216bis 4.4.4.9)
    and a live playlist may only be appended to, while the SegmentReady comes at the end.
    """

    segment: int
    index: int
    data: bytes
    duration: float
    independent: bool
    discontinuity: bool = False
    program_date_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class SegmentReady:
    """A finished segment; ``data`` is the byte-exact concatenation of its parts."""

    segment: int
    data: bytes
    duration: float
    program_date_time: datetime
    discontinuity: bool


PackagerEvent = PartReady | SegmentReady


@dataclass(slots=True)
class PackagerCounters:
    """Input the packager had to drop, for metrics: nothing is lost silently."""

    leading_video_dropped: int = 0  # video before the first keyframe (or with negative pts)
    video_out_of_order: int = 0  # decode time not after the previous video sample
    audio_dropped: int = 0  # before the first keyframe, out of order, or no audio track
    segment_start_ignored: int = 0  # segment_start set on a non-keyframe


@dataclass(slots=True)
class _Pending:
    packet: EncodedPacket
    dts: int  # shifted decode time


class RenditionPackager:
    """Turns one rendition's packets into parts and segments (see the module docstring).

    Cutting rules: a segment starts at a keyframe flagged ``segment_start`` (the very first
    segment at the first keyframe; earlier video is dropped and counted). A part closes when
    the next video sample's decode time reaches ``part_start + part_duration``, or at a
    segment start. Audio goes into the part whose time range covers its decode time, or into
    the next open part if it arrives after that part was closed (each traf has its own tfdt).
    """

    def __init__(
        self,
        name: str,
        video: VideoTrackInfo,
        audio: AudioTrackInfo | None = None,
        *,
        segment_duration: float = 2.0,
        part_duration: float = 0.333,
        start_time: datetime,
        first_segment: int = 0,
        discontinuity: bool = False,
    ) -> None:
        if not segment_duration > 0 or not part_duration > 0:
            raise ValueError("segment_duration and part_duration must be positive")
        if part_duration > segment_duration:
            raise ValueError("part_duration must not exceed segment_duration")
        if start_time.tzinfo is None or start_time.utcoffset() is None:
            raise ValueError(
                "start_time must be timezone-aware (EXT-X-PROGRAM-DATE-TIME needs a zone)"
            )
        if first_segment < 0:
            raise ValueError("first_segment must be >= 0")
        self.name = name
        self.video = video
        self.audio = audio
        self.segment_duration = float(segment_duration)
        self.part_duration = float(part_duration)
        self.start_time = start_time
        self.first_segment = first_segment  # the number its first segment gets
        self.init: bytes = init_segment(video, audio)
        codecs = [codec_string_avc(video.avcc)]
        if audio is not None:
            codecs.append(codec_string_aac(audio.asc))
        self.codecs: str = ",".join(codecs)
        self.counters = PackagerCounters()

        self._vts = video.timescale
        self._part_ticks = max(1, round(part_duration * self._vts))
        self._discontinuity = discontinuity
        self._shift: int | None = None  # video dts shift; None until the first keyframe
        self._origin = 0  # shifted dts of the first keyframe: PDT start_time refers to it
        self._last_vdts = 0
        self._last_adts: int | None = None
        self._flushed = False

        self._segment = first_segment
        self._segment_start = 0
        self._segment_first = True
        self._segment_parts: list[bytes] = []
        self._part_index = 0
        self._part_start = 0
        self._part: list[_Pending] = []
        self._audio_buf: deque[EncodedPacket] = deque()
        self._sequence = 0

        self._bits = 0
        self._seconds = 0.0
        self._peak = 0.0

    # -- public read-only state -----------------------------------------------------------

    @property
    def part_target(self) -> float:
        """The longest part the cutting rule makes at the nominal frame rate, rounded up to ms.

        A part closes on the first frame at or past ``part_duration``, so it can run up to
        one frame longer; PART-TARGET must be >= every part (RFC 8216bis 4.4.4.9).
        """
        ticks: float = self._part_ticks
        if self.video.frame_rate > 0:
            interval = self._vts / self.video.frame_rate
            ticks = max(ticks, math.ceil(self._part_ticks / interval - 1e-9) * interval)
        return math.ceil(ticks / self._vts * 1000 - 1e-6) / 1000

    @property
    def next_segment(self) -> int:
        """Number of the segment in progress; after ``flush`` the next free number, which a
        packager for a restarted source takes as ``first_segment``."""
        return self._segment

    @property
    def peak_bandwidth(self) -> int:
        """Highest segment bit rate so far, bits/s (HLS BANDWIDTH); 0 before any segment."""
        return math.ceil(self._peak)

    @property
    def average_bandwidth(self) -> int:
        """Total bits over total duration of the segments so far (HLS AVERAGE-BANDWIDTH)."""
        return math.ceil(self._bits / self._seconds) if self._seconds > 0 else 0

    # -- input ------------------------------------------------------------------------------

    def add(self, packet: EncodedPacket) -> list[PackagerEvent]:
        """Feed one packet (in arrival order); returns the parts/segments it completed.

        Apply all events of one call before rendering a playlist: a segment end yields the
        segment's last part and the segment together.
        """
        if self._flushed:
            raise RuntimeError(
                "packager already flushed; start a new one (first_segment=next_segment)"
            )
        if packet.track is Track.AUDIO:
            self._add_audio(packet)
            return []
        return self._add_video(packet)

    def flush(self) -> list[PackagerEvent]:
        """End of stream: close the open part and segment. The packager is done afterwards."""
        if self._flushed:
            return []
        self._flushed = True
        if self._shift is None or not self._part:
            return []
        last = self._part[-1]
        duration = last.packet.duration
        if duration <= 0:
            duration = round(self._vts / self.video.frame_rate) if self.video.frame_rate > 0 else 1
        end = last.dts + duration
        return [self._close_part(end, all_audio=True), self._close_segment(end)]

    # -- internals --------------------------------------------------------------------------

    def _audio_before(self, packet: EncodedPacket, video_ticks: int) -> bool:
        """Whether the audio sample's decode time is before a video-timescale instant."""
        assert self.audio is not None
        return packet.dts * self._vts < video_ticks * self.audio.timescale

    def _add_audio(self, packet: EncodedPacket) -> None:
        if self.audio is None or packet.dts < 0:
            self.counters.audio_dropped += 1
            return
        if self._last_adts is not None and packet.dts <= self._last_adts:
            self.counters.audio_dropped += 1
            return
        if self._shift is not None and self._audio_before(packet, self._origin):
            self.counters.audio_dropped += 1
            return
        self._last_adts = packet.dts
        self._audio_buf.append(packet)
        # Bound the buffer: before the first keyframe, and if video stalls while audio flows.
        limit = (2 if self._shift is None else 10) * self.segment_duration * self.audio.timescale
        while self._audio_buf and packet.dts - self._audio_buf[0].dts > limit:
            self._audio_buf.popleft()
            self.counters.audio_dropped += 1

    def _add_video(self, packet: EncodedPacket) -> list[PackagerEvent]:
        if self._shift is None:
            if not packet.keyframe or packet.pts < 0:
                self.counters.leading_video_dropped += 1
                return []
            self._shift = packet.pts - packet.dts
            self._origin = packet.pts
            while self._audio_buf and self._audio_before(self._audio_buf[0], self._origin):
                self._audio_buf.popleft()
                self.counters.audio_dropped += 1
            self._open_segment(self._origin)
            self._open_part(packet, self._origin)
            return []

        dts = packet.dts + self._shift
        if dts <= self._last_vdts:
            self.counters.video_out_of_order += 1
            return []
        if packet.segment_start and not packet.keyframe:
            self.counters.segment_start_ignored += 1
        events: list[PackagerEvent] = []
        if packet.segment_start and packet.keyframe:
            events.append(self._close_part(dts))
            events.append(self._close_segment(dts))
            self._open_segment(dts)
            self._open_part(packet, dts)
        elif dts >= self._part_start + self._part_ticks:
            events.append(self._close_part(dts))
            self._open_part(packet, dts)
        else:
            self._part.append(_Pending(packet, dts))
            self._last_vdts = dts
        return events

    def _open_segment(self, dts: int) -> None:
        self._segment_start = dts
        self._segment_parts = []
        self._part_index = 0

    def _open_part(self, packet: EncodedPacket, dts: int) -> None:
        self._part = [_Pending(packet, dts)]
        self._part_start = dts
        self._last_vdts = dts

    def _close_part(self, end: int, *, all_audio: bool = False) -> PartReady:
        pending = self._part
        video: list[EncodedPacket] = []
        for i, item in enumerate(pending):
            next_dts = pending[i + 1].dts if i + 1 < len(pending) else end
            video.append(replace(item.packet, dts=item.dts, duration=next_dts - item.dts))

        taken: list[EncodedPacket] = []
        while self._audio_buf and (all_audio or self._audio_before(self._audio_buf[0], end)):
            taken.append(self._audio_buf.popleft())
        audio: list[EncodedPacket] = []
        for i, a in enumerate(taken):
            following = (
                taken[i + 1]
                if i + 1 < len(taken)
                else (self._audio_buf[0] if self._audio_buf else None)
            )
            if following is not None:
                duration = following.dts - a.dts
            else:
                duration = a.duration if a.duration > 0 else AAC_FRAME_SAMPLES
            audio.append(replace(a, duration=duration))

        self._sequence += 1
        data = fragment(self._sequence, video, audio)
        self._segment_parts.append(data)
        event = PartReady(
            segment=self._segment,
            index=self._part_index,
            data=data,
            duration=(end - self._part_start) / self._vts,
            independent=pending[0].packet.keyframe,
            discontinuity=self._discontinuity and self._segment_first,
            program_date_time=self._segment_pdt(),
        )
        self._part_index += 1
        self._part = []
        return event

    def _segment_pdt(self) -> datetime:
        """Wall clock of the open segment's first sample: start_time plus media time elapsed."""
        offset_us = ((self._segment_start - self._origin) * 1_000_000 + self._vts // 2) // self._vts
        return self.start_time + timedelta(microseconds=offset_us)

    def _close_segment(self, end: int) -> SegmentReady:
        data = b"".join(self._segment_parts)
        duration = (end - self._segment_start) / self._vts
        event = SegmentReady(
            segment=self._segment,
            data=data,
            duration=duration,
            program_date_time=self._segment_pdt(),
            discontinuity=self._discontinuity and self._segment_first,
        )
        if duration > 0:
            bits = len(data) * 8
            self._bits += bits
            self._seconds += duration
            self._peak = max(self._peak, bits / duration)
        self._segment += 1
        self._segment_first = False
        self._segment_parts = []
        return event
