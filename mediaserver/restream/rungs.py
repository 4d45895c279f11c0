"""A rung of the live ladder as a stream a relay can read, like the original's subscription.

The transcoder hands each rendition's encoded packets to its sink in its worker threads
(``transcode.types.EncodedPacket``: AVCC H.264 in 90 kHz, raw AAC in the sample rate). A
destination that asks for a rung (one that cannot take HEVC, or a high bitrate) reads them
through a :class:`RungTap`: the sink offers each packet; only when someone subscribed to that
rendition is it turned into a ``MediaPacket`` (milliseconds, the live stream's own unit) and
posted to the loop, where it goes into bounded subscriptions (drop to the next keyframe,
counted), exactly as the original stream's consumers get theirs. With no subscriber a packet
costs one dict lookup in the worker thread.
"""

from __future__ import annotations

import asyncio
import threading

from mediaserver.live import CodecConfig, MediaKind, MediaPacket
from mediaserver.live.subscription import Subscription
from transcode.types import AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

H264 = "avc1"
AAC = "mp4a"


class RungTap:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._subs: dict[str, list[Subscription]] = {}  # changed on the loop only
        self._tracks: dict[str, tuple[VideoTrackInfo, AudioTrackInfo | None]] = {}
        self._configs: dict[str, list[CodecConfig]] = {}
        self._lock = threading.Lock()
        self.ended = False

    # -- the transcoder's side (worker threads) ----------------------------------------------
    def track_info(
        self, rendition: str, video: VideoTrackInfo, audio: AudioTrackInfo | None
    ) -> None:
        configs = [CodecConfig(MediaKind.VIDEO, H264, video.avcc)]
        if audio is not None:
            configs.append(
                CodecConfig(MediaKind.AUDIO, AAC, audio.asc, audio.sample_rate, audio.channels)
            )
        with self._lock:
            self._tracks[rendition] = (video, audio)
            self._configs[rendition] = configs
        if self._subs.get(rendition):
            for config in configs:
                self.loop.call_soon_threadsafe(self._put, rendition, config)

    def packet(self, rendition: str, packet: EncodedPacket) -> None:
        if not self._subs.get(rendition):
            return
        tracks = self._tracks.get(rendition)
        if tracks is None:
            return
        video, audio = tracks
        if packet.track is Track.VIDEO:
            scale = video.timescale
            item = MediaPacket(
                MediaKind.VIDEO,
                H264,
                packet.dts * 1000 // scale,
                packet.pts * 1000 // scale,
                packet.keyframe,
                packet.data,
            )
        else:
            if audio is None:
                return
            ms = packet.dts * 1000 // audio.sample_rate
            item = MediaPacket(MediaKind.AUDIO, AAC, ms, ms, True, packet.data)
        self.loop.call_soon_threadsafe(self._put, rendition, item)

    def end(self) -> None:
        """The transcoder finished: subscribers drain and get ``None``."""
        self.loop.call_soon_threadsafe(self.close)

    # -- the loop's side ---------------------------------------------------------------------
    def _put(self, rendition: str, item: MediaPacket | CodecConfig) -> None:
        for sub in self._subs.get(rendition, ()):
            sub.put(item)

    def close(self) -> None:
        """Close every subscriber (on the loop; also when the broadcast stops abnormally)."""
        self.ended = True
        for subs in self._subs.values():
            for sub in subs:
                sub.close()
        self._subs.clear()

    def subscribe(self, rendition: str, name: str, maxsize: int) -> Subscription:
        """A bounded queue of the rendition from its next keyframe, its configs first."""
        sub = Subscription(name, maxsize)
        if self.ended:
            sub.close()
            return sub
        with self._lock:
            configs = list(self._configs.get(rendition, ()))
        for config in configs:
            sub.put(config)
        sub.skip_to_keyframe()
        self._subs[rendition] = [*self._subs.get(rendition, ()), sub]  # a new list: threads read
        return sub

    def unsubscribe(self, rendition: str, sub: Subscription) -> None:
        subs = self._subs.get(rendition, [])
        if sub in subs:
            self._subs[rendition] = [s for s in subs if s is not sub]
        sub.close()

    def top(self) -> str | None:
        """The announced rendition with the tallest picture (the best H.264 on offer)."""
        with self._lock:
            tracks = list(self._tracks.items())
        if not tracks:
            return None
        return max(tracks, key=lambda item: item[1][0].height)[0]

    def renditions(self) -> list[str]:
        with self._lock:
            return list(self._tracks)


__all__ = ["AAC", "H264", "RungTap"]
