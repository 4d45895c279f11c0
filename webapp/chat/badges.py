"""Follower-age badges (issue 16): how long the author of a message has followed the channel,
as of the message, from the follows table's ``created_at`` (held per room and user by
followers.py, so no message costs a query).

Badges are plain names a client maps to labels: ``follower`` (under a month),
``follower-1m``, ``follower-6m``, ``follower-1y``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# The tiers, longest first: (badge, at least this long a follower).
TIERS = (
    ("follower-1y", timedelta(days=365)),
    ("follower-6m", timedelta(days=182)),
    ("follower-1m", timedelta(days=30)),
    ("follower", timedelta(0)),
)


def follower_badge(since: datetime | None, at: datetime) -> str | None:
    """The follower badge of someone following since ``since``, at ``at``; None if not one."""
    if since is None:
        return None
    age = at - since
    for name, least in TIERS:
        if age >= least:
            return name
    return "follower"  # a follow dated a moment after the message (clock skew)


def is_follower_badge(name: str) -> bool:
    return name == "follower" or name.startswith("follower-")
