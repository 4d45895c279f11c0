"""How the live transcoder works, as one value: built from settings by the server, by hand in
tests and benchmarks.

The rules that make a value usable live here, in ``TranscodeOptions.__post_init__``, and only
here: the settings loader builds the server's options while it loads and reports a broken rule
under the setting's own key, so a bad configuration stops the server at start instead of
failing the first stream, and a value given by hand is checked by the same rules.

Pure Python, no PyAV: the settings loader imports it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from .ladder import PASSTHROUGH_MODES, PassthroughMode

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
# x264-params syntax: key=value pairs joined by ':' (nothing that could smuggle other options).
X264_PARAMS = re.compile(r"([a-z0-9-]+=[A-Za-z0-9.,_/-]+)?(:[a-z0-9-]+=[A-Za-z0-9.,_/-]+)*")
# Below this the AAC encoder cannot carry even mono speech.
MIN_AUDIO_KBPS = 8
THUMBNAIL_WIDTHS = (16, 3840)


class OptionError(ValueError):
    """An option breaks a rule; ``option`` is the field's name, ``reason`` says why."""

    def __init__(self, option: str, reason: str) -> None:
        super().__init__(f"transcode option {option!r}: {reason}")
        self.option = option
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TranscodeOptions:
    """Everything about how a stream is transcoded except its ladder, its source and its sink."""

    # auto / always / never: when the top rendition copies an H.264 source (``plan_ladder``).
    passthrough: PassthroughMode = "auto"
    # Seconds between segment boundaries, which every rung cuts at the same frames.
    segment_duration: float = 2.0
    # libx264, the same for every transcoded rung.
    preset: str = "veryfast"
    tune: str | None = None
    bframes: int | None = 0
    x264_threads: int = 0  # 0: libx264 picks (1.5 x cores)
    x264_params: str = ""
    # AAC bitrate when the source audio has to be re-encoded.
    audio_kbps: int = 128
    # Seconds of media between thumbnails, and their width in pixels.
    thumbnail_interval: float = 10.0
    thumbnail_width: int = 320
    # Decoded frames each rung may have queued before it drops to the next boundary.
    queue_size: int = 24
    decoder_threads: int = 0  # 0: FFmpeg picks
    scale_threads: int = 1
    # swscale interpolation by PyAV's name (BICUBIC, BILINEAR, AREA, LANCZOS...).
    interpolation: str = "BICUBIC"
    # Scale each rung from the next larger rung's picture (1080p -> 720p -> 480p): 40 % less
    # scaling CPU than scaling every rung from the source, same look at these ratios.
    cascade_scaling: bool = True
    # Live: a slow rung drops to the next boundary. Lossless (VOD files, benchmarks): the
    # reader waits for the slowest rung instead, so every frame is encoded.
    lossless: bool = False

    def __post_init__(self) -> None:
        problem = next(self._problems(), None)
        if problem is not None:
            raise OptionError(*problem)

    def _problems(self) -> Iterator[tuple[str, str]]:
        if self.passthrough not in PASSTHROUGH_MODES:
            yield "passthrough", f"must be one of {', '.join(PASSTHROUGH_MODES)}"
        if self.segment_duration <= 0:
            yield "segment_duration", f"must be greater than 0, got {self.segment_duration}"
        if self.preset not in X264_PRESETS:
            yield "preset", f"must be one of {', '.join(X264_PRESETS)}"
        if not X264_PARAMS.fullmatch(self.x264_params):
            yield "x264_params", "must be key=value pairs joined by ':'"
        if self.audio_kbps < MIN_AUDIO_KBPS:
            yield "audio_kbps", f"must be at least {MIN_AUDIO_KBPS}, got {self.audio_kbps}"
        if self.thumbnail_interval <= 0:
            yield "thumbnail_interval", f"must be greater than 0, got {self.thumbnail_interval}"
        low, high = THUMBNAIL_WIDTHS
        if not low <= self.thumbnail_width <= high or self.thumbnail_width % 2:
            yield "thumbnail_width", f"must be an even number of pixels, {low}-{high}"
        if self.queue_size < 1:
            yield "queue_size", f"must be greater than 0, got {self.queue_size}"
