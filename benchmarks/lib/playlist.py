"""LL-HLS media and master playlists read the way a player reads them.

Why not the ``m3u8`` package the tests use: the benchmarks parse thousands of blocking
playlist reloads a second in their client processes and need only the parts, the preload
hint and the skip directives, with segment and part numbers counted as a player counts them
(from EXT-X-MEDIA-SEQUENCE and EXT-X-SKIP), never from how our server names its files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ATTR_URI_RE = re.compile(r'URI="([^"]*)"')


@dataclass
class MediaPlaylist:
    """What a player needs from an LL-HLS media playlist (full or delta)."""

    map_uri: str | None = None
    # (msn, part index, uri, independent, duration), in playlist order
    parts: list[tuple[int, int, str, bool, float]] = field(default_factory=list)
    # complete segments: (msn, uri, duration)
    segments: list[tuple[int, str, float]] = field(default_factory=list)
    hint: tuple[int, int, str] | None = None  # preload hint (msn, part index, uri)
    ended: bool = False
    part_target: float = 0.0
    target_duration: float = 0.0
    can_skip: bool = False


def parse_media_playlist(text: str) -> MediaPlaylist:
    """Segment and part numbers counted from EXT-X-MEDIA-SEQUENCE (and EXT-X-SKIP), as a
    player does; nothing here depends on how our server names its files."""
    pl = MediaPlaylist()
    msn = 0
    part = 0
    duration = 0.0
    expect_uri = False
    for line in text.splitlines():
        if not line:
            continue
        if expect_uri and not line.startswith("#"):
            pl.segments.append((msn, line.strip(), duration))
            msn += 1
            part = 0
            expect_uri = False
            continue
        if line.startswith("#EXT-X-PART:"):
            m = _ATTR_URI_RE.search(line)
            d = float(line.split("DURATION=", 1)[1].split(",", 1)[0])
            pl.parts.append((msn, part, m.group(1) if m else "", "INDEPENDENT=YES" in line, d))
            part += 1
        elif line.startswith("#EXTINF:"):
            duration = float(line[8:].split(",", 1)[0])
            expect_uri = True
        elif line.startswith("#EXT-X-PRELOAD-HINT:") and "TYPE=PART" in line:
            m = _ATTR_URI_RE.search(line)
            if m:
                pl.hint = (msn, part, m.group(1))
        elif line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            msn = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SKIP:"):
            msn += int(line.split("SKIPPED-SEGMENTS=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-MAP:"):
            m = _ATTR_URI_RE.search(line)
            if m:
                pl.map_uri = m.group(1)
        elif line.startswith("#EXT-X-PART-INF:"):
            pl.part_target = float(line.split("PART-TARGET=", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            pl.target_duration = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            pl.can_skip = "CAN-SKIP-UNTIL=" in line
        elif line.startswith("#EXT-X-ENDLIST"):
            pl.ended = True
    return pl


def master_variants(text: str) -> list[tuple[int, int, str]]:
    """(height, bandwidth, uri) of each variant of a master playlist."""
    out = []
    pending: tuple[int, int] | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-STREAM-INF:"):
            res = re.search(r"RESOLUTION=(\d+)x(\d+)", line)
            bw = re.search(r"BANDWIDTH=(\d+)", line)
            pending = (int(res.group(2)) if res else 0, int(bw.group(1)) if bw else 0)
        elif line and not line.startswith("#") and pending is not None:
            out.append((pending[0], pending[1], line.strip()))
            pending = None
    return out


def with_query(url: str, **params: object) -> str:
    """``url`` with ``params`` added to its query (LL-HLS directives, a viewer session)."""
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    return url + ("&" if "?" in url else "?") + extra
