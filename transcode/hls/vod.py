"""Playlists of finished things: a recording's VOD media playlist and the master playlist.

Unlike the live playlist these are rendered once from a complete list, so they are plain
functions; the names and number formats come from ``syntax`` like the live playlist's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transcode.hls.syntax import INIT_URI, VOD_VERSION, check_uri, format_seconds, round_half_up


def vod_playlist(
    segments: Iterable[tuple[str, float, bool] | tuple[str, float, bool, str]],
    target_duration: float,
    *,
    init_uri: str = INIT_URI,
) -> str:
    """A finished recording: EXT-X-PLAYLIST-TYPE:VOD, EXTINF per (uri, duration,
    discontinuity[, init uri]) segment, EXT-X-ENDLIST. The Target Duration is raised if a segment
    needs it; a segment naming another init than the one before gets its own EXT-X-MAP."""
    items = [(it[0], it[1], it[2], it[3] if len(it) > 3 else init_uri) for it in segments]
    td = max(1, math.ceil(target_duration - 1e-6), *(round_half_up(d) for _, d, _, _ in items))
    current_map = items[0][3] if items else init_uri
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{VOD_VERSION}",
        f"#EXT-X-TARGETDURATION:{td}",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        f'#EXT-X-MAP:URI="{check_uri(current_map)}"',
    ]
    for uri, duration, discontinuity, map_uri in items:
        if not duration >= 0:
            raise ValueError(f"bad segment duration {duration!r}")
        if discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if map_uri != current_map:
            current_map = map_uri
            lines.append(f'#EXT-X-MAP:URI="{check_uri(current_map)}"')
        lines.append(f"#EXTINF:{format_seconds(duration)},")
        lines.append(check_uri(uri))
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class RenditionInfo:
    """One variant for the master playlist (bandwidths in bits/s)."""

    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    frame_rate: float
    codecs: str


def master_playlist(renditions: Sequence[RenditionInfo]) -> str:
    """The multivariant playlist, highest BANDWIDTH first (the order players try first)."""
    if not renditions:
        raise ValueError("a master playlist needs at least one rendition")
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{VOD_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in sorted(renditions, key=lambda r: r.bandwidth, reverse=True):
        if r.bandwidth <= 0:
            raise ValueError(f"rendition {r.uri!r} needs a positive BANDWIDTH")
        attrs = [f"BANDWIDTH={int(r.bandwidth)}"]
        if r.average_bandwidth > 0:
            attrs.append(f"AVERAGE-BANDWIDTH={int(r.average_bandwidth)}")
        if r.width > 0 and r.height > 0:
            attrs.append(f"RESOLUTION={int(r.width)}x{int(r.height)}")
        if r.frame_rate > 0:
            attrs.append(f"FRAME-RATE={r.frame_rate:.3f}")
        attrs.append(f'CODECS="{check_uri(r.codecs)}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(check_uri(r.uri))
    return "\n".join(lines) + "\n"
