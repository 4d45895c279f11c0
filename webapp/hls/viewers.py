"""Viewer counting: which playback sessions are watching a channel, under which client
address, and the recount that publishes them.

``session`` (in the media playlist URLs the master hands out) identifies one player: hls.js and
Safari keep a playlist URL's query when they add the ``_HLS_*`` directives, so every reload
says which player it is; cookies are not sent by hls.js by default and (IP, User-Agent) merges
viewers behind one NAT. Players that come without a session are counted by a salted hash of
(IP, User-Agent). Ids are made up by players, so a session counts only while its address
fetches media, and at most ``hls.max_sessions_per_address`` per address.

Channel points (issue 16) need to know which logged-in user really fetched media: HLS requests
are same-origin, so they carry the login cookie. ``fetched_media`` keeps, per channel, when
each login cookie last fetched a part or segment (a dict write, no database lookup on the hot
path); the points heartbeat of that login asks ``login_fetched``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from mediaserver.addresses import address_key
from mediaserver.cluster.counts import ClusterCounts, CountsUnavailable
from mediaserver.live import LiveRegistry
from mediaserver.metrics import Metrics
from storage import Database, queries
from transcode.edge import EdgeRegistry
from webapp.forwarded import client_host
from webapp.identity import SESSION_COOKIE

from .reply import HlsRequest

SESSION_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_LOGIN_RE = re.compile(rf"(?:^|;)\s*{SESSION_COOKIE}=([^;\s]{{16,128}})")
# Client addresses whose counting key (IPv6 /64) is remembered, so a media GET does not
# parse its address each time.
ADDRESS_KEYS = 4096


@dataclass(slots=True)
class _Audience:
    """One channel's recent sessions, how many each address has, and when each address last
    fetched media."""

    # session key -> [last playlist poll, address key, rendition of that playlist]
    sessions: dict[str | bytes, list[Any]] = field(default_factory=dict)
    per_address: dict[str, int] = field(default_factory=dict)
    media: dict[str, float] = field(default_factory=dict)
    # login session cookie -> last media fetch (channel points)
    logins: dict[str, float] = field(default_factory=dict)


class ViewerCounter:
    """Playback sessions seen recently, per channel; counted and expired by ``sweep``.

    A session is one player: its ``session=`` id, or a salted hash of address and User-Agent.
    Players make the ids up, so two rules keep one client from posing as a crowd: at most
    ``per_address`` sessions are tracked per client address, and a session counts only while
    its address fetches media (parts or segments), because polling a playlist costs a faker
    nothing and is not watching. Media URLs carry no session (they are the same cacheable
    bytes for every viewer), hence media is credited to the address.

    ``seen`` is a few dict operations per playlist request, ``fetched_media`` one or two per
    media request; the rest (expiry, gauge, database) happens in ``sweep`` every
    ``hls.viewer_update_interval`` seconds.
    """

    def __init__(self, timeout: float, max_sessions: int, per_address: int) -> None:
        self.timeout = timeout
        self.max_sessions = max_sessions
        self.per_address = per_address
        self._salt = secrets.token_bytes(16)
        self._tables: dict[str, _Audience] = {}
        # What the last sweep counted: per channel, each counted session's rendition (the
        # analytics sample these for the rendition mix and each session's watch time).
        self.audiences: dict[str, dict[str | bytes, str]] = {}

    def session_key(self, request: HlsRequest, address: str) -> str | bytes:
        sids = request.query.get("session")
        if sids and SESSION_RE.fullmatch(sids[0]):
            return sids[0]
        who = f"{address}\0{request.headers.get('user-agent', '')}".encode()
        return hashlib.blake2b(who, key=self._salt, digest_size=12).digest()

    def seen(
        self, slug: str, key: str | bytes, address: str, now: float, rendition: str = ""
    ) -> None:
        table = self._tables.get(slug)
        if table is None:
            table = self._tables[slug] = _Audience()
        entry = table.sessions.get(key)
        per_address = table.per_address
        if entry is not None:
            entry[0] = now
            entry[2] = rendition
            if entry[1] != address and per_address.get(address, 0) < self.per_address:
                self._uncount(table, entry[1])  # the player's address changed (mobile)
                entry[1] = address
                per_address[address] = per_address.get(address, 0) + 1
            return
        if len(table.sessions) >= self.max_sessions:
            return
        n = per_address.get(address, 0)
        if n < self.per_address:
            table.sessions[key] = [now, address, rendition]
            per_address[address] = n + 1

    def fetched_media(self, slug: str, address: str, now: float, cookie: str | None = None) -> None:
        """A part or segment went to ``address``: its sessions are watching. Only addresses
        with a session are kept, so this map is bounded like the sessions. ``cookie``: the
        request's Cookie header, whose login session (if any) is noted for channel points."""
        table = self._tables.get(slug)
        if table is not None and address in table.per_address:
            table.media[address] = now
            if cookie and (m := _LOGIN_RE.search(cookie)):
                logins = table.logins
                if len(logins) < self.max_sessions or m.group(1) in logins:
                    logins[m.group(1)] = now

    def login_fetched(self, slug: str, login: str, since: float) -> bool:
        """Whether the login session ``login`` fetched media of ``slug`` at or after ``since``."""
        table = self._tables.get(slug)
        seen = table.logins.get(login) if table is not None else None
        return seen is not None and seen >= since

    @staticmethod
    def _uncount(table: _Audience, address: str) -> None:
        n = table.per_address[address] - 1
        if n:
            table.per_address[address] = n
        else:
            del table.per_address[address]

    def sweep(self, now: float) -> dict[str, int]:
        """Drop sessions older than the timeout; the count per channel of sessions whose
        address fetched media within the timeout (a channel whose last session left is
        reported once with 0, then forgotten). ``audiences`` keeps who was counted."""
        counts: dict[str, int] = {}
        audiences: dict[str, dict[str | bytes, str]] = {}
        limit = now - self.timeout
        for slug, table in list(self._tables.items()):
            sessions = table.sessions
            for key in [k for k, entry in sessions.items() if entry[0] < limit]:
                self._uncount(table, sessions.pop(key)[1])
            table.media = {
                a: t for a, t in table.media.items() if t >= limit and a in table.per_address
            }
            media = table.media
            table.logins = {k: t for k, t in table.logins.items() if t >= limit}
            audience = {key: entry[2] for key, entry in sessions.items() if entry[1] in media}
            counts[slug] = len(audience)
            if audience:
                audiences[slug] = audience
            if not sessions:
                del self._tables[slug]
        self.audiences = audiences
        return counts


