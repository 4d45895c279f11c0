"""Stream health for the creator's dashboard: what the encoder sends, whether the ladder keeps up.

Everything here is computed on read from counters that ingest and the transcoder already keep
as packets flow (``IngestStats``, ``LiveTranscoder.stats()``), so a dashboard polling every
second costs a few additions, never a pass over the media.

Warnings are advice an OBS user can act on: a keyframe interval that does not fit the HLS
segment duration (segments come out uneven or long, and the copied top rung can only cut at
source keyframes), a bitrate far below what the top rung encodes (the ladder re-encodes a
starved picture) or far above it (upload wasted, or a copied rung heavier than announced), and
a transcoder slower than real time or dropping frames.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .stats import IngestStats

# Seconds of media before bitrate and keyframe figures are trusted enough to warn about.
WARMUP_SECONDS = 4.0
# A keyframe interval this close (relative) to fitting the segment duration counts as fitting.
FIT_TOLERANCE = 0.05
# No packet for this long and the publisher counts as stalled.
STALL_SECONDS = 3.0


class RungPlan(Protocol):
    """What health needs of one planned rendition (``transcode.ladder.RenditionPlan``).

    Read-only members: health only reads them, and a frozen plan cannot offer settable ones.
    """

    @property
    def name(self) -> str: ...

    @property
    def video_kbps(self) -> int: ...

    @property
    def maxrate_kbps(self) -> int: ...

    @property
    def passthrough(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """The targets a stream is judged against (from settings, fixed per stream)."""

    segment_duration: float = 2.0
    bitrate_low: float = 0.5  # warn below this fraction of the top rung's video bitrate
    bitrate_high: float = 2.0  # warn above this multiple of it
    speed_low: float = 0.95  # transcode speed (x real time) below this: falling behind


@dataclass(slots=True)
class TranscodeProbe:
    """How the broadcast lets health read its transcoder without health importing it."""

    stats: Callable[[], dict[str, Any]]
    plans: Callable[[], Sequence[RungPlan] | None]


def _warning(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g} s"


def keyframe_warning(
    interval_s: float | None, segment_s: float, elapsed_s: float
) -> dict[str, str] | None:
    """A keyframe interval fits when it divides the segment duration (within tolerance)."""
    if interval_s is None:
        if elapsed_s >= max(WARMUP_SECONDS, 2 * segment_s):
            return _warning(
                "no_keyframes",
                f"no keyframe interval measured after {_fmt_s(elapsed_s)}: set the "
                f"encoder's keyframe interval to {_fmt_s(segment_s)}",
            )
        return None
    if interval_s <= 0:
        return None
    if interval_s > segment_s * (1 + FIT_TOLERANCE):
        return _warning(
            "keyframe_interval_long",
            f"keyframe interval {_fmt_s(interval_s)} is longer than the "
            f"{_fmt_s(segment_s)} segments: set the encoder's keyframe interval to "
            f"{_fmt_s(segment_s)} (OBS: Keyframe Interval {segment_s:g})",
        )
    ratio = segment_s / interval_s
    if abs(ratio - round(ratio)) > FIT_TOLERANCE * ratio:
        return _warning(
            "keyframe_interval_uneven",
            f"keyframe interval {_fmt_s(interval_s)} does not divide the "
            f"{_fmt_s(segment_s)} segment duration: segments come out uneven; use "
            f"{_fmt_s(segment_s)} or an even fraction of it",
        )
    return None


def bitrate_warning(
    video_kbps: float, top: RungPlan | None, policy: HealthPolicy, elapsed_s: float
) -> dict[str, str] | None:
    """Compare what the encoder sends with what the top rendition is meant to carry."""
    if top is None or elapsed_s < WARMUP_SECONDS or video_kbps <= 0:
        return None
    target = top.maxrate_kbps if top.passthrough else top.video_kbps
    if video_kbps < target * policy.bitrate_low:
        return _warning(
            "bitrate_low",
            f"the encoder sends {video_kbps:.0f} kbit/s of video; the top rendition "
            f"{top.name} needs about {top.video_kbps} kbit/s: raise the encoder "
            f"bitrate or expect a soft picture",
        )
    if video_kbps > target * policy.bitrate_high:
        what = (
            "viewers of the copied top rendition need more bandwidth than announced"
            if top.passthrough
            else "the extra upload is thrown away by the transcoder"
        )
        return _warning(
            "bitrate_high",
            f"the encoder sends {video_kbps:.0f} kbit/s of video, far above the "
            f"{top.video_kbps} kbit/s of {top.name}: {what}",
        )
    return None


def _renditions(stats: dict[str, Any], plans: Sequence[RungPlan] | None) -> list[dict[str, Any]]:
    by_name = {p.name: p for p in plans or []}
    out = []
    for name, r in stats.get("renditions", {}).items():
        plan = by_name.get(name)
        out.append(
            {
                "name": name,
                "width": r.get("width"),
                "height": r.get("height"),
                "passthrough": bool(r.get("passthrough")),
                "fps": r.get("fps", 0.0),
                "speed": r.get("speed", 0.0),
                "frames": r.get("frames", 0),
                "dropped_frames": r.get("dropped_frames", 0),
                "video_kbps": plan.video_kbps if plan is not None else None,
            }
        )
    return out


def _ingest(stats: IngestStats, source: Mapping[str, Any], now: float) -> dict[str, Any]:
    interval_ms = stats.keyframe_interval_ms
    return {
        "bitrate_kbps": round(stats.bitrate_kbps_at(now), 1),
        "video_kbps": round(stats.video_kbps(now), 1),
        "frame_rate": round(stats.frame_rate, 2),
        "keyframe_interval_s": round(interval_ms / 1000, 3) if interval_ms else None,
        **source,
        "bytes_total": stats.bytes_total,
        "media_seconds": round(stats.media_seconds, 3),
        "last_packet_age_s": round(max(0.0, now - stats.last_packet_at), 3)
        if stats.last_packet_at
        else None,
    }


def _transcode(
    probe: TranscodeProbe,
    video_kbps: float,
    policy: HealthPolicy,
    elapsed: float,
    warnings: list[dict[str, str]],
) -> dict[str, Any]:
    """The transcoder's figures; its warnings are appended to ``warnings``."""
    tstats = probe.stats()
    plans = probe.plans()
    renditions = _renditions(tstats, plans)
    top = max(plans, key=lambda p: p.video_kbps) if plans else None
    bw = bitrate_warning(video_kbps, top, policy, elapsed)
    if bw is not None:
        warnings.append(bw)
    slow = [
        r["name"]
        for r in renditions
        if not r["passthrough"] and r["frames"] and 0 < r["speed"] < policy.speed_low
    ]
    if slow and elapsed >= WARMUP_SECONDS:
        warnings.append(
            _warning(
                "transcode_slow",
                f"transcoding of {', '.join(slow)} runs slower than real "
                f"time: use a faster transcode.preset or fewer rungs",
            )
        )
    dropping = [r["name"] for r in renditions if r["dropped_frames"]]
    if dropping:
        warnings.append(
            _warning(
                "frames_dropped",
                f"frames dropped in {', '.join(dropping)}: the server "
                f"cannot keep up with the ladder",
            )
        )
    return {
        "running": bool(tstats.get("running")),
        "speed": tstats.get("speed", 0.0),
        "dropped_frames": tstats.get("dropped_frames", 0),
        "decode_errors": tstats.get("decode_errors", 0),
        "renditions": renditions,
    }


