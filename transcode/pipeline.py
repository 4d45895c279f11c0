"""The live transcoder: decode once, scale once per rung, encode each rung in its own thread.

One reader thread takes packets from the stream's :class:`Subscription`, decodes video once
(threaded PyAV decoder), decides segment boundaries once, scales each frame once per transcoded
rung (largest first, each from the next larger rung's picture) and hands (frame, boundary) to
that rung's bounded queue. Scaling stays in the reader thread on purpose: two threads calling
``reformat()`` on one ``VideoFrame`` deadlock in PyAV, and every frame is scaled before any
encoder thread can see it.

Every rendition has its own worker thread (libx264 for transcoded rungs; the copy rung just
forwards the source's AVCC packets) that also delivers the shared audio to the sink, so a slow
sink or a slow encoder only ever stalls its own rendition. A full rung queue drops frames up
to the next segment boundary and counts them; the reader never waits on a rung, just as ingest
never waits on the reader (the Subscription drops to the next keyframe instead). Only in
``lossless`` mode (files, benchmarks) does the reader wait for the slowest rung.

Because every rung forces its keyframes on the frames the reader marked as boundaries, segment
starts have identical timestamps in every rendition. With a copy (passthrough) rung, boundaries
can only be source keyframes, so then they are the first source keyframe at/after each
multiple of the segment duration.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Literal, Protocol

import av
from av.audio.resampler import AudioResampler
from av.codec.context import Flags
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter

from .avc import annexb_to_avcc, avcc_from_annexb
from .ladder import (
    COPYABLE_CODECS,
    PASSTHROUGH_MODES,
    PassthroughMode,
    RenditionPlan,
    Rung,
    plan_ladder,
)
from .media import CodecConfig, MediaKind, MediaPacket
from .types import VIDEO_TIMESCALE, AudioTrackInfo, EncodedPacket, Track, VideoTrackInfo

log = logging.getLogger(__name__)

MS = Fraction(1, 1000)
TB90K = Fraction(1, VIDEO_TIMESCALE)

# Decoders by the codec names the live registry uses.
VIDEO_DECODERS = {"avc1": "h264", "hvc1": "hevc", "av01": "libdav1d", "vp09": "vp9"}
AUDIO_DECODERS = {"mp3": "mp3", "opus": "opus", "flac": "flac", "ac-3": "ac3", "ec-3": "eac3",
                  "mp4a": "aac", "alaw": "pcm_alaw", "ulaw": "pcm_mulaw"}
AAC_FRAME = 1024
AAC_RATES = frozenset((96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000,
                       11025, 8000))

# Planning waits for this much of the source (or its end) to estimate the frame rate.
PLAN_MIN_VIDEO_PACKETS = 12
PLAN_MIN_SPAN_MS = 1000
STARTUP_BUFFER_LIMIT = 1000
COMMON_FRAME_RATES = (24.0, 25.0, 30.0, 48.0, 50.0, 60.0, 23.976, 29.97, 59.94, 120.0)


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

    def on_track_info(self, rendition: str, video: VideoTrackInfo,
                      audio: AudioTrackInfo | None) -> None: ...

    def on_packet(self, rendition: str, packet: EncodedPacket) -> None: ...

    def on_thumbnail(self, jpeg: bytes) -> None: ...

    def on_end(self) -> None: ...


# Items of a rendition queue: (kind, payload, boundary).
_FRAME, _COPY, _AUDIO, _VINFO, _AINFO, _END = range(6)


class _RungQueue:
    """Bounded hand-off from the reader to one rendition's worker; ``put`` never blocks.

    Only video counts against ``maxsize``. When full, video is dropped (and counted) until the
    next segment boundary, which is always accepted so every rendition keeps every segment
    start. ``hard_limit`` bounds everything, boundaries and audio included, for a worker that
    is stuck altogether.
    """

    def __init__(self, maxsize: int, wait: threading.Event | None = None) -> None:
        self.maxsize = max(1, maxsize)
        # Lossless mode (files, benchmarks): put_video waits for room until this event is set.
        self._wait_until = wait
        self.hard_limit = self.maxsize * 4 + 256
        self.dropped = 0
        self.dropped_audio = 0
        self._video = 0
        self._skipping = False
        self._items: deque[tuple[int, Any, bool]] = deque()
        self._cond = threading.Condition()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def skipping(self) -> bool:
        return self._skipping

    def put_video(self, kind: int, payload: Any, boundary: bool, force: bool = False) -> bool:
        """Queue a frame or copy packet; False if it was dropped (and counted).

        ``force`` skips the bound: the start-up backlog replayed once the ladder is planned
        is not a sign of a slow rung.
        """
        with self._cond:
            if force:
                self._skipping = False
            elif self._wait_until is not None:
                while self._video >= self.maxsize and not self._wait_until.is_set():
                    self._cond.wait(0.1)
            elif boundary:
                if len(self._items) >= self.hard_limit:
                    self.dropped += 1
                    self._skipping = True
                    return False
                self._skipping = False
            elif self._skipping or self._video >= self.maxsize:
                self._skipping = True
                self.dropped += 1
                return False
            self._items.append((kind, payload, boundary))
            self._video += 1
            self._cond.notify()
            return True

    def put(self, kind: int, payload: Any) -> None:
        with self._cond:
            if kind == _AUDIO and len(self._items) >= self.hard_limit:
                self.dropped_audio += 1
                return
            self._items.append((kind, payload, False))
            self._cond.notify()

    def abort(self) -> None:
        """Discard what is queued and tell the worker to stop without flushing."""
        with self._cond:
            self._items.clear()
            self._video = 0
            self._items.append((_END, False, False))
            self._cond.notify()

    def get(self) -> tuple[int, Any, bool]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item = self._items.popleft()
            if item[0] == _FRAME or item[0] == _COPY:
                self._video -= 1
                if self._wait_until is not None:
                    self._cond.notify()
            return item


class _Rate:
    """Rolling rate of a growing counter over the last ``window`` seconds."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()
        self._latest: tuple[float, float] | None = None

    def record(self, now: float, value: float) -> None:
        self._latest = (now, value)
        samples = self._samples
        if not samples or now - samples[-1][0] >= 0.25:
            samples.append((now, value))
            while len(samples) > 2 and now - samples[0][0] > self.window:
                samples.popleft()

    def rate(self, now: float) -> float:
        latest = self._latest
        if latest is None or not self._samples or now - latest[0] > self.window:
            return 0.0  # nothing recent: stalled or ended
        t0, v0 = self._samples[0]
        t1, v1 = latest
        return (v1 - v0) / (t1 - t0) if t1 > t0 else 0.0


