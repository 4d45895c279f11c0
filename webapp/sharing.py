"""Links a page hands to the outside world, and the small formats the public pages share.

* ``safe_url``: the only external links a page renders as an ``href`` are http(s) and mailto
  URLs. Profile links are validated when saved (``storage.accounts.validate_social_links``)
  and again here when shown, so a row written before that rule, or by hand, cannot put a
  ``javascript:`` or ``data:`` URL in front of a viewer.
* ``site_origin``/``absolute``: Open Graph and Twitter cards need absolute URLs. They come
  from ``http.public_url`` when set; else from the request, where the scheme and host a
  reverse proxy reports (``X-Forwarded-Proto``/``-Host``) count only with
  ``http.trust_forwarded_for``, like the client address in ``webapp.forwarded``. A host that
  is not a host name (or an address) is replaced, never echoed.
* ``social_meta``: the ``<meta>`` tags of a shared link's card, as data the template escapes.

A floor module: the channel home and the profile page both use it.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web

from .forwarded import last_forwarded
from .keys import OBJECTS_KEY, REGISTRY_KEY, SETTINGS_KEY

# Longest external URL rendered (the profile saves at most 300 characters).
URL_MAX = 2048
_LABEL = re.compile(r"^[A-Za-z][A-Za-z0-9 ]*$")
_LABEL_PART = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_RE = re.compile(
    rf"(?:{_LABEL_PART}(?:\.{_LABEL_PART})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::[0-9]{{1,5}})?"
)
FALLBACK_HOST = "localhost"
# How a profile's networks are named on the page (others: the key, capitalised).
LINK_LABELS = {
    "website": "Website",
    "twitter": "X (Twitter)",
    "youtube": "YouTube",
    "github": "GitHub",
}
# How much of a description a card carries (the platforms cut longer ones anyway).
CARD_DESCRIPTION_MAX = 200


def safe_url(value: object) -> str | None:
    """``value`` if it is an http(s) URL with a host, or a mailto: URL with an address;
    else None. Whitespace and control characters anywhere refuse the URL (browsers strip
    some of them, which is how ``java\\tscript:`` gets past a naive prefix check)."""
    if not isinstance(value, str):
        return None
    url = value.strip()
    if not url or len(url) > URL_MAX:
        return None
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        if not url[len(scheme) :].startswith("://") or not hostname:
            return None
        return url
    if scheme == "mailto":
        address = parts.path
        if "@" not in address or address.startswith("@") or address.endswith("@"):
            return None
        return url
    return None


@dataclass(frozen=True)
class ExternalLink:
    key: str  # the network ("website", "github", ...)
    label: str
    url: str


def profile_links(links: object) -> list[ExternalLink]:
    """A profile's saved links that are safe to render, in a stable order."""
    if not isinstance(links, dict):
        return []
    out = []
    for key in sorted(links):
        url = safe_url(links[key])
        if url is None or not isinstance(key, str) or not _LABEL.fullmatch(key):
            continue
        label = LINK_LABELS.get(key) or key.capitalize()
        out.append(ExternalLink(key, label, url))
    return out


def site_origin(request: web.Request) -> str:
    """``scheme://host[:port]`` this request reached the site by, for absolute links."""
    http = request.app[SETTINGS_KEY].http
    if http.public_url:
        public = urlsplit(http.public_url)
        if public.scheme in ("http", "https") and public.netloc:
            return f"{public.scheme}://{public.netloc}{public.path.rstrip('/')}"
    scheme = request.scheme if request.scheme in ("http", "https") else "http"
    host = request.host
    if http.trust_forwarded_for:
        proto = (last_forwarded(request.headers, "X-Forwarded-Proto") or "").lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = last_forwarded(request.headers, "X-Forwarded-Host")
        if forwarded_host:
            host = forwarded_host
    if not host or not HOST_RE.fullmatch(host):
        host = FALLBACK_HOST
    return f"{scheme}://{host}"


def absolute(request: web.Request, path: str) -> str:
    """An absolute URL of this site for a path starting with ``/``."""
    return site_origin(request) + path


def card_text(text: str, limit: int = CARD_DESCRIPTION_MAX) -> str:
    """One line of at most ``limit`` characters (whitespace folded)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def social_meta(
    request: web.Request,
    *,
    title: str,
    description: str,
    path: str,
    image: str | None,
    kind: str,
) -> list[tuple[str, str, str]]:
    """``(attribute, name, content)`` of each Open Graph / Twitter card tag; the template
    escapes every value. ``path`` and ``image`` are this site's paths (absolute here)."""
    url = absolute(request, path)
    description = card_text(description)
    tags = [
        ("property", "og:site_name", "AeThex Live"),
        ("property", "og:type", kind),
        ("property", "og:title", card_text(title, 120)),
        ("property", "og:description", description),
        ("property", "og:url", url),
        ("name", "twitter:card", "summary_large_image" if image else "summary"),
        ("name", "twitter:title", card_text(title, 70)),
        ("name", "twitter:description", description),
    ]
    if image:
        image_url = absolute(request, image)
        tags += [("property", "og:image", image_url), ("name", "twitter:image", image_url)]
    return tags


# -- thumbnails --------------------------------------------------------------------------------


def live_thumbnail_file(app: web.Application, slug: str) -> Path:
    """Where the live transcoder keeps a channel's latest frame (served at /thumbnails/)."""
    return app[SETTINGS_KEY].data_dir / "thumbnails" / f"{slug}.jpg"


def thumbnail_from_store(app: web.Application, slug: str) -> bool:
    """S3 mode (issue 15), and the channel is not being transcoded here: its live thumbnail is
    the bucket's (the origin transcoding it sends each one there); a file this node has is
    from a broadcast it once transcoded, stale if the channel has been live elsewhere since."""
    if app[OBJECTS_KEY].is_local:
        return False
    live = app[REGISTRY_KEY].get(slug)
    return live is None or live.remote or live.ended


def live_thumbnail_url(app: web.Application, slug: str) -> str | None:
    """The channel's live thumbnail, versioned by its mtime, or None when there is none.

    In S3 mode (issue 15) the origin that transcodes the channel sends each thumbnail to the
    bucket: any other node (a web node, another origin) links it versioned by the refresh
    period, and ``/thumbnails/{slug}.jpg`` reads it from the bucket."""
    mtime: int | None = None
    if not thumbnail_from_store(app, slug):
        try:
            mtime = int(live_thumbnail_file(app, slug).stat().st_mtime)
        except OSError:
            pass
    if mtime is None:
        if app[OBJECTS_KEY].is_local:
            return None
        period = max(1.0, app[SETTINGS_KEY].transcode.thumbnail_interval)
        mtime = int(time.time() // period * period)
    return f"/thumbnails/{slug}.jpg?v={mtime}"


# -- formats ---------------------------------------------------------------------------------


def duration_text(seconds: float | None) -> str | None:
    """``1:02:03`` or ``2:03``; None when unknown."""
    if seconds is None or seconds < 0 or not math.isfinite(seconds):
        return None
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


_UNITS = (
    ("year", 365 * 86400),
    ("month", 30 * 86400),
    ("week", 7 * 86400),
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
)


def relative_time(when: datetime, now: datetime | None = None) -> str:
    """``3 hours ago``; ``just now`` under a minute (and for a time in the future)."""
    now = now or datetime.now(UTC)
    seconds = (now - when).total_seconds()
    for unit, size in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'' if n == 1 else 's'} ago"
    return "just now"
