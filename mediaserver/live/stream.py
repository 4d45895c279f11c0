"""A stream that is live right now: codec configs, ingest health and its consumers."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

from .health import HealthPolicy, TranscodeProbe, stream_health
from .packets import CodecConfig, MediaKind, MediaPacket
from .subscription import Subscription


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


class LiveStream:
    """One publisher's stream while it is live; fans packets out to bounded subscriptions."""

    def __init__(self, *, channel_id: int, slug: str, stream_id: int, started_at: datetime,
                 queue_size: int, on_drop: Callable[[str, int], None] | None = None) -> None:
        self.channel_id = channel_id
        self.slug = slug
        self.stream_id = stream_id
        self.started_at = started_at
        self.queue_size = queue_size
        self.video_config: CodecConfig | None = None
        self.audio_config: CodecConfig | None = None
        self.metadata: dict[str, Any] = {}
        self.stats = IngestStats()
        self.ended = False
        # Set by ingest (targets from settings) and by the broadcast (its transcoder's figures).
        self.health_policy = HealthPolicy()
        self.transcode_probe: TranscodeProbe | None = None
        # Wired by ingest: closes the publishing connection (the creator ended the stream).
        self.disconnect: Callable[[str], None] | None = None
        self._subs: list[Subscription] = []
        self._on_drop = on_drop

    # -- publisher side -------------------------------------------------------------------
    def set_config(self, config: CodecConfig) -> None:
        """A (new) decoder configuration; consumers get it in order with the packets."""
        if config.kind is MediaKind.VIDEO:
            self.video_config = config
        else:
            self.audio_config = config
        for sub in self._subs:
            sub.put(config)

    def publish(self, packet: MediaPacket, now: float | None = None) -> None:
        self.stats.record(packet, time.monotonic() if now is None else now)
        for sub in self._subs:
            sub.put(packet)

    def end(self) -> None:
        self.ended = True
        for sub in self._subs:
            sub.close()

    # -- consumer side --------------------------------------------------------------------
    def subscribe(self, name: str, maxsize: int | None = None) -> Subscription:
        """A new bounded queue that sees every packet from now on (start at a keyframe)."""
        on_drop = None
        if self._on_drop is not None:
            hook = self._on_drop
            on_drop = lambda n: hook(name, n)  # noqa: E731
        sub = Subscription(name, maxsize or self.queue_size, on_drop)
        if self.ended:
            sub.close()
            return sub
        for config in (self.video_config, self.audio_config):
            if config is not None:
                sub.put(config)
        sub.skip_to_keyframe()  # a decoder can only start at a keyframe
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub.close()

    @property
    def resolution(self) -> tuple[int, int] | None:
        w, h = self.metadata.get("width"), self.metadata.get("height")
        if isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0:
            return int(w), int(h)
        return None

    def health(self, now: float | None = None) -> dict[str, Any]:
        """Ingest and transcode figures with warnings, computed now from running counters."""
        return stream_health(self, now)

    def stop_publisher(self, reason: str = "ended") -> bool:
        """Disconnect the publisher (the stream then ends the usual way); False if none."""
        if self.ended or self.disconnect is None:
            return False
        self.disconnect(reason)
        return True

    def describe(self) -> dict[str, Any]:
        """What an operator or the dashboard wants to know about the source."""
        res = self.resolution
        return {
            "slug": self.slug,
            "stream_id": self.stream_id,
            "started_at": self.started_at.isoformat(),
            "video_codec": self.video_config.codec if self.video_config else None,
            "audio_codec": self.audio_config.codec if self.audio_config else None,
            "audio_sample_rate": self.audio_config.sample_rate if self.audio_config else None,
            "audio_channels": self.audio_config.channels if self.audio_config else None,
            "width": res[0] if res else None,
            "height": res[1] if res else None,
            "encoder": self.metadata.get("encoder"),
            **self.stats.snapshot(),
        }
