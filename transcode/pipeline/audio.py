"""The audio of every rendition: AAC is copied, any other codec is decoded and re-encoded.

Runs in the reader thread; the encoded packets go to every rendition's queue, so each
rendition's worker delivers them in order with its own video.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from fractions import Fraction
from typing import Any, Literal

import av
from av.audio.resampler import AudioResampler

from ..media import CodecConfig, MediaPacket
from ..types import AudioTrackInfo, EncodedPacket, Track
from .queues import AINFO, AUDIO
from .timebase import MS

log = logging.getLogger(__name__)

# Decoders by the codec names the live registry uses.
AUDIO_DECODERS = {
    "mp3": "mp3",
    "opus": "opus",
    "flac": "flac",
    "ac-3": "ac3",
    "ec-3": "eac3",
    "mp4a": "aac",
    "alaw": "pcm_alaw",
    "ulaw": "pcm_mulaw",
}
AAC_FRAME = 1024
AAC_RATES = frozenset(
    (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
)


class AudioPath:
    """AAC is copied; any other audio is decoded and re-encoded to AAC. Reader thread only.

    Results go to ``emit``: ``(AUDIO, EncodedPacket)``, and ``(AINFO, AudioTrackInfo | None)``
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
                    log.warning(
                        "audio %s: undecodable packet at %d ms (%d so far): %s",
                        self._codec,
                        packet.pts,
                        self.errors,
                        exc,
                    )
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
        self._emit(AUDIO, packet)

    def _set_info(self, info: AudioTrackInfo | None) -> None:
        if info != self.info:
            self.info = info
            self._emit(AINFO, info)

    def _setup(self, codec: str, config: CodecConfig | None) -> None:
        self._codec = codec
        self._next = None
        self._shift = None
        if codec == "mp4a" and config is not None and config.data and config.sample_rate > 0:
            self._mode = "copy"
            self._rate = config.sample_rate
            self._set_info(AudioTrackInfo(config.data, config.sample_rate, max(1, config.channels)))
            return
        name = AUDIO_DECODERS.get(codec)
        if name is None or (codec == "mp4a" and config is None):
            if codec not in self._warned:
                self._warned.add(codec)
                log.warning(
                    "audio codec %s cannot be transcoded: the renditions have no audio", codec
                )
            self._mode = "none"
            self._set_info(None)
            return
        decoder: Any = av.CodecContext.create(name, "r")  # an audio decoder, typed as any
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
        self._resampler = AudioResampler(
            format="fltp", layout=layout, rate=rate, frame_size=AAC_FRAME
        )
        self._rate = rate
        self._set_info(AudioTrackInfo(bytes(encoder.extradata or b""), rate, channels))

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
        assert raw is not None  # the AAC encoder's output is always timed
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
