"""``Server-Timing: app;dur=<ms>, db;dur=<ms>;desc="<n> statements"`` (webapp.timing): on pages,
API answers and errors raised as responses, never on the media and public-file paths the HLS
fast path also serves; the database share is part of the whole and counts the statements."""

from __future__ import annotations

import re

import aiohttp
import pytest
from conftest import make_channel

pytestmark = pytest.mark.integration

TIMING = re.compile(r'^app;dur=(\d+\.\d{2}), db;dur=(\d+\.\d{2});desc="(\d+) statements"$')


async def test_server_timing_on_pages_and_api_not_on_media(server) -> None:
    await make_channel(server, "timed-live", "timer")
    base = f"http://127.0.0.1:{server.http_port}"
    async with aiohttp.ClientSession(base) as http:
        for path, status in (
            ("/", 200),
            ("/streams/timed-live", 200),
            ("/api/channels/timed-live/live", 200),
            ("/api/channels/nobody-here/live", 404),
            ("/streams/nobody-here", 404),
            ("/dashboard", 200),  # the login page or a redirect to it, either way timed
        ):
            async with http.get(path) as r:
                assert r.status == status or path == "/dashboard", (path, r.status)
                value = r.headers.get("Server-Timing", "")
                m = TIMING.match(value)
                assert m, (path, value)
                app_ms, db_ms, statements = float(m[1]), float(m[2]), int(m[3])
                assert 0 <= db_ms <= app_ms, (path, value)
                # Looking the channel up is at least one statement, answered or not.
                if path.startswith("/api/channels/"):
                    assert statements >= 1, (path, value)
                for h in r.history:  # a redirect raised as a response is timed too
                    assert TIMING.match(h.headers.get("Server-Timing", "")), (path, h.status)
        async with http.get("/static/css/site.css") as r:
            assert r.status == 200 and "Server-Timing" not in r.headers
        async with http.get("/hls/timed-live/master.m3u8") as r:
            assert "Server-Timing" not in r.headers
