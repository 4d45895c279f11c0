"""The download area's plan cache: kept for its seconds, within its byte budget, least
recently used out first, and a plan too large for a quarter of the budget never kept."""

from __future__ import annotations

import time
from array import array
from datetime import UTC, datetime
from urllib.parse import unquote

from transcode.remux import Mp4Plan
from webapp.downloads import Downloads
from webapp.downloads.service import content_disposition, plan_range


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
    assert downloads.enter() is None and downloads.enter() == "too_many_connections"
    downloads.leave()
    assert downloads.enter() is None and downloads.running == 1
    per_client = Downloads(3, 0, 0, per_address=2)
    assert per_client.enter("10.0.0.1") is None and per_client.enter("10.0.0.1") is None
    assert per_client.enter("10.0.0.1") == "too_many_from_address"
    assert per_client.enter("10.0.0.2") is None  # another client still gets the last slot
    assert per_client.enter("10.0.0.3") == "too_many_connections"
    per_client.leave("10.0.0.1")
    assert per_client.enter("10.0.0.1") is None


def test_ranges() -> None:
    tag = '"t"'
    assert plan_range({}, 100, tag) == (200, 0, 100)
    assert plan_range({"Range": "bytes=10-19"}, 100, tag) == (206, 10, 20)
    assert plan_range({"Range": "bytes=90-"}, 100, tag) == (206, 90, 100)
    assert plan_range({"Range": "bytes=-30"}, 100, tag) == (206, 70, 100)
    assert plan_range({"Range": "bytes=-300"}, 100, tag) == (206, 0, 100)
    assert plan_range({"Range": "bytes=50-1000"}, 100, tag) == (206, 50, 100)
    assert plan_range({"Range": "bytes=100-"}, 100, tag)[0] == 416
    assert plan_range({"Range": "bytes=-0"}, 100, tag)[0] == 416
    # Several ranges, a reversed one, a stale If-Range or nonsense: the whole file.
    for value in ("bytes=0-1,5-6", "bytes=9-3", "bytes=-", "items=1-2", "bytes=" + "9" * 5000):
        assert plan_range({"Range": value}, 100, tag) == (200, 0, 100), value
    assert plan_range({"Range": "bytes=1-2", "If-Range": '"old"'}, 100, tag) == (200, 0, 100)
    assert plan_range({"Range": "bytes=1-2", "If-Range": tag}, 100, tag) == (206, 1, 3)


def test_file_names_are_safe() -> None:
    day = datetime(2026, 3, 4, tzinfo=UTC)
    assert content_disposition("alice-tv", "Speedrun #3: any%", day, "1080p") == (
        'attachment; filename="alice-tv-2026-03-04-Speedrun-3-any-1080p.mp4"'
    )
    hostile = 'a"b\r\nX-Evil: 1/../..\\c;d'
    value = content_disposition("x", hostile, None, "720p")
    assert value == 'attachment; filename="x-a-b-X-Evil-1-c-d-720p.mp4"'
    value = content_disposition("x", "Résumé 日本 🎮", None, "720p")
    plain, _, utf8 = value.partition("; filename*=UTF-8''")
    assert plain == 'attachment; filename="x-R-sum-720p.mp4"'
    assert unquote(utf8) == "x-Résumé-日本-720p.mp4"
    assert all(32 <= ord(c) < 127 for c in value)  # a header value, ASCII only
    assert content_disposition("x", None, None, "720p") == 'attachment; filename="x-720p.mp4"'
