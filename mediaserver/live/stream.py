"""A stream that is live right now: codec configs, ingest health and its consumers."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable

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
    last_packet_at: float = 0.0
    # (monotonic time, bytes) samples, one per second at most, for a rolling bitrate.
    _samples: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=8))
    _video_times: deque[int] = field(default_factory=lambda: deque(maxlen=61))

    def record(self, packet: MediaPacket, now: float) -> None:
        self.bytes_total += len(packet.data)
        self.last_packet_at = now
        if packet.kind is MediaKind.VIDEO:
            self.video_frames += 1
            self.last_video_dts = packet.dts
            self._video_times.append(packet.dts)
            if packet.keyframe:
                self.keyframes += 1
                if self.last_keyframe_dts is not None:
                    self.keyframe_interval_ms = packet.dts - self.last_keyframe_dts
                self.last_keyframe_dts = packet.dts
        else:
            self.audio_frames += 1
            self.last_audio_dts = packet.dts
        if not self._samples or now - self._samples[-1][0] >= 1.0:
            self._samples.append((now, self.bytes_total))

    @property
    def bitrate_kbps(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
        return (b1 - b0) * 8 / 1000 / (t1 - t0) if t1 > t0 else 0.0

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