class ClientAddresses:
    """The key viewers are counted under: the client's address (behind a trusted proxy, the
    last X-Forwarded-For entry, which the proxy appended), IPv6 grouped by /64."""

    def __init__(self, trust_forwarded: bool) -> None:
        self._trust_forwarded = trust_forwarded
        self._keys: dict[str, str] = {}

    def key(self, request: HlsRequest) -> str:
        host = client_host(request.remote, request.headers, self._trust_forwarded)
        if not host:
            return "unknown"
        keys = self._keys
        key = keys.get(host)
        if key is None:
            if len(keys) >= ADDRESS_KEYS:
                keys.clear()
            key = keys[host] = address_key(host) or host
        return key


class ViewerPublisher:
    """Where each recount goes: the ``aethex_viewers`` gauge always; the registry's
    ``LiveStream.viewers`` of each stream served here, in memory (this process's chat reads
    it there); a live stream's row when its count changed (the API, the home page and the
    other processes' chat read the row).

    On a cluster node (``counts``: Redis, issue 15) this node's counts are stored in Redis
    first and the registry and the rows get the cluster's totals (the players every node
    counts, see mediaserver/cluster/counts.py); the gauge stays this node's own count, so
    Prometheus sums the nodes. If Redis fails, this node's counts are published as on one
    node until it answers again."""

    def __init__(
        self,
        metrics: Metrics,
        edges: EdgeRegistry,
        registry: LiveRegistry,
        db: Database,
        counts: ClusterCounts | None = None,
    ) -> None:
        self.metrics = metrics
        self.edges = edges
        self.registry = registry
        self.db = db
        self.counts = counts
        self._written: dict[int, int] = {}

    async def publish(
        self, counts: dict[str, int], audiences: dict[str, dict[str | bytes, str]] | None = None
    ) -> None:
        writes: dict[int, int] = {}
        live: set[int] = set()
        if self.counts is not None:
            for slug, count in counts.items():
                self.metrics.viewers.labels(slug).set(count)
            try:
                counts = await self.counts.viewer_totals(counts, [s.slug for s in self.registry])
            except CountsUnavailable:
                pass  # counted and logged there: this node's own counts, as on one node
        for slug, count in counts.items():
            if self.counts is None:
                self.metrics.viewers.labels(slug).set(count)
            edge = self.edges.get(slug)
            if edge is None or edge.ended:
                continue  # ending a stream zeroes its row; a late count must not undo that
            live.add(edge.stream_id)
            if self._written.get(edge.stream_id) != count:
                writes[edge.stream_id] = count
        for stream in self.registry:
            # Every stream whose edge is served here, a stream nobody watches too (its count
            # is 0, not unknown): only streams counted elsewhere need the row.
            edge = self.edges.get(stream.slug)
            if edge is not None and not edge.ended and edge.stream_id == stream.stream_id:
                stream.viewers = counts.get(stream.slug, 0)
                stream.audience = (audiences or {}).get(stream.slug, {})
        self._written = {k: v for k, v in self._written.items() if k in live}
        if not writes:
            return
        async with self.db.session() as session:
            await queries.update_live_viewer_counts(session, writes)
            await session.commit()
        self._written.update(writes)
