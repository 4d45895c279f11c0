"""``/metrics``: who may scrape it, and what it shows of unlisted channels.

Per-channel series carry the channel's slug in their ``channel`` label, and an unlisted
channel's slug is its link: a public scrape would list every unlisted channel that streamed
since the server started. So at each scrape the label values are checked against the database
(one query): listed channels keep their slug, and every other value (unlisted, or deleted) is
folded into one series labelled ``channel="_unlisted"`` (no slug can start with ``_``). Folding
sums the values, except where a sum means nothing: ``_created`` timestamps and the transcode
speed take the minimum (the slowest channel is the one an alert on "below 1" is after). It
happens on the way out, so every channel metric, present or future, follows it, and a channel
made unlisted leaves the next scrape.

Who may scrape: ``metrics.allow`` (networks) and ``metrics.token``/``metrics.token_file``
(``Authorization: Bearer``), each optional; with both, a scrape needs both.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric

from mediaserver.metrics import CONTENT_TYPE_LATEST
from mediaserver.settings import Settings, metrics_token
from storage import channels as channel_queries

from .errors import json_error
from .forwarded import client_host
from .keys import DB_KEY, METRICS_KEY, SCRAPE_KEY

UNLISTED = "_unlisted"
# Families whose folded value is the minimum, not the sum.
MIN_FAMILIES = frozenset({"aethex_transcode_speed"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ScrapeAccess:
    """The scrape rules, read once at start (the token file too)."""

    token: bytes | None
    networks: tuple[Network, ...]
    trust_forwarded: bool

    @classmethod
    def from_settings(cls, settings: Settings) -> ScrapeAccess:
        m = settings.metrics
        token = metrics_token(m)
        networks = tuple(
            ipaddress.ip_network(n.strip(), strict=False) for n in m.allow.split(",") if n.strip()
        )
        return cls(token.encode() if token else None, networks, settings.http.trust_forwarded_for)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The error answer for a scrape these rules refuse, or None."""
        if self.networks and not self._allowed(
            client_host(request.remote, request.headers, self.trust_forwarded)
        ):
            return json_error(403, "forbidden", "this address may not read /metrics")
        if self.token is not None:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode(), self.token
            ):
                return json_error(
                    401,
                    "unauthenticated",
                    "/metrics needs its bearer token",
                    {"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        return None

    def _allowed(self, host: str | None) -> bool:
        try:
            ip = ipaddress.ip_address((host or "").partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)


def channel_values(families: Iterable[Metric]) -> set[str]:
    return {
        sample.labels["channel"]
        for family in families
        for sample in family.samples
        if "channel" in sample.labels
    }


def fold_channels(families: list[Metric], hidden: set[str]) -> list[Metric]:
    """The families with every ``channel`` label in ``hidden`` folded into ``UNLISTED``."""
    out = []
    for family in families:
        if not any(s.labels.get("channel") in hidden for s in family.samples):
            out.append(family)
            continue
        merged: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
        for sample in family.samples:
            labels = sample.labels
            if labels.get("channel") in hidden:
                labels = {**labels, "channel": UNLISTED}
            key = (sample.name, tuple(sorted(labels.items())))
            prev = merged.get(key)
            if prev is None:
                merged[key] = sample._replace(labels=labels, exemplar=None)
            elif family.name in MIN_FAMILIES or sample.name.endswith("_created"):
                merged[key] = prev._replace(value=min(prev.value, sample.value))
            else:
                merged[key] = prev._replace(value=prev.value + sample.value)
        folded = Metric(family.name, family.documentation, family.type, family.unit)
        folded.samples = list(merged.values())
        out.append(folded)
    return out


class _Families:
    """What ``generate_latest`` reads: an object with ``collect``."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


async def metrics_view(request: web.Request) -> web.Response:
    refused = request.app[SCRAPE_KEY].refusal(request)
    if refused is not None:
        return refused
    families = list(request.app[METRICS_KEY].registry.collect())
    values = channel_values(families)
    if values:
        async with request.app[DB_KEY].session() as session:
            listed = await channel_queries.listed_slugs(session, sorted(values))
        families = fold_channels(families, values - listed)
    return web.Response(
        body=generate_latest(_Families(families)),
        headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"},
    )


def setup(app: web.Application, settings: Settings) -> None:
    app[SCRAPE_KEY] = ScrapeAccess.from_settings(settings)
    app.router.add_get("/metrics", metrics_view)
