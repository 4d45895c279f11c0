"""Which renditions a live source gets: the adaptive ladder, planned once per stream.

Pure functions only, so the rules (never upscale, even sizes, fps never above the source, when
the source may be copied instead of re-encoded) are unit-tested without any media. The rungs
come from settings (the settings loader validates them and names the bad key).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

PassthroughMode = Literal["auto", "always", "never"]
PASSTHROUGH_MODES: tuple[str, ...] = get_args(PassthroughMode)

# Only H.264 can be copied: the packager writes avc1 tracks and every player plays them.
COPYABLE_CODECS = frozenset({"avc1"})

# A source at 30.3 fps (timestamp rounding) still "fits" a 30 fps rung.
FPS_TOLERANCE = 0.5

# VBV: peak at 110 % of the average (Apple's HLS authoring limit), a two-second buffer.
MAXRATE_FACTOR = 1.1
BUFSIZE_FACTOR = 2.0


@dataclass(frozen=True, slots=True)
class Rung:
    """One step of the configured ladder: a target height, frame rate and video bitrate."""

    name: str
    height: int
    fps: float
    video_kbps: int


DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("1080p", 1080, 30.0, 6000),
    Rung("720p", 720, 30.0, 3000),
    Rung("480p", 480, 30.0, 1200),
)
DEFAULT_AUDIO_KBPS = 128


@dataclass(frozen=True, slots=True)
class RenditionPlan:
    """One output rendition for one source: real size, fps, rate control, copy or encode."""

    name: str
    width: int
    height: int
    fps: float
    video_kbps: int
    maxrate_kbps: int
    bufsize_kbits: int
    passthrough: bool = False


def _even(value: float) -> int:
    """Nearest even integer, at least 2 (x264 and yuv420p need even sizes)."""
    return max(2, math.floor(value / 2 + 0.5) * 2)


def _width_for(source_width: int, source_height: int, height: int) -> int:
    return _even(source_width * height / source_height)


def _rate_control(kbps: int) -> tuple[int, int]:
    return max(1, round(kbps * MAXRATE_FACTOR)), max(1, round(kbps * BUFSIZE_FACTOR))


def plan_ladder(
    source_width: int,
    source_height: int,
    source_fps: float,
    source_codec: str,
    rungs: Sequence[Rung] = DEFAULT_LADDER,
    passthrough: PassthroughMode = "auto",
) -> list[RenditionPlan]:
    """Renditions for a source, highest first.

    Rungs taller than the source are left out (never upscale); a source smaller than every
    rung gets one rendition at its own size, with the smallest rung's bitrate scaled by area.
    Widths keep the source's aspect ratio, rounded to even. A rung's fps is capped at the
    source's (``source_fps <= 0`` means unknown: the rung's fps is kept).

    ``passthrough``: ``auto`` copies the source for the top rendition when it is H.264 and fits
    that rung (height and fps); ``always`` copies the top rendition whenever the source is
    H.264; ``never`` always encodes. Other codecs are always transcoded.
    """
    if passthrough not in PASSTHROUGH_MODES:
        raise ValueError(
            f"passthrough: expected one of {', '.join(PASSTHROUGH_MODES)}, got {passthrough!r}"
        )
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"source size must be positive, got {source_width}x{source_height}")
    if not rungs:
        raise ValueError("the ladder needs at least one rung")
    ordered = sorted(rungs, key=lambda r: (r.height, r.video_kbps), reverse=True)
    known_fps = source_fps if source_fps > 0 else 0.0

    def fps_for(rung_fps: float) -> float:
        return float(round(min(rung_fps, known_fps) if known_fps else rung_fps, 3))

    plans: list[RenditionPlan] = []
    top_rung: Rung | None = None  # the configured rung the top rendition stands for
    for rung in ordered:
        if rung.height > source_height:
            continue
        if any(p.height == rung.height for p in plans):
            continue  # two rungs of one height: keep the higher bitrate only
        top_rung = top_rung or rung
        maxrate, bufsize = _rate_control(rung.video_kbps)
        plans.append(
            RenditionPlan(
                rung.name,
                _width_for(source_width, source_height, rung.height),
                rung.height,
                fps_for(rung.fps),
                rung.video_kbps,
                maxrate,
                bufsize,
            )
        )
    if not plans:
        top_rung = smallest = ordered[-1]
        height = max(2, source_height - source_height % 2)
        width = _width_for(source_width, source_height, height)
        area = (width * height) / (
            _width_for(source_width, source_height, smallest.height) * smallest.height
        )
        kbps = max(100, round(smallest.video_kbps * area))
        maxrate, bufsize = _rate_control(kbps)
        plans.append(
            RenditionPlan(
                f"{height}p", width, height, fps_for(smallest.fps), kbps, maxrate, bufsize
            )
        )
    assert top_rung is not None

    top = plans[0]
    copyable = source_codec in COPYABLE_CODECS
    copy = False
    if passthrough == "always":
        copy = copyable
    elif passthrough == "auto":
        copy = (
            copyable
            and source_height <= top_rung.height
            and (not known_fps or known_fps <= top_rung.fps + FPS_TOLERANCE)
        )
    if copy:
        fps = float(round(known_fps, 3)) if known_fps else top.fps
        plans[0] = RenditionPlan(
            top.name,
            source_width,
            source_height,
            fps,
            top.video_kbps,
            top.maxrate_kbps,
            top.bufsize_kbits,
            passthrough=True,
        )
    return plans