def stream_health(
    stats: IngestStats,
    source: Mapping[str, Any],
    policy: HealthPolicy,
    probe: TranscodeProbe | None,
    now: float,
) -> dict[str, Any]:
    """The dashboard's health document for one live stream (JSON-ready).

    ``source`` is the stream's own description of its source (``LiveStream.source``);
    ``probe`` reads the transcoder, if the stream has one.
    """
    elapsed = stats.media_seconds
    interval_ms = stats.keyframe_interval_ms
    warnings: list[dict[str, str]] = []
    if stats.last_packet_at and now - stats.last_packet_at > STALL_SECONDS:
        warnings.append(
            _warning(
                "stalled",
                f"nothing received from the encoder for {now - stats.last_packet_at:.0f} s",
            )
        )
    kw = (
        keyframe_warning(
            interval_ms / 1000 if interval_ms else None, policy.segment_duration, elapsed
        )
        if stats.video_frames
        else None
    )
    if kw is not None:
        warnings.append(kw)
    transcode = (
        None
        if probe is None
        else _transcode(probe, stats.video_kbps(now), policy, elapsed, warnings)
    )
    return {
        "ingest": _ingest(stats, source, now),
        "transcode": transcode,
        "warnings": warnings,
        "segment_duration": policy.segment_duration,
    }
