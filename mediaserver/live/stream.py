"""A stream that is live right now: codec configs, ingest health and its consumers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from transcode.media import CodecConfig, MediaKind, MediaPacket

from .health import HealthPolicy, TranscodeProbe, stream_health
from .stats import IngestStats
from .subscription import Subscription


class LiveStream:
    """One publisher's stream while it is live; fans packets out to bounded subscriptions."""

    def __init__(
        self,
        *,
        channel_id: int,
        slug: str,
        stream_id: int,
        started_at: datetime,
        queue_size: int,
        on_drop: Callable[[str, int], None] | None = None,
    ) -> None:
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
        # Ingested by another node of a cluster (issue 15): known here for the pages and the
        # API, with no media and no consumers here (``LiveRegistry.mirror``).
        self.remote = False
        # Set by the HTTP layer's viewer recount once it serves this stream (None before):
        # the chat of this process reads the count here instead of from the stream's row.
        self.viewers: int | None = None
        # Set with ``viewers``: each counted playback session's key and the rendition it
        # plays (the analytics sampler reads it for the rendition mix and watch time).
        self.audience: dict[str | bytes, str] = {}
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
        return stream_health(
            self.stats,
            self.source(),
            self.health_policy,
            self.transcode_probe,
            time.monotonic() if now is None else now,
        )

    def stop_publisher(self, reason: str = "ended") -> bool:
        """Disconnect the publisher (the stream then ends the usual way); False if none."""
        if self.ended or self.disconnect is None:
            return False
        self.disconnect(reason)
        return True

    def source(self) -> dict[str, Any]:
        """The source as the publisher announced it: codecs, picture size, encoder name.

        The one description of the source: the stream row's ``source_info`` and the health
        document's ingest figures both carry it.
        """
        res = self.resolution
        video, audio = self.video_config, self.audio_config
        encoder = self.metadata.get("encoder")
        return {
            "video_codec": video.codec if video else None,
            "audio_codec": audio.codec if audio else None,
            "audio_sample_rate": audio.sample_rate if audio else None,
            "audio_channels": audio.channels if audio else None,
            "width": res[0] if res else None,
            "height": res[1] if res else None,
            "encoder": encoder if isinstance(encoder, str) else None,
        }

    def describe(self) -> dict[str, Any]:
        """What an operator or the dashboard wants to know about the source."""
        return {
            "slug": self.slug,
            "stream_id": self.stream_id,
            "started_at": self.started_at.isoformat(),
            **self.source(),
            **self.stats.snapshot(),
        }
