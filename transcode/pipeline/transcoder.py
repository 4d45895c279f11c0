"""``LiveTranscoder``: the reader thread and the rendition threads of one live stream, composed.

It reads the source, hands video to the :class:`~.reader.Reader` and audio to the
:class:`~.audio.AudioPath`, and owns the lifecycle: start, stop, the end of the source, a
failure in any thread (which ends the pipeline, logged) and the one ``on_end`` that follows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ..ladder import RenditionPlan, Rung
from ..media import CodecConfig, MediaKind
from ..options import TranscodeOptions
from .audio import AudioPath
from .contracts import PacketSource, TranscodeSink
from .queues import END
from .reader import Reader
from .rendition import Rendition
from .thumbnails import Thumbnailer

log = logging.getLogger(__name__)


class LiveTranscoder:
    """Transcodes one live stream into its ladder; see the package docstring for the threads.

    ``ladder`` is either the configured rungs (planned against the source once its size and
    frame rate are known, with ``options.passthrough``) or ready-made :class:`RenditionPlan`\\ s.
    ``options`` come from settings in the server (validated there, at load); keyword
    ``overrides`` replace single fields of them (tests, benchmarks) and are checked by the same
    rules. ``name`` (the stream's) names the threads and log lines.
    """

    def __init__(
        self,
        subscription: PacketSource,
        ladder: Sequence[Rung] | Sequence[RenditionPlan],
        sink: TranscodeSink,
        options: TranscodeOptions | None = None,
        *,
        name: str = "stream",
        **overrides: Any,
    ) -> None:
        if not ladder:
            raise ValueError("the ladder needs at least one rung")
        options = TranscodeOptions() if options is None else options
        if overrides:
            options = replace(options, **overrides)
        self.subscription = subscription
        self.sink = sink
        self.name = name
        self.options = options
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"transcode-{name}-reader", daemon=True
        )
        self._thumbnails = Thumbnailer(
            options.thumbnail_interval, options.thumbnail_width, sink, name
        )
        self._reader = Reader(ladder, options, name, self._new_rendition, self._thumbnails)
        self._audio = AudioPath(options.audio_kbps, self._reader.emit_audio)

    @property
    def plans(self) -> list[RenditionPlan] | None:
        """The renditions planned for the source; None until enough of it was seen."""
        return self._reader.plans

    @property
    def renditions(self) -> list[Rendition]:
        return self._reader.renditions

    def _new_rendition(self, plan: RenditionPlan) -> Rendition:
        # Live: a slow rung drops to the next boundary. Lossless: the reader waits for room,
        # until the pipeline stops.
        return Rendition(
            plan,
            self.options,
            self.sink,
            stream=self.name,
            wait=self._stop if self.options.lossless else None,
            fail=self._fail,
        )

    # -- control --------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop soon without flushing; ``on_end`` is still called."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the pipeline to end; True if it has (``on_end`` was delivered)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stats(self) -> dict[str, Any]:
        """Per-rendition fps/frames/drops, the pipeline's speed and totals (for Prometheus)."""
        now = time.monotonic()
        reader = self._reader
        renditions = {r.name: r.stats(now) for r in list(reader.renditions)}
        speeds = [reader.media_rate.rate(now)] + [
            s["speed"] for s in renditions.values() if s["frames"] and not s["passthrough"]
        ]
        return {
            "running": self.running,
            "speed": round(min(speeds), 3) if self.running else 0.0,
            "frames_decoded": reader.frames_decoded,
            "decode_errors": reader.decode_errors,
            "dropped_frames": sum(s["dropped_frames"] for s in renditions.values()),
            "audio_packets": self._audio.packets,
            "thumbnails": self._thumbnails.count,
            "source": reader.source(),
            "renditions": renditions,
        }

    def _fail(self, where: str, exc: BaseException) -> None:
        log.error("transcoder %s: %s failed: %s", self.name, where, exc, exc_info=exc)
        if self.error is None:
            self.error = exc
        self._stop.set()

    # -- reader thread --------------------------------------------------------------------
    def _run(self) -> None:
        clean = False
        reader, audio = self._reader, self._audio
        try:
            sub = self.subscription
            while not self._stop.is_set():
                try:
                    item = sub.get_blocking(0.25)
                except TimeoutError:
                    continue
                if item is None:
                    clean = True
                    break
                if isinstance(item, CodecConfig):
                    if item.kind is MediaKind.VIDEO:
                        reader.on_config(item)
                    else:
                        audio.on_config(item)
                elif item.kind is MediaKind.VIDEO:
                    reader.on_packet(item)
                else:
                    audio.on_packet(item)
            if clean:
                reader.drain()
                audio.flush()
                reader.end()
        except Exception as exc:  # logged, ends the pipeline cleanly
            clean = False
            self._fail("reader", exc)
        finally:
            self._finish(clean and not self._stop.is_set())

    def _finish(self, flush: bool) -> None:
        renditions = self._reader.renditions
        for rendition in renditions:
            if flush:
                rendition.queue.put(END, True)
            else:
                rendition.queue.abort()
        for rendition in renditions:
            while rendition.thread.is_alive():
                rendition.thread.join(0.5)
                if self._stop.is_set() and flush:
                    flush = False
                    for r in renditions:
                        r.queue.abort()
        self._reader.close()
        try:
            self.sink.on_end()
        except Exception:
            log.exception("transcoder %s: sink.on_end failed", self.name)
