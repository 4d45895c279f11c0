"""The download area's plan cache: kept for its seconds, within its byte budget, least
recently used out first, and a plan too large for a quarter of the budget never kept."""

from __future__ import annotations

import time
from array import array

from transcode.remux import Mp4Plan
from webapp.downloads import Downloads


def plan(head_bytes: int) -> Mp4Plan:
    return Mp4Plan(b"x" * head_bytes, (), array("I"), array("Q"), array("Q"), head_bytes, 1.0)


def test_plans_are_kept_within_the_budget_least_recently_used_out_first() -> None:
    downloads = Downloads(2, cache_bytes=900, cache_seconds=60)
    a, b, c = plan(200), plan(200), plan(200)
    downloads.remember((1, ""), "1080p", a)
    downloads.remember((2, "720p"), "720p", b)
    assert downloads.cached((1, "")) == ("1080p", a)  # now the most recently used
    downloads.remember((3, ""), "480p", c)
    downloads.remember((4, ""), "480p", plan(200))
    downloads.remember((5, ""), "480p", plan(200))  # over 900 bytes: (2, "720p") goes
    assert downloads.cached((2, "720p")) is None
    assert downloads.cached((1, "")) == ("1080p", a)
    assert downloads.cached((3, "")) == ("480p", c)
    downloads.remember((6, ""), "480p", plan(251))  # over a quarter: never kept
    assert downloads.cached((6, "")) is None


def test_plans_expire(monkeypatch) -> None:
    downloads = Downloads(2, cache_bytes=1000, cache_seconds=5)
    downloads.remember((1, ""), "1080p", plan(10))
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + 6)
    assert downloads.cached((1, "")) is None
    assert Downloads(2, 1000, 0).remember((1, ""), "x", plan(10)) is None


def test_concurrency_slots() -> None:
    downloads = Downloads(1, 0, 0)
    assert downloads.enter() and not downloads.enter()
    downloads.leave()
    assert downloads.enter()
