"""Follower-age badge tiers (issue 16): by how long before the message the author followed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webapp.chat.badges import follower_badge, is_follower_badge


def test_follower_badge_tiers() -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    cases = {
        None: None,
        at: "follower",
        at - timedelta(days=29, hours=23): "follower",
        at - timedelta(days=30): "follower-1m",
        at - timedelta(days=181): "follower-1m",
        at - timedelta(days=182): "follower-6m",
        at - timedelta(days=364): "follower-6m",
        at - timedelta(days=365): "follower-1y",
        at - timedelta(days=3000): "follower-1y",
        at + timedelta(seconds=2): "follower",  # followed a moment after (clocks differ)
    }
    for since, want in cases.items():
        assert follower_badge(since, at) == want, since
    assert all(is_follower_badge(b) for b in ("follower", "follower-1y"))
    assert not any(is_follower_badge(b) for b in ("owner", "moderator", "admin", "followers"))
