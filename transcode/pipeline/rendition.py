"""One output rendition: where the reader routes its frames, and the worker thread that
encodes them (libx264) or forwards the source's packets (copy rung) and delivers them, with
the shared audio, to the sink.

Each rendition has its own thread, so a slow encoder or a slow sink stalls only its own
rendition; the reader reaches it only through its bounded queue.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
from av.codec.context import Flags
from av.video.reformatter import VideoReformatter

from ..avc import annexb_to_avcc, avcc_from_annexb
from ..ladder import RenditionPlan
from ..media import MediaPacket
from ..options import TranscodeOptions
from ..types import VIDEO_TIMESCALE, AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo
from .contracts import TranscodeSink
from .queues import AINFO, AUDIO, COPY, FRAME, VINFO, RungQueue
from .rate import RollingRate
from .timebase import TB90K


class Rendition:
    """One output rendition: the reader-side routing state and its worker thread.

    Fields under "reader" are touched by the reader thread only, fields under "worker" by the
    worker thread only; the queue is the only thing both use.
    """

    def __init__(
        self,
        plan: RenditionPlan,
        options: TranscodeOptions,
        sink: TranscodeSink,
        *,
        stream: str,
        wait: threading.Event | None,
        fail: Callable[[str, BaseException], None],
    ) -> None:
        """``wait``: lossless mode, the reader waits for room until it is set (the stop
        event); ``fail`` reports an exception that ends the pipeline."""
        self.plan = plan
        self.name = plan.name
        self.options = options
        self.sink = sink
        self._fail = fail
        # A copy rung queues small compressed packets: room for a network burst of them.
        queue_size = options.queue_size
        size = max(queue_size * 4, 256) if plan.passthrough else queue_size
        self.queue = RungQueue(size, wait)
        self.thread = threading.Thread(
            target=self._run, name=f"transcode-{stream}-{plan.name}", daemon=True
        )
        # reader
        self.copying = plan.passthrough
        self.reformatter = VideoReformatter()
        self.interval = VIDEO_TIMESCALE / plan.fps
        self.decimate = False
        self.next_t = -math.inf
        self.last_t: int | None = None
        # worker
        self.frames = 0
        self._encoder: av.video.codeccontext.VideoCodecContext | None = None
        self._annexb = False
        self._boundaries: set[int] = set()
        self._duration = round(self.interval)
        self._video_info: VideoTrackInfo | None = None
        self._audio_info: AudioTrackInfo | None = None
        self._announced: tuple[VideoTrackInfo | None, AudioTrackInfo | None] = (None, None)
        self._held_audio: deque[EncodedPacket] = deque(maxlen=512)
        self._fps = RollingRate()
        self._progress = RollingRate()
        self.last_pts: int | None = None

    # -- reader side ----------------------------------------------------------------------
    def accepts(self, t: int, boundary: bool) -> bool:
        """Frame-rate cap and strictly increasing timestamps for this rung (90 kHz ``t``)."""
        last = self.last_t
        if last is not None and t <= last:
            if last - t < VIDEO_TIMESCALE:
                return False  # a repeated or reordered timestamp: the encoder needs increasing
            self.next_t = -math.inf  # the clock went back a long way: start over
        if self.decimate:
            if not boundary and t < self.next_t - self.interval / 4:
                return False
            nxt = self.next_t + self.interval
            self.next_t = t + self.interval if boundary or t >= nxt else nxt
        self.last_t = t
        return True

    def would_drop(self, boundary: bool) -> bool:
        """The queue is skipping to the next boundary: no need to even scale this frame."""
        return not boundary and self.queue.skipping

    # -- worker side ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            if not self.plan.passthrough:
                self._open_encoder()
            queue = self.queue
            while True:
                kind, payload, boundary = queue.get()
                if kind == FRAME:
                    self._encode(payload, boundary)
                elif kind == COPY:
                    self._copy(payload, boundary)
                elif kind == AUDIO:
                    self._deliver(payload)
                elif kind == VINFO:
                    self._close_encoder()
                    self._video_info = payload
                elif kind == AINFO:
                    self._audio_info = payload
                else:  # END
                    if payload:
                        self._close_encoder()
                    return
        except Exception as exc:  # any failure ends the pipeline, logged
            self._fail(f"rendition {self.name}", exc)

    def _open_encoder(self) -> None:
        plan, opts = self.plan, self.options
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = plan.width, plan.height, "yuv420p"
        ctx.time_base = TB90K
        ctx.framerate = Fraction(plan.fps).limit_denominator(1001)
        ctx.bit_rate = plan.video_kbps * 1000
        ctx.flags |= Flags.global_header
        ctx.thread_count = opts.x264_threads
        # Keyframes only where the reader says (forced IDR on boundary frames): no scene cuts,
        # no periodic keyframes. annexb=0 makes x264 write AVCC packets and an avcC record.
        params = [
            "annexb=0",
            "scenecut=0",
            "keyint=infinite",
            "min-keyint=1",
            f"vbv-maxrate={plan.maxrate_kbps}",
            f"vbv-bufsize={plan.bufsize_kbits}",
        ]
        if opts.bframes is not None:
            params.append(f"bframes={opts.bframes}")
        if opts.x264_params:
            params.append(opts.x264_params)
        options = {"preset": opts.preset, "forced-idr": "1", "x264-params": ":".join(params)}
        if opts.tune:
            options["tune"] = opts.tune
        ctx.options = options
        ctx.open()
        extradata = ctx.extradata or b""
        self._annexb = extradata[:1] != b"\x01"
        self._encoder = ctx
        self._video_info = VideoTrackInfo(
            avcc_from_annexb(extradata), plan.width, plan.height, plan.fps
        )

    def _close_encoder(self) -> None:
        if self._encoder is not None:
            for packet in self._encoder.encode(None):
                self._emit(packet)
            self._encoder = None

    def _encode(self, frame: av.VideoFrame, boundary: bool) -> None:
        if self._encoder is None:
            self._open_encoder()
        if boundary:
            assert frame.pts is not None  # the reader stamps every frame it hands out
            self._boundaries.add(frame.pts)
            if len(self._boundaries) > 64:
                floor = frame.pts - 60 * VIDEO_TIMESCALE
                self._boundaries = {b for b in self._boundaries if b >= floor}
        for packet in self._encoder.encode(frame):  # type: ignore[union-attr]
            self._emit(packet)

    def _emit(self, packet: av.Packet) -> None:
        pts, dts = packet.pts, packet.dts
        assert pts is not None and dts is not None  # libx264 output is always timed
        key = packet.is_keyframe
        start = False
        if key and pts in self._boundaries:
            self._boundaries.discard(pts)
            start = True
        data = bytes(packet)
        if self._annexb:
            data = annexb_to_avcc(data)
        self._deliver(EncodedPacket(Track.VIDEO, pts, dts, self._duration, key, data, start))

    def _copy(self, packet: MediaPacket, boundary: bool) -> None:
        self._close_encoder()
        self._deliver(
            EncodedPacket(
                Track.VIDEO,
                packet.pts * 90,
                packet.dts * 90,
                self._duration,
                packet.keyframe,
                packet.data,
                boundary and packet.keyframe,
            )
        )

    def _deliver(self, packet: EncodedPacket) -> None:
        sink = self.sink
        video, audio = self._video_info, self._audio_info
        if video is None:
            if packet.track is Track.AUDIO:
                self._held_audio.append(packet)
            return
        if self._announced[0] is not video or self._announced[1] is not audio:
            sink.on_track_info(self.name, video, audio)
            self._announced = (video, audio)
        while self._held_audio:
            sink.on_packet(self.name, self._held_audio.popleft())
        sink.on_packet(self.name, packet)
        if packet.track is Track.VIDEO:
            self.frames += 1
            self.last_pts = packet.pts
            now = time.monotonic()
            self._fps.record(now, self.frames)
            self._progress.record(now, packet.pts / VIDEO_TIMESCALE)

    def stats(self, now: float) -> dict[str, Any]:
        return {
            "fps": round(self._fps.rate(now), 2),
            "frames": self.frames,
            "dropped_frames": self.queue.dropped,
            "dropped_audio": self.queue.dropped_audio,
            "queued": len(self.queue),
            "passthrough": self.copying,
            "width": self.plan.width,
            "height": self.plan.height,
            "speed": round(self._progress.rate(now), 3),
        }
