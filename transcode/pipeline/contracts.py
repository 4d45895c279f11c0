"""What the transcoder reads from and what it delivers to, as protocols.

The server passes the live registry's ``Subscription`` and its HLS sink; tests and benchmarks
pass their own, so the pipeline is exercised without a server.
"""

from __future__ import annotations

from typing import Protocol

from ..media import CodecConfig, MediaPacket
from ..types import AudioTrackInfo, EncodedPacket, VideoTrackInfo


class PacketSource(Protocol):
    """What the transcoder reads: the live registry's ``Subscription`` in the server."""

    def get_blocking(self, timeout: float | None = None) -> CodecConfig | MediaPacket | None: ...


class TranscodeSink(Protocol):
    """Receives the renditions. Called from the transcoder's threads: lock inside if needed.

    For each rendition ``on_track_info`` comes before its first ``on_packet`` and again whenever
    that rendition's tracks change (new avcC after a source config change, audio appearing or
    changing). ``on_packet`` calls for one rendition come from one thread, in order per track;
    different renditions are delivered from different threads. ``on_end`` comes last, once.
    """

    def on_track_info(
        self, rendition: str, video: VideoTrackInfo, audio: AudioTrackInfo | None
    ) -> None: ...

    def on_packet(self, rendition: str, packet: EncodedPacket) -> None: ...

    def on_thumbnail(self, jpeg: bytes) -> None: ...

    def on_end(self) -> None: ...
