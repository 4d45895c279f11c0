"""The live edge: what the HTTP layer serves for a stream that is on air right now.

Per channel slug, the init segment, the parts and segments still in the playlist window and
the rendered playlists, all in memory, updated on the event loop as the packagers finish
parts. Names from URLs are looked up in these maps (never joined onto a filesystem path).
``changed`` is how blocking playlist reloads learn that a new part exists without polling.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from transcode.hls import (
    LivePlaylist,
    PartReady,
    RenditionInfo,
    SegmentReady,
    init_uri,
    master_playlist,
)


@dataclass(frozen=True, slots=True)
class DvrSegment:
    """A recent segment of the live stream that is (or is about to be) on disk, for clips:
    ``start`` is its time on the edge's timeline (seconds of media before it)."""

    msn: int
    start: float
    duration: float
    init: str  # the initialization section it plays after


@dataclass
class RenditionEdge:
    name: str
    init: bytes
    codecs: str
    width: int
    height: int
    frame_rate: float
    playlist: LivePlaylist
    # Initialization sections by name (init.mp4, init1.mp4, …): a restarted or changed source
    # brings a new one, and segments still in the window keep referring to theirs.
    inits: dict[str, bytes] = field(default_factory=dict)
    epoch: int = 0
    bandwidth: int = 0
    average_bandwidth: int = 0
    parts: dict[tuple[int, int], bytes] = field(default_factory=dict)
    segments: dict[int, bytes] = field(default_factory=dict)
    segment_durations: dict[int, float] = field(default_factory=dict)
    # The DVR buffer: at least ``dvr_seconds`` of the newest segments (and never fewer than
    # the window), oldest first; what leaves it waits in ``dvr_expired`` for the file owner.
    dvr_seconds: float = 0.0
    dvr: deque[DvrSegment] = field(default_factory=deque)
    dvr_expired: list[int] = field(default_factory=list)
    elapsed: float = 0.0

    def __post_init__(self) -> None:
        self.inits.setdefault(init_uri(self.epoch), self.init)

    def new_init(self, data: bytes) -> str:
        """Start the next initialization section; returns its name (already in the playlist)."""
        self.epoch += 1
        name = init_uri(self.epoch)
        self.init = data
        self.inits[name] = data
        self.playlist.set_init_uri(name)
        return name

    def add_part(self, part: PartReady) -> None:
        self.parts[(part.segment, part.index)] = part.data
        self.playlist.add_part(part)

    def add_segment(self, segment: SegmentReady, window: int) -> list[int]:
        """Add a finished segment; return the numbers that slid out of the window."""
        self.segments[segment.segment] = segment.data
        self.segment_durations[segment.segment] = segment.duration
        self.playlist.add_segment(segment)
        self.dvr.append(
            DvrSegment(segment.segment, self.elapsed, segment.duration, self.playlist.init_uri)
        )
        self.elapsed += segment.duration
        while len(self.dvr) > window and self.elapsed - self.dvr[1].start >= self.dvr_seconds:
            self.dvr_expired.append(self.dvr.popleft().msn)
        gone = sorted(self.segments)[:-window] if len(self.segments) > window else []
        for msn in gone:
            del self.segments[msn]
            del self.segment_durations[msn]
        if len(self.inits) > 1:  # drop initialization sections no listed segment uses
            in_use = self.playlist.init_uris_in_use()
            for name in [n for n in self.inits if n not in in_use]:
                del self.inits[name]
        # Parts are only listed for the newest segments; keep a little more than that.
        oldest_part_msn = segment.segment - 3
        for key in [k for k in self.parts if k[0] < oldest_part_msn]:
            del self.parts[key]
        return gone

    def take_expired(self) -> list[int]:
        """Segments that left the DVR buffer since the last call (their files may go)."""
        expired, self.dvr_expired = self.dvr_expired, []
        return expired


class LiveEdge:
    """One channel's live renditions. A new stream of the channel that starts while the edge
    is still up (an encoder reconnecting) continues it after a discontinuity; otherwise the
    next stream gets a new edge."""

    def __init__(self, slug: str, stream_id: int, window: int) -> None:
        self.slug = slug
        self.stream_id = stream_id
        self.window = window
        self.renditions: dict[str, RenditionEdge] = {}
        self.ended = False
        # The publisher left and the edge waits out the reconnect grace (then ``ended``): in a
        # cluster the encoder may be back on another origin meanwhile, whose edge is the live one.
        self.retiring = False
        # Names of the renditions the transcoder plans (None until it has planned): players
        # must not get a master playlist before every one of them is announced, or they stay
        # on a partial ladder for the whole session.
        self.expected: frozenset[str] | None = None
        # What the HTTP layer keeps with this edge (rendered playlists, held requests):
        # an attribute, so it goes with the edge and costs no lookup per request.
        self.delivery: Any = None
        self._changed = asyncio.Event()

    def __iter__(self) -> Iterator[RenditionEdge]:
        return iter(self.renditions.values())

    def announced(self) -> bool:
        """Every planned rendition is on the edge (as far as the plan is known)."""
        expected = self.expected
        return expected is None or expected <= self.renditions.keys()

    def notify(self) -> None:
        """Wake every waiter; they re-check what they wait for."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    def master(self, names: set[str] | None = None) -> str:
        """Master playlist from the real encoded streams, tallest rendition first
        (``names``: only those renditions, e.g. the ones a recording has)."""
        infos = [
            RenditionInfo(
                uri=f"{r.name}/index.m3u8",
                bandwidth=max(r.bandwidth, 1),
                average_bandwidth=max(r.average_bandwidth, 1),
                width=r.width,
                height=r.height,
                frame_rate=r.frame_rate,
                codecs=r.codecs,
            )
            for r in self.renditions.values()
            if names is None or r.name in names
        ]
        return master_playlist(infos)


class EdgeRegistry:
    """Slug -> live edge, for the HTTP layer."""

    def __init__(self) -> None:
        self._edges: dict[str, LiveEdge] = {}

    def get(self, slug: str) -> LiveEdge | None:
        return self._edges.get(slug)

    def put(self, edge: LiveEdge) -> None:
        self._edges[edge.slug] = edge

    def remove(self, edge: LiveEdge) -> None:
        if self._edges.get(edge.slug) is edge:
            del self._edges[edge.slug]
