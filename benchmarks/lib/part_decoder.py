"""LL-HLS parts of one rendition decoded as they arrive, and the barcode clock read off every
frame: when each frame left the publisher, seen at the moment a viewer could show it.

Why a decoder of our own rather than a player: the latency benchmark needs the time each frame
became decodable at the client, part by part, without a player's buffering policy in between.
"""

from __future__ import annotations

import av
import numpy as np

from benchmarks.lib.barcode import band_height, read
from benchmarks.lib.fmp4 import avc_config, video_samples


class PartDecoder:
    """Decodes one rendition's parts in order, incrementally (one decoder for the whole run),
    and reads the clock off every frame. Frames before the first sync sample are skipped."""

    def __init__(self, init: bytes) -> None:
        self.track_id, avcc, self.timescale = avc_config(init)
        self.ctx = av.CodecContext.create("h264", "r")
        self.ctx.extradata = avcc
        # One thread: a frame comes out for its own packet, not some packets later.
        self.ctx.thread_count = 1
        self.started = False
        self.frames = 0
        self.unreadable = 0

    def decode(self, part: bytes) -> list[tuple[int, int, int]]:
        """(pts, frame index, t_ms) of each readable frame of the part."""
        out = []
        for pts, sample, sync in video_samples(part, self.track_id):
            if not self.started:
                if not sync:
                    continue
                self.started = True
            packet = av.Packet(sample)
            packet.pts = packet.dts = pts
            try:
                frames = self.ctx.decode(packet)
            except av.error.FFmpegError:
                continue
            for frame in frames:
                self.frames += 1
                plane = frame.planes[0]
                rows = band_height(frame.width)
                y = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
                code = read(y[:rows, : frame.width])
                if code is None:
                    self.unreadable += 1
                    continue
                out.append((frame.pts if frame.pts is not None else pts, code[0], code[1]))
        return out
