"""A server whose disk is full keeps answering: API calls, a clear refusal of uploads, live HLS.

The full disk is made real without privileges: ``aethex serve`` runs as a child process, and
once it is set up (account, token, a live stream) the test lowers that process's RLIMIT_FSIZE
to 0 with ``prlimit``. From then on every write the server makes to a regular file fails in the
kernel (EFBIG, as ENOSPC would on a full disk): SQLite's WAL, uploads, recorded segments.
A tmpfs mounted as the data dir would give ENOSPC itself but needs root and mount rights that
CI machines and containers often lack; the file size limit works for any user, and nothing
outside the child process is affected. (SIGXFSZ is ignored in the child, so a refused write
is an error the server sees rather than a signal that kills it.)
"""

from __future__ import annotations

import asyncio
import io
import json
import resource
from pathlib import Path
from urllib.parse import urljoin

import aiohttp
import m3u8
import pytest
from PIL import Image
from serve_process import ServeProcess, serve_process

from tests.accounts import DEFAULT_PASSWORD, csrf_of, register
from tests.conftest import make_source, push

pytestmark = pytest.mark.integration

SLUG = "full-disk"
LADDER = [{"name": "240p", "height": 240, "fps": 30, "video_kbps": 300}]


def set_file_size_limit(server: ServeProcess, limit: int) -> None:
    _, hard = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
    resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (limit, hard))


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (30, 90, 200)).save(out, "PNG")
    return out.getvalue()


async def upload(http: aiohttp.ClientSession, base: str, token: str) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", png(), filename="me.png", content_type="image/png")
    async with http.post(
        f"{base}/api/upload/avatar", data=form, headers={"Authorization": f"Bearer {token}"}
    ) as r:
        return r.status, await r.json()


async def media_playlist(http: aiohttp.ClientSession, base: str) -> tuple[str, m3u8.M3U8]:
    """The live media playlist's URL (tokened, from the master) and its content."""
    async with http.get(f"{base}/hls/{SLUG}/master.m3u8") as r:
        assert r.status == 200, r.status
        master = m3u8.loads(await r.text())
    url = f"{base}/hls/{SLUG}/{master.playlists[0].uri}"
    async with http.get(url) as r:
        assert r.status == 200
        return url, m3u8.loads(await r.text())


async def wait_for_master(http: aiohttp.ClientSession, base: str) -> None:
    """The master is held (then 503) until the rendition has media: ask until it is there."""
    for _ in range(60):
        async with http.get(f"{base}/hls/{SLUG}/master.m3u8") as r:
            if r.status == 200:
                return
            assert r.status in (404, 503), r.status
        await asyncio.sleep(0.5)
    raise AssertionError("the stream never reached its master playlist")


async def test_full_disk_keeps_api_and_live_hls_answering(tmp_path: Path) -> None:
    source = make_source(tmp_path / "src.flv", size="426x240", seconds=60, bitrate="300k")
    env = {
        "AETHEX_TRANSCODE__ENABLED": "true",
        "AETHEX_TRANSCODE__PASSTHROUGH": "always",
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        "AETHEX_HLS__SEGMENT_DURATION": "1",
        "AETHEX_HLS__RECONNECT_GRACE": "0",
        # the analytics sampler writes the live stream's sample every 0.5 s: it meets the
        # full disk too, and must say so in one line
        "AETHEX_ANALYTICS__SAMPLE_INTERVAL": "0.5",
        "AETHEX_LOG__LEVEL": "warning",
    }
    data_dir = tmp_path / "data"
    async with serve_process(env, data_dir) as server, aiohttp.ClientSession() as anon:
        base = server.base
        async with await register(base, "alice") as http:
            h = {"X-CSRF-Token": await csrf_of(http, base)}
            async with http.post(f"{base}/api/auth/tokens", json={"name": "ci"}, headers=h) as r:
                assert r.status == 201
                token = (await r.json())["token"]  # not used yet: its first use is a write
            async with http.post(f"{base}/api/channels", json={"slug": SLUG}, headers=h) as r:
                assert r.status == 201, await r.text()
                key = (await r.json())["stream_key"]
        publisher = await push(source, f"rtmp://127.0.0.1:{server.rtmp_port}/live/{key}")
        try:
            await wait_for_master(anon, base)

            set_file_size_limit(server, 0)  # the disk is full from here on

            # Authentication records the token's first use; that write fails and is skipped.
            bearer = {"Authorization": f"Bearer {token}"}
            for _ in range(2):
                async with anon.get(f"{base}/api/auth/user", headers=bearer) as r:
                    assert r.status == 200, await r.text()
                    assert (await r.json())["user"]["username"] == "alice"

            # An upload is refused with a clear error and leaves no partial file behind.
            status, body = await upload(anon, base, token)
            assert status == 507, body
            assert body["error"]["code"] == "insufficient_storage" and body["error"]["message"]
            uploads = data_dir / "uploads"
            assert not uploads.exists() or list(uploads.iterdir()) == []

            # Signing in writes a session row: any route that hits the full disk answers the
            # same clear 507, never a 500.
            async with anon.post(
                f"{base}/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
            ) as r:
                body = await r.json()
                assert r.status == 507, body
                assert body["error"]["code"] == "insufficient_storage"

            # Live HLS goes on from memory: the next segment comes and is served.
            url, playlist = await media_playlist(anon, base)
            msn = playlist.media_sequence + len(playlist.segments)
            async with anon.get(f"{url}&_HLS_msn={msn}") as r:
                assert r.status == 200
                after = m3u8.loads(await r.text())
            newest = after.segments[-1]
            assert after.media_sequence + len(after.segments) > msn
            async with anon.get(urljoin(url, newest.uri)) as r:
                assert r.status == 200 and len(await r.read()) > 0

            # The sampler's write failed too (it comes every 0.5 s): one warning line.
            deadline = asyncio.get_running_loop().time() + 60
            while "analytics: no room on disk" not in server.log():
                assert asyncio.get_running_loop().time() < deadline, server.log()
                await asyncio.sleep(0.1)
            set_file_size_limit(server, resource.RLIM_INFINITY)  # room again
            status, body = await upload(anon, base, token)
            assert status == 200, body
            assert [p.name for p in uploads.iterdir()] == [body["url"].rsplit("/", 1)[1]]
        finally:
            if publisher.returncode is None:
                publisher.terminate()
            await publisher.wait()
    log = server.log()
    assert log.count("could not record API tokens' last use") == 1, log
    assert "Error handling request" not in log, log  # no request ended in a 500
    # The recording writer says once that the disk is full, not a traceback per segment, and
    # leaves no half-written file behind.
    assert "Traceback" not in log, log
    assert log.count("analytics: no room on disk") == 1, log
    assert log.count("the disk is full") == 1, log
    assert not list((data_dir / "streams").rglob("*.tmp"))
