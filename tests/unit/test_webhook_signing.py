"""Webhooks without a network: the signature scheme (and the README's verification snippet
against it), the bodies (JSON and Discord), which addresses deliveries may go to, the checks
of an endpoint's fields and the backoff schedule."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from storage import webhooks as store
from storage.errors import ValidationError
from webapp.webhooks.addresses import RefusedDestination, check_host, is_public
from webapp.webhooks.signing import (
    DISCORD_MAX,
    body_of,
    discord_text,
    headers_of,
    signature_header,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_" + "ab" * 32
PAYLOAD: dict[str, Any] = {
    "created_at": "2026-12-01T10:00:00+00:00",
    "channel": {"id": 1, "slug": "show", "name": "The Show", "url": "https://x.test/streams/show"},
    "stream": {"id": 7, "title": "Speedrun @everyone", "started_at": None, "ended_at": None},
}


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = body_of(5, "stream.online", PAYLOAD, "json")
    header = signature_header(SECRET, 1700000000, body)
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    now = time.time()
    fresh = signature_header(SECRET, int(now), body)
    assert verify(SECRET, fresh, body, now)
    assert not verify(SECRET + "0", fresh, body, now)
    assert not verify(SECRET, fresh, body.replace(b"Show", b"Shoe"), now)
    assert not verify(SECRET, fresh, body, now + 301)  # a replay, later
    assert not verify(SECRET, "v1=" + expected, body, now)
    assert not verify(SECRET, "t=abc,v1=00", body, now)


def test_the_readme_snippet_verifies_what_the_server_signs() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.DOTALL)
    snippet = next(b for b in blocks if "def verify(" in b)
    namespace: dict[str, Any] = {}
    exec(snippet, namespace)  # our own documentation, checked as code
    body = body_of(9, "channel.follow", {**PAYLOAD, "follower": {"id": 3, "username": "u"}}, "json")
    headers = headers_of(9, "channel.follow", SECRET, body, int(time.time()))
    assert namespace["verify"](SECRET, headers["X-AeThex-Signature"], body)
    assert not namespace["verify"]("whsec_other", headers["X-AeThex-Signature"], body)
    stale = headers_of(9, "channel.follow", SECRET, body, int(time.time()) - 3600)
    assert not namespace["verify"](SECRET, stale["X-AeThex-Signature"], body)
    assert headers["X-AeThex-Event"] == "channel.follow" and headers["X-AeThex-Delivery"] == "9"


def test_bodies() -> None:
    doc = json.loads(body_of(5, "stream.online", PAYLOAD, "json"))
    assert doc == {"id": 5, "event": "stream.online", **PAYLOAD}
    message = json.loads(body_of(5, "stream.online", PAYLOAD, "discord"))
    assert message == {
        "content": "The Show is live: Speedrun @everyone https://x.test/streams/show",
        "allowed_mentions": {"parse": []},  # the title's @everyone pings nobody
    }
    assert discord_text("stream.offline", PAYLOAD).startswith("The Show is offline.")
    follow = {**PAYLOAD, "follower": {"id": 2, "username": "fan"}}
    assert (
        discord_text("channel.follow", follow)
        == "fan followed The Show https://x.test/streams/show"
    )
    long = {**PAYLOAD, "stream": {"title": "x" * 5000}}
    assert len(discord_text("stream.online", long)) == DISCORD_MAX


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700::1111", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
    ],
)
def test_which_addresses_are_public(address: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(address)) is public


async def test_check_host_on_literals_needs_no_resolver() -> None:
    await check_host("8.8.8.8", 80, allow_private=False, within=1)
    await check_host("127.0.0.1", 80, allow_private=True, within=1)
    for host in ("127.0.0.1", "::1", "10.9.8.7"):
        with pytest.raises(RefusedDestination, match="refused"):
            await check_host(host, 80, allow_private=False, within=1)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "   ",
        "example.org/hook",
        "ftp://example.org/",
        "javascript:alert(1)",
        "http://",
        "http:///path",
        "http://u:p@example.org/",
        "http://example.org/#frag",
        "http://example.org:0/",
        "http://example.org:70000/",
        "http://[::1/",
        "http://exämple.org/",
        "http://example.org/a b",
        "https://example.org/" + "a" * 2048,
        None,
        42,
    ],
)
def test_bad_urls_are_refused(url: Any) -> None:
    with pytest.raises(ValidationError):
        store.check_url(url)


def test_good_urls_and_fields() -> None:
    assert store.check_url(" https://Example.org:8443/h?x=1 ") == "https://Example.org:8443/h?x=1"
    assert store.check_url("http://127.0.0.1:9/") == "http://127.0.0.1:9/"  # syntax only
    with pytest.raises(ValidationError):
        store.check_url("https://example.org/" + "a" * 30, max_length=32)
    assert store.check_events(["channel.follow", "stream.online", "channel.follow"]) == [
        "stream.online",
        "channel.follow",
    ]
    for events in ([], ["stream.live"], "stream.online", [1], None):
        with pytest.raises(ValidationError):
            store.check_events(events)
    assert store.check_format("discord") == "discord"
    with pytest.raises(ValidationError):
        store.check_format("xml")
    secret = store.new_secret()
    assert secret.startswith("whsec_") and len(secret) == 70 and secret != store.new_secret()


def test_backoff_doubles_up_to_the_cap() -> None:
    waits = [store.backoff_seconds(n, 15, 100) for n in range(1, 7)]
    assert waits == [15, 30, 60, 100, 100, 100]
