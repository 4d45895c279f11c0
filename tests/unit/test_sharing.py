"""The pure parts of webapp.sharing: which URLs may become an href, and the small formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from webapp.sharing import (
    HOST_RE,
    card_text,
    duration_text,
    profile_links,
    relative_time,
    safe_url,
)


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org",
        "http://example.org/a?b=1#c",
        "HTTPS://Example.org/",
        "https://[::1]:8080/x",
        "mailto:someone@example.org",
        "  https://padded.example/  ",
    ],
)
def test_safe_urls_pass(url: str) -> None:
    assert safe_url(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "java\nscript:alert(1)",
        "javascript\x00:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///etc/passwd",
        "ftp://example.org/",
        "//evil.example/",
        "/relative/path",
        "https:evil.example",
        "https:/evil.example",
        "https:\\\\evil.example",
        "https://",
        "https://[::1",
        "https://exa mple.org",
        "mailto:",
        "mailto:@example.org",
        "",
        None,
        42,
        "https://" + "a" * 3000 + ".org",
    ],
)
def test_unsafe_urls_are_refused(url: object) -> None:
    assert safe_url(url) is None


def test_profile_links_keep_only_safe_ones_in_order() -> None:
    links = profile_links(
        {"website": "https://me.example", "github": "javascript:x", "twitch": "https://t.example"}
    )
    assert [(link.key, link.label, link.url) for link in links] == [
        ("twitch", "Twitch", "https://t.example"),
        ("website", "Website", "https://me.example"),
    ]
    assert profile_links(None) == [] and profile_links(["https://x.example"]) == []


def test_host_pattern() -> None:
    for good in ("localhost", "example.org:8080", "127.0.0.1:80", "[::1]:8080", "a-b.c"):
        assert HOST_RE.fullmatch(good), good
    for bad in ('a"b', "a b", "<x>", "-a.org", "a.org:port", "", "a..b"):
        assert not HOST_RE.fullmatch(bad), bad


def test_formats() -> None:
    assert duration_text(3723) == "1:02:03" and duration_text(95.9) == "1:35"
    assert duration_text(None) is None and duration_text(-1) is None
    assert duration_text(float("nan")) is None
    now = datetime(2026, 1, 10, tzinfo=UTC)
    assert relative_time(now - timedelta(seconds=20), now) == "just now"
    assert relative_time(now + timedelta(hours=1), now) == "just now"
    assert relative_time(now - timedelta(minutes=1), now) == "1 minute ago"
    assert relative_time(now - timedelta(hours=5, minutes=59), now) == "5 hours ago"
    assert relative_time(now - timedelta(days=8), now) == "1 week ago"
    assert relative_time(now - timedelta(days=400), now) == "1 year ago"
    assert card_text("a\n b  c") == "a b c"
    assert card_text("x" * 300) == "x" * 199 + "…"
