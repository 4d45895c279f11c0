"""Home-page thumbnails: a small JPEG of a keyframe every so many seconds of media.

Made in the reader thread from the decoded picture with its own scaler (PyAV deadlocks when
two threads scale one frame), so no encoder thread ever touches a frame being scaled here.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import av
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter

from .contracts import TranscodeSink

log = logging.getLogger(__name__)


class Thumbnailer:
    """Offered keyframes and boundary frames; hands one to the sink each ``interval_s``."""

    def __init__(self, interval_s: float, width: int, sink: TranscodeSink, stream: str) -> None:
        self.interval_ms = interval_s * 1000.0
        self.width = width
        self.sink = sink
        self.stream = stream
        self.count = 0
        self._next_ms: float | None = None
        self._scaler = VideoReformatter()

    def offer(self, frame: av.VideoFrame, pts_ms: int) -> None:
        due = self._next_ms
        # Not due yet, unless the clock went back (then the old due time means nothing).
        if due is not None and pts_ms < due and pts_ms >= due - 2 * self.interval_ms:
            return
        self._next_ms = pts_ms + self.interval_ms
        try:
            jpeg = self._jpeg(frame)
        except av.error.FFmpegError as exc:
            log.warning("transcoder %s: thumbnail failed: %s", self.stream, exc)
            return
        self.count += 1
        try:
            self.sink.on_thumbnail(jpeg)
        except Exception:
            log.exception("transcoder %s: sink.on_thumbnail failed", self.stream)

    def _jpeg(self, frame: av.VideoFrame) -> bytes:
        width = self.width
        height = max(2, round(frame.height * width / frame.width / 2) * 2)
        small = self._scaler.reformat(
            frame,
            width,
            height,
            "yuvj420p",
            dst_color_range=ColorRange.JPEG,
            interpolation=Interpolation.BICUBIC,
            threads=1,
        )
        ctx = av.CodecContext.create("mjpeg", "w")
        ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
        ctx.time_base = Fraction(1, 25)
        ctx.qscale = True
        ctx.global_quality = 4 * 118  # q 4 in FF_QP2LAMBDA units: a crisp small JPEG
        ctx.color_range = ColorRange.JPEG
        small.pts = 0
        data = b"".join(bytes(p) for p in ctx.encode(small))
        data += b"".join(bytes(p) for p in ctx.encode(None))
        return data
