"""The reader thread's video work: decode once, plan the ladder, cut segments, scale once per
rung and route frames, copied packets and audio to the renditions.

Before the ladder is planned (it needs the source's size and frame rate) packets, frames and
audio are held, then replayed into the new renditions. Boundaries come from
:mod:`.boundaries`: time based on decoded frames, or, while the top rung copies the source, on
the source keyframes (marked on packets, matched on frames). Frames are scaled here, never in
an encoder thread, largest rung first, each (with cascading) from the previous rung's picture.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import av
from av.video.frame import PictureType
from av.video.reformatter import Interpolation

from ..ladder import COPYABLE_CODECS, RenditionPlan, Rung, plan_ladder
from ..media import CodecConfig, MediaKind, MediaPacket
from ..options import TranscodeOptions
from ..types import VideoTrackInfo
from .boundaries import BoundaryMarks, SegmentClock
from .queues import AINFO, COPY, FRAME, VINFO
from .rate import RollingRate
from .rendition import Rendition
from .thumbnails import Thumbnailer
from .timebase import MS, TB90K

log = logging.getLogger(__name__)

# Decoders by the codec names the live registry uses.
VIDEO_DECODERS = {"avc1": "h264", "hvc1": "hevc", "av01": "libdav1d", "vp09": "vp9"}

# Planning waits for this much of the source (or its end) to estimate the frame rate.
PLAN_MIN_VIDEO_PACKETS = 12
PLAN_MIN_SPAN_MS = 1000
STARTUP_BUFFER_LIMIT = 1000
COMMON_FRAME_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 23.976, 29.97, 59.94, 120.0)


def estimate_fps(dts_ms: Sequence[int], declared: float) -> float:
    """The source frame rate: the SPS timing info (``declared``, 0 if none) when the timestamps
    agree with it, else the timestamps (snapped to a common rate: milliseconds are coarse)."""
    estimate = 0.0
    if len(dts_ms) >= 2:
        dts = sorted(dts_ms)
        if dts[-1] > dts[0]:
            estimate = (len(dts) - 1) * 1000 / (dts[-1] - dts[0])
    if declared and (not estimate or abs(declared - estimate) / estimate < 0.02):
        return round(declared, 3)
    if estimate:
        for rate in COMMON_FRAME_RATES:
            if abs(estimate - rate) / rate < 0.004:
                return rate
    return round(estimate, 3)


class Reader:
    """Video in, frames and packets out to the renditions; the reader thread only.

    ``ladder`` is the configured rungs (planned against the source once its size and frame
    rate are known) or ready-made plans; ``new_rendition`` makes (but does not start) the
    rendition of a plan.
    """

    def __init__(
        self,
        ladder: Sequence[Rung] | Sequence[RenditionPlan],
        options: TranscodeOptions,
        name: str,
        new_rendition: Callable[[RenditionPlan], Rendition],
        thumbnails: Thumbnailer,
    ) -> None:
        self.name = name
        self.plans: list[RenditionPlan] | None = None
        self.renditions: list[Rendition] = []
        self.frames_decoded = 0
        self.decode_errors = 0
        self.source_size: tuple[int, int] | None = None
        self.source_fps = 0.0
        self.media_rate = RollingRate()
        first = ladder[0]
        self._fixed_plans = (
            [p for p in ladder if isinstance(p, RenditionPlan)]
            if isinstance(first, RenditionPlan)
            else None
        )
        self._rungs = (
            [r for r in ladder if isinstance(r, Rung)] if self._fixed_plans is None else None
        )
        self._passthrough = options.passthrough
        self.decoder_threads = options.decoder_threads
        self.scale_threads = options.scale_threads
        self.interpolation = Interpolation[options.interpolation.upper()]
        self.cascade_scaling = options.cascade_scaling
        self._new_rendition = new_rendition
        self._thumbnails = thumbnails
        self._clock = SegmentClock(options.segment_duration * 1000.0)
        self._marks = BoundaryMarks()  # copy mode: source keyframes that start segments
        self._video_config: CodecConfig | None = None
        self._decoder: Any = None
        self._pending_packets: list[MediaPacket] = []  # startup: video packets before the plan
        self._pending_frames: list[av.VideoFrame] = []
        self._pending_audio: list[tuple[int, Any]] = []
        self._video_packets_seen = 0
        self._first_video_dts: int | None = None
        self._last_video_dts: int | None = None
        self._need_keyframe = True
        self._copy_active = False
        self._copy_held: list[tuple[MediaPacket, bool]] | None = None  # after a config change
        self._copy_rendition: Rendition | None = None
        self._replaying = False
        self._transcoded: list[Rendition] = []

    def source(self) -> dict[str, Any]:
        """The source as decoded (for the transcoder's figures)."""
        size = self.source_size
        return {
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "fps": round(self.source_fps, 3),
            "codec": self._video_config.codec if self._video_config else None,
        }

    def end(self) -> None:
        """The source ended cleanly (after ``drain`` and the audio's flush): a source too short
        to plan for is planned now, with what there is."""
        if self.plans is None and self._pending_frames:
            self._plan()

    def close(self) -> None:
        self._decoder = None

    # -- decoding -------------------------------------------------------------------------
    def _open_decoder(self, config: CodecConfig) -> None:
        name = VIDEO_DECODERS.get(config.codec)
        if name is None:
            log.warning("transcoder %s: no decoder for video codec %s", self.name, config.codec)
            self._decoder = None
            return
        ctx = av.CodecContext.create(name, "r")
        if config.data and config.codec != "vp09":
            ctx.extradata = config.data
        ctx.thread_type = "AUTO"
        ctx.thread_count = self.decoder_threads
        self._decoder = ctx

    def on_config(self, config: CodecConfig) -> None:
        """A video decoder configuration from the source (first, repeated or changed)."""
        previous = self._video_config
        if previous is not None and previous == config:
            return  # a repeated sequence header changes nothing
        self.drain()
        self._video_config = config
        self._open_decoder(config)
        self._need_keyframe = True
        if self.plans is None:
            # Not planned yet: plan from the new configuration only (never copy packets of
            # the old one under the new avcC).
            self._pending_packets.clear()
            self._pending_frames.clear()
            self._video_packets_seen = 0
            self._first_video_dts = self._last_video_dts = None
        elif previous is not None:
            # Decoders restart at the new config's first keyframe: so does every segment.
            self._clock.restart()
            if self._copy_active:
                self._copy_held = []  # copy or encode? decided at its first decoded frame

    def drain(self) -> None:
        """Decode what the decoder still holds (end of stream, or before a new config)."""
        if self._decoder is not None:
            try:
                frames = self._decoder.decode(None)
            except av.error.FFmpegError as exc:
                log.warning("transcoder %s: decoder flush failed: %s", self.name, exc)
                frames = []
            self._decoder = None
            for frame in frames:
                self._on_frame(frame)

    def on_packet(self, packet: MediaPacket) -> None:
        """A video packet from the source."""
        if self._video_config is None or packet.codec != self._video_config.codec:
            # Packets without (or unlike) the announced config: a decoder that needs none
            # (VP9) can still start; others fail at the keyframe and are counted as errors.
            self.on_config(CodecConfig(MediaKind.VIDEO, packet.codec, b""))
        if self._need_keyframe:
            if not packet.keyframe:
                return  # a decoder can only start at a keyframe
            self._need_keyframe = False
        self._video_packets_seen += 1
        if self._first_video_dts is None:
            self._first_video_dts = packet.dts
        self._last_video_dts = packet.dts
        if self.plans is None:
            self._pending_packets.append(packet)
        else:
            self._route_packet(packet)
        self._decode(packet)
        if self.plans is None and self._ready_to_plan():
            self._plan()

    def _decode(self, packet: MediaPacket) -> None:
        decoder = self._decoder
        if decoder is None:
            return
        avpacket = av.Packet(packet.data)
        avpacket.pts, avpacket.dts, avpacket.time_base = packet.pts, packet.dts, MS
        avpacket.is_keyframe = packet.keyframe
        try:
            frames = decoder.decode(avpacket)
        except av.error.FFmpegError as exc:
            self.decode_errors += 1
            if self.decode_errors <= 5 or self.decode_errors % 100 == 0:
                log.warning(
                    "transcoder %s: undecodable video at %d ms (%d so far): %s",
                    self.name,
                    packet.pts,
                    self.decode_errors,
                    exc,
                )
            return
        for frame in frames:
            self._on_frame(frame)

    # -- planning -------------------------------------------------------------------------
    def _ready_to_plan(self) -> bool:
        if not self._pending_frames:
            if len(self._pending_packets) > STARTUP_BUFFER_LIMIT:
                del self._pending_packets[: len(self._pending_packets) // 2]
            return False
        span = (self._last_video_dts or 0) - (self._first_video_dts or 0)
        return (
            self._video_packets_seen >= PLAN_MIN_VIDEO_PACKETS
            or span >= PLAN_MIN_SPAN_MS
            or len(self._pending_packets) > STARTUP_BUFFER_LIMIT
        )

    def _plan(self) -> None:
        first = self._pending_frames[0]
        width, height = first.width, first.height
        declared = getattr(self._decoder, "framerate", None)
        fps = estimate_fps(
            [p.dts for p in self._pending_packets], float(declared) if declared else 0.0
        )
        codec = self._video_config.codec if self._video_config else ""
        self.source_size, self.source_fps = (width, height), fps
        if self._fixed_plans is not None:
            # Ready-made plans: a copy rung can only copy H.264, and has the source's size.
            plans = [
                p
                if not p.passthrough
                else replace(p, width=width, height=height, fps=fps or p.fps)
                if codec in COPYABLE_CODECS
                else replace(p, passthrough=False)
                for p in self._fixed_plans
            ]
        else:
            assert self._rungs is not None
            plans = plan_ladder(width, height, fps, codec, self._rungs, self._passthrough)
        self.plans = plans
        log.info(
            "transcoder %s: %dx%d %.2f fps %s -> %s",
            self.name,
            width,
            height,
            fps,
            codec,
            ", ".join(
                f"{p.name} {p.width}x{p.height}@{p.fps:g}"
                f"{' copy' if p.passthrough else f' {p.video_kbps}k'}"
                for p in plans
            ),
        )
        for plan in plans:
            rendition = self._new_rendition(plan)
            rendition.decimate = bool(fps) and fps > plan.fps + 0.5 and not plan.passthrough
            if plan.passthrough:
                self._copy_rendition = rendition
            else:
                self._transcoded.append(rendition)
            self.renditions.append(rendition)
        self._transcoded.sort(key=lambda r: r.plan.width * r.plan.height, reverse=True)
        self._copy_active = self._copy_rendition is not None
        copy = self._copy_rendition
        if copy is not None and self._video_config is not None:
            copy.queue.put(
                VINFO, VideoTrackInfo(self._video_config.data, width, height, fps or copy.plan.fps)
            )
        for rendition in self.renditions:
            rendition.thread.start()
        backlog, self._pending_audio = self._pending_audio, []
        for kind, payload in backlog:
            self.emit_audio(kind, payload)
        packets, frames = self._pending_packets, self._pending_frames
        self._pending_packets, self._pending_frames = [], []
        self._replaying = True
        try:
            for packet in packets:
                self._route_packet(packet)
            for frame in frames:
                self._on_frame(frame)
        finally:
            self._replaying = False

    # -- boundaries and routing -----------------------------------------------------------
    def _route_packet(self, packet: MediaPacket) -> None:
        """Copy mode: boundaries are source keyframes; hand the packet to the copy rung."""
        if not self._copy_active:
            return
        boundary = self._clock.cut(packet.pts, can_cut=packet.keyframe)
        if boundary:
            self._marks.mark(packet.pts)
        held = self._copy_held
        if held is not None:
            held.append((packet, boundary))
            if len(held) > STARTUP_BUFFER_LIMIT:
                del held[:]
            return
        assert self._copy_rendition is not None
        self._copy_rendition.queue.put_video(COPY, packet, boundary, self._replaying)

    def _resolve_copy_after_change(self, frame: av.VideoFrame) -> None:
        """First frame after a config change: keep copying, or encode the copy rung from now."""
        copy, held = self._copy_rendition, self._copy_held
        assert copy is not None and held is not None
        self._copy_held = None
        config = self._video_config
        same = (
            config is not None
            and config.codec == "avc1"
            and (frame.width, frame.height) == (copy.plan.width, copy.plan.height)
        )
        if same:
            assert config is not None
            copy.queue.put(
                VINFO, VideoTrackInfo(config.data, frame.width, frame.height, copy.plan.fps)
            )
            for packet, boundary in held:
                copy.queue.put_video(COPY, packet, boundary, True)
            return
        log.info(
            "transcoder %s: source changed to %s %dx%d: encoding rendition %s from now",
            self.name,
            config.codec if config else "?",
            frame.width,
            frame.height,
            copy.name,
        )
        copy.copying = False
        self._copy_active = False
        self._transcoded.insert(0, copy)
        copy.decimate = False
        # Boundaries are time based from here on; this frame starts a segment everywhere.
        self._clock.restart()

    def _on_frame(self, frame: av.VideoFrame) -> None:
        if self.plans is None:
            self._pending_frames.append(frame)
            return
        self.frames_decoded += 1
        pts_ms = frame.pts
        if pts_ms is None:
            return
        if self._copy_held is not None:
            self._resolve_copy_after_change(frame)
        boundary = self._marks.take(pts_ms) if self._copy_active else self._clock.cut(pts_ms)
        self.media_rate.record(time.monotonic(), pts_ms / 1000)
        if frame.key_frame or boundary:
            self._thumbnails.offer(frame, pts_ms)
        t = pts_ms * 90
        # Scale everything first, then hand out: no frame is read by an encoder thread while
        # it is still being scaled from here. Rungs go largest first so that, with cascading,
        # each scales from the previous rung's (smaller) picture instead of the full source.
        ready: list[tuple[Rendition, av.VideoFrame]] = []
        base = frame
        for rendition in self._transcoded:
            if not rendition.accepts(t, boundary):
                continue
            if rendition.would_drop(boundary):
                rendition.queue.dropped += 1  # only the reader thread counts drops
                continue
            plan = rendition.plan
            if (frame.width, frame.height) == (
                plan.width,
                plan.height,
            ) and frame.format.name == "yuv420p":
                scaled = frame  # the decoded picture itself, already the right size
            else:
                source = base if base.width >= plan.width and base.height >= plan.height else frame
                scaled = rendition.reformatter.reformat(
                    source,
                    plan.width,
                    plan.height,
                    "yuv420p",
                    interpolation=self.interpolation,
                    threads=self.scale_threads,
                )
            if self.cascade_scaling:
                base = scaled
            ready.append((rendition, scaled))
        picture_type = PictureType.I if boundary else PictureType.NONE
        for rendition, scaled in ready:
            scaled.pts, scaled.time_base, scaled.pict_type = t, TB90K, picture_type
            rendition.queue.put_video(FRAME, scaled, boundary, self._replaying)

    # -- audio ----------------------------------------------------------------------------
    def emit_audio(self, kind: int, payload: Any) -> None:
        """Audio goes to every rendition through its own queue (before the plan: held)."""
        if self.plans is None:
            self._pending_audio.append((kind, payload))
            if len(self._pending_audio) > STARTUP_BUFFER_LIMIT:
                keep = [i for i in self._pending_audio if i[0] == AINFO][-1:]
                self._pending_audio = keep + self._pending_audio[-STARTUP_BUFFER_LIMIT // 2 :]
            return
        for rendition in self.renditions:
            rendition.queue.put(kind, payload)
