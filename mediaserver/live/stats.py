"""What the publisher sends, counted per packet: the figures stream health is computed from.

Kept apart from the stream itself so health reads these figures without knowing the stream.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from transcode.media import MediaKind, MediaPacket


@dataclass(slots=True)
class IngestStats:
    """Health of what the publisher sends, updated per packet at O(1) cost."""

    bytes_total: int = 0
    video_frames: int = 0
    audio_frames: int = 0
    keyframes: int = 0
    last_video_dts: int | None = None
    last_audio_dts: int | None = None
    last_keyframe_dts: int | None = None
    keyframe_interval_ms: int | None = None
    video_bytes: int = 0
    first_dts: int | None = None
    last_packet_at: float = 0.0
    # (monotonic time, bytes, video bytes) samples, one per second at most, for rolling bitrates.
    _samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque(maxlen=8))
    _video_times: deque[int] = field(default_factory=lambda: deque(maxlen=61))
    # The last few keyframe distances: a scene-cut keyframe shortens one, not the GOP.
    _key_intervals: deque[int] = field(default_factory=lambda: deque(maxlen=4))

    def record(self, packet: MediaPacket, now: float) -> None:
        size = len(packet.data)
        self.bytes_total += size
        self.last_packet_at = now
        if self.first_dts is None:
            self.first_dts = packet.dts
        if packet.kind is MediaKind.VIDEO:
            self.video_frames += 1
            self.video_bytes += size
            self.last_video_dts = packet.dts
            self._video_times.append(packet.dts)
            if packet.keyframe:
                self.keyframes += 1
                if self.last_keyframe_dts is not None and packet.dts > self.last_keyframe_dts:
                    self._key_intervals.append(packet.dts - self.last_keyframe_dts)
                    self.keyframe_interval_ms = max(self._key_intervals)
                self.last_keyframe_dts = packet.dts
        else:
            self.audio_frames += 1
            self.last_audio_dts = packet.dts
        if not self._samples or now - self._samples[-1][0] >= 1.0:
            self._samples.append((now, self.bytes_total, self.video_bytes))

    def _rate(self, index: int, now: float | None) -> float:
        """kbit/s over the sample window; with ``now``, up to now (a stall pulls it down)."""
        if not self._samples:
            return 0.0
        first = self._samples[0]
        if now is None:
            if len(self._samples) < 2:
                return 0.0
            last: tuple[float, int, int] = self._samples[-1]
        else:
            last = (now, self.bytes_total, self.video_bytes)
        dt = last[0] - first[0]
        return (last[index] - first[index]) * 8 / 1000 / dt if dt >= 0.5 else 0.0

    @property
    def bitrate_kbps(self) -> float:
        return self._rate(1, None)

    def bitrate_kbps_at(self, now: float) -> float:
        return self._rate(1, now)

    def video_kbps(self, now: float) -> float:
        return self._rate(2, now)

    @property
    def media_seconds(self) -> float:
        """Publisher time covered so far (by timestamps, not wall clock)."""
        last = max(self.last_video_dts or 0, self.last_audio_dts or 0)
        if self.first_dts is None:
            return 0.0
        return max(0, last - self.first_dts) / 1000

    @property
    def frame_rate(self) -> float:
        times = self._video_times
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) * 1000 / (times[-1] - times[0])

    def snapshot(self) -> dict[str, Any]:
        return {
            "bytes_total": self.bytes_total,
            "video_frames": self.video_frames,
            "audio_frames": self.audio_frames,
            "keyframes": self.keyframes,
            "keyframe_interval_ms": self.keyframe_interval_ms,
            "bitrate_kbps": round(self.bitrate_kbps, 1),
            "frame_rate": round(self.frame_rate, 2),
            "last_video_dts": self.last_video_dts,
            "last_audio_dts": self.last_audio_dts,
        }