@dataclass(slots=True)
class EncoderOptions:
    """libx264 settings shared by every transcoded rung."""

    preset: str = "veryfast"
    tune: str | None = None
    bframes: int | None = 0
    threads: int = 0  # 0: libx264 picks (1.5 x cores)
    extra_params: str = ""


class _Rendition:
    """One output rendition: the reader-side routing state and its worker thread.

    Fields under "reader" are touched by the reader thread only, fields under "worker" by the
    worker thread only; the queue is the only thing both use.
    """

    def __init__(self, owner: LiveTranscoder, plan: RenditionPlan, queue_size: int) -> None:
        self.owner = owner
        self.plan = plan
        self.name = plan.name
        # A copy rung queues small compressed packets: room for a network burst of them.
        size = max(queue_size * 4, 256) if plan.passthrough else queue_size
        self.queue = _RungQueue(size, owner._stop if owner.lossless else None)
        self.thread = threading.Thread(target=self._run, name=f"transcode-{owner.name}-{plan.name}",
                                       daemon=True)
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
        self._fps = _Rate()
        self._progress = _Rate()
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
                if kind == _FRAME:
                    self._encode(payload, boundary)
                elif kind == _COPY:
                    self._copy(payload, boundary)
                elif kind == _AUDIO:
                    self._deliver(payload)
                elif kind == _VINFO:
                    self._close_encoder()
                    self._video_info = payload
                elif kind == _AINFO:
                    self._audio_info = payload
                else:  # _END
                    if payload:
                        self._close_encoder()
                    return
        except Exception as exc:  # noqa: BLE001 - any failure ends the pipeline, logged
            self.owner._fail(f"rendition {self.name}", exc)

    def _open_encoder(self) -> None:
        plan, opts = self.plan, self.owner.encoder_options
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = plan.width, plan.height, "yuv420p"
        ctx.time_base = TB90K
        ctx.framerate = Fraction(plan.fps).limit_denominator(1001)
        ctx.bit_rate = plan.video_kbps * 1000
        ctx.flags |= Flags.global_header
        ctx.thread_count = opts.threads
        # Keyframes only where the reader says (forced IDR on boundary frames): no scene cuts,
        # no periodic keyframes. annexb=0 makes x264 write AVCC packets and an avcC record.
        params = ["annexb=0", "scenecut=0", "keyint=infinite", "min-keyint=1",
                  f"vbv-maxrate={plan.maxrate_kbps}", f"vbv-bufsize={plan.bufsize_kbits}"]
        if opts.bframes is not None:
            params.append(f"bframes={opts.bframes}")
        if opts.extra_params:
            params.append(opts.extra_params)
        options = {"preset": opts.preset, "forced-idr": "1", "x264-params": ":".join(params)}
        if opts.tune:
            options["tune"] = opts.tune
        ctx.options = options
        ctx.open()
        extradata = ctx.extradata or b""
        self._annexb = extradata[:1] != b"\x01"
        self._encoder = ctx
        self._video_info = VideoTrackInfo(avcc_from_annexb(extradata), plan.width, plan.height,
                                          plan.fps)

    def _close_encoder(self) -> None:
        if self._encoder is not None:
            for packet in self._encoder.encode(None):
                self._emit(packet)
            self._encoder = None

    def _encode(self, frame: av.VideoFrame, boundary: bool) -> None:
        if self._encoder is None:
            self._open_encoder()
        if boundary:
            self._boundaries.add(frame.pts)
            if len(self._boundaries) > 64:
                floor = frame.pts - 60 * VIDEO_TIMESCALE
                self._boundaries = {b for b in self._boundaries if b >= floor}
        for packet in self._encoder.encode(frame):  # type: ignore[union-attr]
            self._emit(packet)

    def _emit(self, packet: av.Packet) -> None:
        pts = packet.pts
        key = packet.is_keyframe
        start = False
        if key and pts in self._boundaries:
            self._boundaries.discard(pts)
            start = True
        data = bytes(packet)
        if self._annexb:
            data = annexb_to_avcc(data)
        self._deliver(EncodedPacket(Track.VIDEO, pts, packet.dts, self._duration, key, data,
                                    start))

    def _copy(self, packet: MediaPacket, boundary: bool) -> None:
        self._close_encoder()
        self._deliver(EncodedPacket(Track.VIDEO, packet.pts * 90, packet.dts * 90,
                                    self._duration, packet.keyframe, packet.data,
                                    boundary and packet.keyframe))

    def _deliver(self, packet: EncodedPacket) -> None:
        sink = self.owner.sink
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


