"""The lexical side every playlist shares: resource names, URI checks and number formats.

Resource names are fixed patterns so a URL path can be mapped back to (segment, part) with a
strict parser and nothing else: ``init.mp4``, ``seg{N}.m4s``, ``part{N}.{i}.m4s``, and
``init{K}.mp4`` for the K-th new initialization section after a discontinuity (a restarted
or changed source), which each segment references through the EXT-X-MAP in effect for it.
The live playlist (``playlist``) and the finished ones (``vod``) both write through these, so
a name the HTTP layer parses back is always one a playlist could have written.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Literal, NamedTuple

INIT_URI = "init.mp4"
LIVE_VERSION = 9  # EXT-X-SKIP (delta updates) needs version 9
VOD_VERSION = 7
MAX_MSN_DIGITS = 10
MAX_PART_DIGITS = 4

_SEGMENT_RE = re.compile(rf"seg(0|[1-9][0-9]{{0,{MAX_MSN_DIGITS - 1}}})\.m4s")
_INIT_RE = re.compile(rf"init([1-9][0-9]{{0,{MAX_MSN_DIGITS - 1}}})\.mp4")
_PART_RE = re.compile(
    rf"part(0|[1-9][0-9]{{0,{MAX_MSN_DIGITS - 1}}})\.(0|[1-9][0-9]{{0,{MAX_PART_DIGITS - 1}}})\.m4s"
)


class ResourceName(NamedTuple):
    """A parsed media resource name; ``msn``/``part`` are None where they do not apply."""

    kind: Literal["init", "segment", "part"]
    # For "init": the initialization section's epoch K of ``init{K}.mp4`` (None: ``init.mp4``).
    msn: int | None
    part: int | None


def init_uri(epoch: int) -> str:
    """Name of the ``epoch``-th initialization section: ``init.mp4``, then ``init1.mp4``…"""
    return INIT_URI if epoch == 0 else f"init{epoch}.mp4"


def segment_uri(msn: int) -> str:
    return f"seg{msn}.m4s"


def part_uri(msn: int, part: int) -> str:
    return f"part{msn}.{part}.m4s"


def parse_segment_name(name: object) -> ResourceName | None:
    """Map a URL's last path component back to a resource, or None for anything else.

    Only the exact canonical spellings are accepted (ASCII digits, no leading zeros, bounded
    length), so two URLs never name one resource and no path trick reaches the store.
    """
    if not isinstance(name, str) or len(name) > 32:
        return None
    if name == INIT_URI:
        return ResourceName("init", None, None)
    m = _INIT_RE.fullmatch(name)
    if m:
        return ResourceName("init", int(m.group(1)), None)
    m = _SEGMENT_RE.fullmatch(name)
    if m:
        return ResourceName("segment", int(m.group(1)), None)
    m = _PART_RE.fullmatch(name)
    if m:
        return ResourceName("part", int(m.group(1)), int(m.group(2)))
    return None


def check_uri(uri: str) -> str:
    """URIs go into quoted strings and URI lines: no quotes, no control characters."""
    if not uri or any(c == '"' or ord(c) < 0x20 or ord(c) == 0x7F for c in uri):
        raise ValueError(f"URI not allowed in a playlist: {uri!r}")
    return uri


def format_seconds(value: float) -> str:
    """Durations with enough digits that their sums stay within a millisecond of the truth."""
    return f"{value:.5f}"


def ceil_ms(value: float) -> float:
    return math.ceil(value * 1000 - 1e-6) / 1000


def round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def format_pdt(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
