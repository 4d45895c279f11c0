"""The strict parser of the fast path's requests: plain HLS and VOD GET/HEAD heads.

Apart from the front (``webapp.fastpath``) because it is pure: bytes in, a parsed head or None
out, with no connection state, so it is tested and fuzzed on its own. It accepts only what it
fully understands; None sends the connection to aiohttp, whose complete parser decides.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

# Token characters of a header name (RFC 9110 5.6.2).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
# Headers that mean the request is not a plain GET: a body, an upgrade, an expectation.
_NOT_PLAIN = frozenset(("content-length", "transfer-encoding", "upgrade", "expect"))


def parse_query(qs: str) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for item in qs.split("&"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if "%" in item or "+" in item:
            key, value = unquote_plus(key), unquote_plus(value)
        values = query.get(key)
        if values is None:
            query[key] = [value]
        else:
            values.append(value)
    return query


def parse_head(head: bytes) -> tuple[str, str, str, dict[str, str], bool] | None:
    """(method, path, query string, headers by lower-case name, keep-alive) of a plain HLS or
    VOD GET/HEAD request head (without its final CRLFCRLF), or None for anything else."""
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return None
    lines = text.split("\r\n")
    request_line = lines[0]
    method, _, rest = request_line.partition(" ")
    target, _, version = rest.partition(" ")
    if method not in ("GET", "HEAD") or version not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    if not (target.startswith(("/hls/", "/vod/"))):
        return None
    path, _, qs = target.partition("?")
    # Percent-encoded or odd paths go to aiohttp, which normalises and rejects them.
    if (
        not path.isprintable()
        or "%" in path
        or "\\" in path
        or "#" in qs
        or " " in qs
        or "//" in path
        or "/." in path
    ):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        key = name.lower()
        if (
            not colon
            or not key
            or not _TOKEN.issuperset(key)
            or "\n" in value
            or "\r" in value
            or key in headers
            or key in _NOT_PLAIN
        ):
            return None
        headers[key] = value.strip(" \t")
    if "\n" in request_line or "\r" in request_line:
        return None
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.1":
        keep_alive = "close" not in connection
    else:
        keep_alive = "keep-alive" in connection
    return method, path, qs, headers, keep_alive
