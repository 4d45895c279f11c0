"""The client's address as this server should see it, behind a reverse proxy too.

With ``http.trust_forwarded_for`` every request comes from the proxy, which appends the
address it saw to ``X-Forwarded-For``: the last entry is the proxy's word; anything before it
the client sent and may have made up. Without the setting the header is ignored, because any
client could send it.
"""

from __future__ import annotations

from collections.abc import Mapping


def last_forwarded_for(headers: Mapping[str, str]) -> str | None:
    """The last entry of the last X-Forwarded-For header, or None. aiohttp's headers may hold
    the name more than once (``getall``); the fast path's plain dict holds it at most once
    (it hands a repeated header to aiohttp)."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        values = getall("X-Forwarded-For", ())
    else:
        value = headers.get("x-forwarded-for")
        values = () if value is None else (value,)
    if not values:
        return None
    return values[-1].rsplit(",", 1)[-1].strip()[:64] or None


def client_host(
    remote: str | None, headers: Mapping[str, str], trust_forwarded: bool
) -> str | None:
    """The client's address: the proxy-reported one when trusted and present, else the
    socket peer's (None for a peer without an address)."""
    if trust_forwarded:
        forwarded = last_forwarded_for(headers)
        if forwarded:
            return forwarded
    return remote


def last_forwarded(headers: Mapping[str, str], name: str) -> str | None:
    """The last entry of the last ``name`` header (``X-Forwarded-Proto``, ``X-Forwarded-Host``):
    the proxy's own word, as for X-Forwarded-For. Callers read it only when
    ``http.trust_forwarded_for`` says a proxy sets these headers."""
    getall = getattr(headers, "getall", None)
    values = getall(name, ()) if getall is not None else ()
    if getall is None and (value := headers.get(name.lower(), headers.get(name))) is not None:
        values = (value,)
    if not values:
        return None
    return values[-1].rsplit(",", 1)[-1].strip()[:255] or None