class _AudioPath:
    """AAC is copied; any other audio is decoded and re-encoded to AAC. Reader thread only.

    Results go to ``emit``: ``(_AUDIO, EncodedPacket)``, and ``(_AINFO, AudioTrackInfo | None)``
    whenever the audio track changes, in order with the packets.
    """

    def __init__(self, kbps: int, emit: Callable[[int, Any], None]) -> None:
        self.kbps = kbps
        self.info: AudioTrackInfo | None = None
        self.packets = 0
        self.errors = 0
        self._emit = emit
        self._mode: Literal["copy", "encode", "none"] | None = None
        self._codec: str | None = None
        self._config: CodecConfig | None = None
        self._rate = 0
        self._next: int | None = None  # next contiguous timestamp, in samples
        self._decoder: Any = None
        self._resampler: AudioResampler | None = None
        self._encoder: Any = None
        self._shift: int | None = None
        self._warned: set[str] = set()

    def on_config(self, config: CodecConfig) -> None:
        if config == self._config:
            return  # a repeated sequence header
        self.flush()
        self._config = config
        self._setup(config.codec, config)

    def on_packet(self, packet: MediaPacket) -> None:
        if self._mode is None or packet.codec != self._codec:
            self.flush()
            config = self._config if self._config and self._config.codec == packet.codec else None
            self._setup(packet.codec, config)
        if self._mode == "copy":
            pts = self._smooth(packet.pts * self._rate // 1000)
            self._out(EncodedPacket(Track.AUDIO, pts, pts, AAC_FRAME, True, packet.data))
        elif self._mode == "encode":
            avpacket = av.Packet(packet.data)
            avpacket.pts = avpacket.dts = packet.pts
            avpacket.time_base = MS
            try:
                frames = self._decoder.decode(avpacket)
            except av.error.FFmpegError as exc:
                self.errors += 1
                if self.errors <= 3 or self.errors % 100 == 0:
                    log.warning("audio %s: undecodable packet at %d ms (%d so far): %s",
                                self._codec, packet.pts, self.errors, exc)
                return
            for frame in frames:
                self._encode(frame)

    def flush(self) -> None:
        """Drain the decoder and encoder (end of stream, or before the audio changes)."""
        if self._mode == "encode":
            try:
                for frame in self._decoder.decode(None):
                    self._encode(frame)
                self._encode(None)
            except av.error.FFmpegError as exc:
                log.warning("audio %s: flush failed: %s", self._codec, exc)
            self._decoder = self._encoder = self._resampler = None
        self._mode = None

    def _out(self, packet: EncodedPacket) -> None:
        self.packets += 1
        self._emit(_AUDIO, packet)

    def _set_info(self, info: AudioTrackInfo | None) -> None:
        if info != self.info:
            self.info = info
            self._emit(_AINFO, info)

    def _setup(self, codec: str, config: CodecConfig | None) -> None:
        self._codec = codec
        self._next = None
        self._shift = None
        if codec == "mp4a" and config is not None and config.data and config.sample_rate > 0:
            self._mode = "copy"
            self._rate = config.sample_rate
            self._set_info(AudioTrackInfo(config.data, config.sample_rate,
                                          max(1, config.channels)))
            return
        name = AUDIO_DECODERS.get(codec)
        if name is None or (codec == "mp4a" and config is None):
            if codec not in self._warned:
                self._warned.add(codec)
                log.warning("audio codec %s cannot be transcoded: the renditions have no audio",
                            codec)
            self._mode = "none"
            self._set_info(None)
            return
        decoder = av.CodecContext.create(name, "r")
        if config is not None and config.data:
            decoder.extradata = config.data
        if config is not None and config.sample_rate > 0:
            decoder.sample_rate = config.sample_rate
        self._decoder = decoder
        self._mode = "encode"  # the AAC encoder opens at the first decoded frame

    def _open_encoder(self, frame: av.AudioFrame) -> None:
        """AAC at the source's rate (when AAC has it) and mono or stereo like the source."""
        rate = frame.sample_rate if frame.sample_rate in AAC_RATES else 48000
        channels = 1 if frame.layout.nb_channels == 1 else 2
        layout = "mono" if channels == 1 else "stereo"
        encoder = av.CodecContext.create("aac", "w")
        encoder.sample_rate, encoder.layout, encoder.format = rate, layout, "fltp"
        encoder.bit_rate = self.kbps * 1000
        encoder.time_base = Fraction(1, rate)
        encoder.open()
        self._encoder = encoder
        self._resampler = AudioResampler(format="fltp", layout=layout, rate=rate,
                                         frame_size=AAC_FRAME)
        self._rate = rate
        self._set_info(AudioTrackInfo(bytes(encoder.extradata), rate, channels))

    def _encode(self, frame: av.AudioFrame | None) -> None:
        if self._encoder is None:
            if frame is None:
                return
            self._open_encoder(frame)
        assert self._resampler is not None
        for resampled in self._resampler.resample(frame):
            for packet in self._encoder.encode(resampled):
                self._aac_packet(packet)
        if frame is None:
            for packet in self._encoder.encode(None):
                self._aac_packet(packet)

    def _aac_packet(self, packet: av.Packet) -> None:
        raw = packet.pts
        if self._shift is None:
            self._shift = max(0, -raw)  # the encoder's priming frame may start before zero
        pts = self._smooth(raw + self._shift)
        self._out(EncodedPacket(Track.AUDIO, pts, pts, AAC_FRAME, True, bytes(packet)))

    def _smooth(self, pts: int) -> int:
        """Contiguous AAC timestamps: millisecond rounding jitter is absorbed, gaps are kept."""
        expected = self._next
        if expected is not None and abs(pts - expected) <= AAC_FRAME // 2:
            pts = expected
        self._next = pts + AAC_FRAME
        return pts


class LiveTranscoder:
    """Transcodes one live stream into its ladder; see the module docstring for the threads.

    ``ladder`` is either the configured rungs (planned against the source once its size and
    frame rate are known, with ``passthrough``) or ready-made :class:`RenditionPlan`\\ s.
    """

    def __init__(self, subscription: PacketSource,
                 ladder: Sequence[Rung] | Sequence[RenditionPlan],
                 sink: TranscodeSink, *,
                 passthrough: PassthroughMode = "auto",
                 segment_duration: float = 2.0,
                 preset: str = "veryfast",
                 tune: str | None = None,
                 bframes: int | None = 0,
                 x264_threads: int = 0,
                 x264_params: str = "",
                 audio_kbps: int = 128,
                 thumbnail_interval: float = 10.0,
                 thumbnail_width: int = 320,
                 queue_size: int = 24,
                 decoder_threads: int = 0,
                 scale_threads: int = 1,
                 interpolation: str = "BICUBIC",
                 cascade_scaling: bool = True,
                 lossless: bool = False,
                 name: str = "stream") -> None:
        if not ladder:
            raise ValueError("the ladder needs at least one rung")
        if passthrough not in PASSTHROUGH_MODES:
            raise ValueError(f"passthrough: expected one of {', '.join(PASSTHROUGH_MODES)}, "
                             f"got {passthrough!r}")
        if queue_size < 1 or audio_kbps < 8 or thumbnail_interval <= 0:
            raise ValueError("queue_size must be >= 1, audio_kbps >= 8 and thumbnail_interval "
                             "positive")
        if segment_duration <= 0:
            raise ValueError(f"segment_duration must be positive, got {segment_duration!r}")
        if thumbnail_width < 16 or thumbnail_width % 2:
            raise ValueError(f"thumbnail_width must be an even number >= 16, got "
                             f"{thumbnail_width!r}")
        self.subscription = subscription
        self.sink = sink
        self.name = name
        self.passthrough = passthrough
        self.segment_ms = segment_duration * 1000.0
        self.encoder_options = EncoderOptions(preset, tune, bframes, x264_threads, x264_params)
        self.audio_kbps = audio_kbps
        self.thumbnail_interval_ms = thumbnail_interval * 1000.0
        self.thumbnail_width = thumbnail_width
        self.queue_size = queue_size
        # Live: a slow rung drops to the next boundary. Lossless (VOD files, benchmarks): the
        # reader waits for the slowest rung instead, so every frame is encoded.
        self.lossless = lossless
        self.decoder_threads = decoder_threads
        self.scale_threads = scale_threads
        self.interpolation = Interpolation[interpolation.upper()]
        # Scale each rung from the next larger rung's picture (1080p -> 720p -> 480p): 40 %
        # less scaling CPU than scaling every rung from the source, same look at these ratios.
        self.cascade_scaling = cascade_scaling
        first = ladder[0]
        self._fixed_plans = list(ladder) if isinstance(first, RenditionPlan) else None
        self._rungs = None if self._fixed_plans is not None else list(ladder)
        self.plans: list[RenditionPlan] | None = None
        self.renditions: list[_Rendition] = []
        self.error: BaseException | None = None

        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"transcode-{name}-reader",
                                        daemon=True)
        # reader state
        self._video_config: CodecConfig | None = None
        self._decoder: Any = None
        self._audio = _AudioPath(audio_kbps, self._emit_audio)
        self._pending_packets: list[MediaPacket] = []  # startup: video packets before the plan
        self._pending_frames: list[av.VideoFrame] = []
        self._pending_audio: list[tuple[int, Any]] = []
        self._video_packets_seen = 0
        self._first_video_dts: int | None = None
        self._last_video_dts: int | None = None
        self._need_keyframe = True
        self._copy_active = False
        self._copy_held: list[tuple[MediaPacket, bool]] | None = None  # after a config change
        self._anchor_ms: float | None = None
        self._next_boundary_ms = 0.0
        self._force_boundary = False
        self._boundary_ms: set[int] = set()
        self._thumb_ref = VideoReformatter()
        self._next_thumb_ms: float | None = None
        self._frames_decoded = 0
        self._decode_errors = 0
        self._thumbnails = 0
        self._source_size: tuple[int, int] | None = None
        self._source_fps = 0.0
        self._media_rate = _Rate()
        self._copy_rendition: _Rendition | None = None
        self._replaying = False
        self._transcoded: list[_Rendition] = []

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
        renditions = {r.name: r.stats(now) for r in list(self.renditions)}
        speeds = [self._media_rate.rate(now)] + [
            s["speed"] for s in renditions.values() if s["frames"] and not s["passthrough"]]
        return {
            "running": self.running,
            "speed": round(min(speeds), 3) if self.running else 0.0,
            "frames_decoded": self._frames_decoded,
            "decode_errors": self._decode_errors,
            "dropped_frames": sum(s["dropped_frames"] for s in renditions.values()),
            "audio_packets": self._audio.packets,
            "thumbnails": self._thumbnails,
            "source": {"width": self._source_size[0] if self._source_size else None,
                       "height": self._source_size[1] if self._source_size else None,
                       "fps": round(self._source_fps, 3),
                       "codec": self._video_config.codec if self._video_config else None},
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
                        self._on_video_config(item)
                    else:
                        self._audio.on_config(item)
                elif item.kind is MediaKind.VIDEO:
                    self._on_video_packet(item)
                else:
                    self._audio.on_packet(item)
            if clean:
                self._drain_decoder()
                self._audio.flush()
                if self.plans is None and self._pending_frames:
                    self._plan()
        except Exception as exc:  # noqa: BLE001 - logged, ends the pipeline cleanly
            clean = False
            self._fail("reader", exc)
        finally:
            self._finish(clean and not self._stop.is_set())

    def _finish(self, flush: bool) -> None:
        for rendition in self.renditions:
            if flush:
                rendition.queue.put(_END, True)
            else:
                rendition.queue.abort()
        for rendition in self.renditions:
            while rendition.thread.is_alive():
                rendition.thread.join(0.5)
                if self._stop.is_set() and flush:
                    flush = False
                    for r in self.renditions:
                        r.queue.abort()
        self._decoder = None
        try:
            self.sink.on_end()
        except Exception:
            log.exception("transcoder %s: sink.on_end failed", self.name)

    # -- video: decoding ------------------------------------------------------------------
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

    def _on_video_config(self, config: CodecConfig) -> None:
        previous = self._video_config
        if previous is not None and previous == config:
            return  # a repeated sequence header changes nothing
        self._drain_decoder()
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
            self._force_boundary = True
            if self._copy_active:
                self._copy_held = []  # copy or encode? decided at its first decoded frame

    def _drain_decoder(self) -> None:
        if self._decoder is not None:
            try:
                frames = self._decoder.decode(None)
            except av.error.FFmpegError as exc:
                log.warning("transcoder %s: decoder flush failed: %s", self.name, exc)
                frames = []
            self._decoder = None
            for frame in frames:
                self._on_frame(frame)

    def _on_video_packet(self, packet: MediaPacket) -> None:
        if self._video_config is None or packet.codec != self._video_config.codec:
            # Packets without (or unlike) the announced config: a decoder that needs none
            # (VP9) can still start; others fail at the keyframe and are counted as errors.
            self._on_video_config(CodecConfig(MediaKind.VIDEO, packet.codec, b""))
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
            self._decode_errors += 1
            if self._decode_errors <= 5 or self._decode_errors % 100 == 0:
                log.warning("transcoder %s: undecodable video at %d ms (%d so far): %s",
                            self.name, packet.pts, self._decode_errors, exc)
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
        return (self._video_packets_seen >= PLAN_MIN_VIDEO_PACKETS or span >= PLAN_MIN_SPAN_MS
                or len(self._pending_packets) > STARTUP_BUFFER_LIMIT)

    def _estimate_fps(self) -> float:
        """The source frame rate: the SPS timing info when the timestamps agree with it, else
        the timestamps (snapped to a common rate: millisecond timestamps are coarse)."""
        packets = self._pending_packets
        estimate = 0.0
        if len(packets) >= 2:
            dts = sorted(p.dts for p in packets)
            if dts[-1] > dts[0]:
                estimate = (len(dts) - 1) * 1000 / (dts[-1] - dts[0])
        declared = getattr(self._decoder, "framerate", None)
        declared = float(declared) if declared else 0.0
        if declared and (not estimate or abs(declared - estimate) / estimate < 0.02):
            return round(declared, 3)
        if estimate:
            for rate in COMMON_FRAME_RATES:
                if abs(estimate - rate) / rate < 0.004:
                    return rate
        return round(estimate, 3)

    def _plan(self) -> None:
        first = self._pending_frames[0]
        width, height = first.width, first.height
        fps = self._estimate_fps()
        codec = self._video_config.codec if self._video_config else ""
        self._source_size, self._source_fps = (width, height), fps
        if self._fixed_plans is not None:
            # Ready-made plans: a copy rung can only copy H.264, and has the source's size.
            plans = [p if not p.passthrough
                     else replace(p, width=width, height=height, fps=fps or p.fps)
                     if codec in COPYABLE_CODECS else replace(p, passthrough=False)
                     for p in self._fixed_plans]
        else:
            assert self._rungs is not None
            plans = plan_ladder(width, height, fps, codec, self._rungs, self.passthrough)
        self.plans = plans
        log.info("transcoder %s: %dx%d %.2f fps %s -> %s", self.name, width, height, fps, codec,
                 ", ".join(f"{p.name} {p.width}x{p.height}@{p.fps:g}"
                           f"{' copy' if p.passthrough else f' {p.video_kbps}k'}" for p in plans))
        for plan in plans:
            rendition = _Rendition(self, plan, self.queue_size)
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
            copy.queue.put(_VINFO, VideoTrackInfo(self._video_config.data, width, height,
                                                  fps or copy.plan.fps))
        for rendition in self.renditions:
            rendition.thread.start()
        backlog, self._pending_audio = self._pending_audio, []
        for kind, payload in backlog:
            self._emit_audio(kind, payload)
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
    def _time_boundary(self, pts_ms: int) -> bool:
        """First frame, then the first frame at/after each multiple of the segment duration."""
        anchor = self._anchor_ms
        if anchor is None or self._force_boundary or pts_ms < self._next_boundary_ms - (
                2 * self.segment_ms + 10_000):  # a clock that jumped back: start over
            self._anchor_ms = anchor = float(pts_ms)
            self._next_boundary_ms = anchor + self.segment_ms
            self._force_boundary = False
            return True
        if pts_ms >= self._next_boundary_ms:
            k = math.floor((pts_ms - anchor) / self.segment_ms) + 1
            self._next_boundary_ms = anchor + k * self.segment_ms
            return True
        return False

    def _route_packet(self, packet: MediaPacket) -> None:
        """Copy mode: boundaries are source keyframes; hand the packet to the copy rung."""
        if not self._copy_active:
            return
        boundary = packet.keyframe and self._time_boundary(packet.pts)
        if boundary:
            self._boundary_ms.add(packet.pts)
        held = self._copy_held
        if held is not None:
            held.append((packet, boundary))
            if len(held) > STARTUP_BUFFER_LIMIT:
                del held[:]
            return
        assert self._copy_rendition is not None
        self._copy_rendition.queue.put_video(_COPY, packet, boundary, self._replaying)

    def _resolve_copy_after_change(self, frame: av.VideoFrame) -> None:
        """First frame after a config change: keep copying, or encode the copy rung from now."""
        copy, held = self._copy_rendition, self._copy_held
        assert copy is not None and held is not None
        self._copy_held = None
        config = self._video_config
        same = (config is not None and config.codec == "avc1"
                and (frame.width, frame.height) == (copy.plan.width, copy.plan.height))
        if same:
            assert config is not None
            copy.queue.put(_VINFO, VideoTrackInfo(config.data, frame.width, frame.height,
                                                  copy.plan.fps))
            for packet, boundary in held:
                copy.queue.put_video(_COPY, packet, boundary, True)
            return
        log.info("transcoder %s: source changed to %s %dx%d: encoding rendition %s from now",
                 self.name, config.codec if config else "?", frame.width, frame.height,
                 copy.name)
        copy.copying = False
        self._copy_active = False
        self._transcoded.insert(0, copy)
        copy.decimate = False
        # Boundaries are time based from here on; this frame starts a segment everywhere.
        self._force_boundary = True

    def _on_frame(self, frame: av.VideoFrame) -> None:
        if self.plans is None:
            self._pending_frames.append(frame)
            return
        self._frames_decoded += 1
        pts_ms = frame.pts
        if pts_ms is None:
            return
        if self._copy_held is not None:
            self._resolve_copy_after_change(frame)
        if self._copy_active:
            boundary = pts_ms in self._boundary_ms
            if boundary:
                self._boundary_ms.discard(pts_ms)
                if len(self._boundary_ms) > 32:
                    self._boundary_ms = {b for b in self._boundary_ms if b > pts_ms}
        else:
            boundary = self._time_boundary(pts_ms)
        self._media_rate.record(time.monotonic(), pts_ms / 1000)
        if frame.key_frame or boundary:
            self._maybe_thumbnail(frame, pts_ms)
        t = pts_ms * 90
        # Scale everything first, then hand out: no frame is read by an encoder thread while
        # it is still being scaled from here. Rungs go largest first so that, with cascading,
        # each scales from the previous rung's (smaller) picture instead of the full source.
        ready: list[tuple[_Rendition, av.VideoFrame]] = []
        base = frame
        for rendition in self._transcoded:
            if not rendition.accepts(t, boundary):
                continue
            if rendition.would_drop(boundary):
                rendition.queue.dropped += 1  # only the reader thread counts drops
                continue
            plan = rendition.plan
            if (frame.width, frame.height) == (plan.width, plan.height) and \
                    frame.format.name == "yuv420p":
                scaled = frame  # the decoded picture itself, already the right size
            else:
                source = base if base.width >= plan.width and base.height >= plan.height \
                    else frame
                scaled = rendition.reformatter.reformat(
                    source, plan.width, plan.height, "yuv420p",
                    interpolation=self.interpolation, threads=self.scale_threads)
            if self.cascade_scaling:
                base = scaled
            ready.append((rendition, scaled))
        picture_type = PictureType.I if boundary else PictureType.NONE
        for rendition, scaled in ready:
            scaled.pts, scaled.time_base, scaled.pict_type = t, TB90K, picture_type
            rendition.queue.put_video(_FRAME, scaled, boundary, self._replaying)

    # -- audio ----------------------------------------------------------------------------
    def _emit_audio(self, kind: int, payload: Any) -> None:
        """Audio goes to every rendition through its own queue (before the plan: held)."""
        if self.plans is None:
            self._pending_audio.append((kind, payload))
            if len(self._pending_audio) > STARTUP_BUFFER_LIMIT:
                keep = [i for i in self._pending_audio if i[0] == _AINFO][-1:]
                self._pending_audio = keep + self._pending_audio[-STARTUP_BUFFER_LIMIT // 2:]
            return
        for rendition in self.renditions:
            rendition.queue.put(kind, payload)

    # -- thumbnails -----------------------------------------------------------------------
    def _maybe_thumbnail(self, frame: av.VideoFrame, pts_ms: int) -> None:
        due = self._next_thumb_ms
        if due is not None and pts_ms < due and pts_ms >= due - 2 * self.thumbnail_interval_ms:
            return
        self._next_thumb_ms = pts_ms + self.thumbnail_interval_ms
        try:
            jpeg = self._jpeg(frame)
        except av.error.FFmpegError as exc:
            log.warning("transcoder %s: thumbnail failed: %s", self.name, exc)
            return
        self._thumbnails += 1
        try:
            self.sink.on_thumbnail(jpeg)
        except Exception:
            log.exception("transcoder %s: sink.on_thumbnail failed", self.name)

    def _jpeg(self, frame: av.VideoFrame) -> bytes:
        width = self.thumbnail_width
        height = max(2, round(frame.height * width / frame.width / 2) * 2)
        small = self._thumb_ref.reformat(frame, width, height, "yuvj420p",
                                         dst_color_range=ColorRange.JPEG,
                                         interpolation=Interpolation.BICUBIC, threads=1)
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
