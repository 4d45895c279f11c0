"""Restreaming (issue 14) end to end: a real ffmpeg publishes into server A, whose channel has
three destinations at once: server B (our own second server, on other ports, with B's stream
key), a closed port (refused) and a socket that accepts TCP and never answers (blackholed).
B goes live and serves HLS; the two failing destinations retry (their reconnect counters
rise) while the real one stays live without a reconnect and A's own viewers keep their HLS;
disabling the real destination while live ends B's stream within a couple of seconds. Stream
keys appear in no response (only their last 4 characters) and in no log line.

Then the API: who may manage destinations (owner or admin; 401/403 for others), presets
filling the URL, and the 400s for bad fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, make_user
from conftest import (
    free_port,
    make_channel,
    make_source,
    push,
    rtmp_url,
    running_server,
    transcoding,
)
from sqlalchemy import update
from test_rtmp_push import make_certificate, tls_front

from mediaserver.live import MediaKind, MediaPacket
from storage import queries
from storage.restream_models import RestreamDestination

pytestmark = pytest.mark.integration

LADDER = [{"name": "240p", "height": 240, "fps": 30, "video_kbps": 300}]
# Server A also encodes a small rung, which one destination asks for instead of the original.
LADDER_A = [*LADDER, {"name": "144p", "height": 144, "fps": 30, "video_kbps": 150}]
DEADLINE = 60.0


def hls_env(env: dict[str, str], ladder: list[dict[str, Any]] = LADDER) -> dict[str, str]:
    """HLS with the top rung copying the 240p H.264 source (cheap on 2 shared cores)."""
    return {
        **transcoding(env),
        "AETHEX_TRANSCODE__PASSTHROUGH": "always",
        "AETHEX_TRANSCODE__LADDER": json.dumps(ladder),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
    }


def relay_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "AETHEX_RESTREAM__ALLOW_PRIVATE_ADDRESSES": "true",
        "AETHEX_RESTREAM__CONNECT_TIMEOUT": "1",
        "AETHEX_RESTREAM__SETUP_TIMEOUT": "1",
        "AETHEX_RESTREAM__STALL_TIMEOUT": "2",
        "AETHEX_RESTREAM__BACKOFF_BASE": "0.2",
        "AETHEX_RESTREAM__BACKOFF_MAX": "1",
    }


async def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[int]:
    """A port that accepts TCP and then never reads nor answers."""
    held: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    srv = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        for w in held:
            w.transport.abort()
        srv.close()


async def statuses(http: aiohttp.ClientSession, slug: str) -> dict[str, dict[str, Any]]:
    async with http.get(f"/api/channels/{slug}/destinations") as r:
        assert r.status == 200, await r.text()
        data = await r.json()
    return {d["name"]: d for d in data["destinations"]}


async def playlist_ok(base: str, slug: str) -> bool:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/hls/{slug}/master.m3u8") as r:
            return r.status == 200


async def media_playlists(base: str, slug: str) -> list[str]:
    """Every rendition's media playlist of a live stream, as our viewers load them."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/hls/{slug}/master.m3u8") as r:
            master = await r.text()
        uris = [line for line in master.splitlines() if line and not line.startswith("#")]
        out = []
        for uri in uris:
            async with http.get(f"{base}/hls/{slug}/{uri}") as r:
                assert r.status == 200, uri
                out.append(await r.text())
        return out


def dropped(metrics: str, slug: str) -> dict[str, float]:
    """Packets and frames lost on the way from a channel's ingest to its viewers, by series."""
    names = ("aethex_live_dropped_packets_total{", "aethex_transcode_dropped_frames_total{")
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(names) and f'channel="{slug}"' in line
    }


async def test_relay_to_our_second_server_with_failing_neighbours(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    env_a = {
        "AETHEX_DATA_DIR": str(tmp_path / "a"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
    }
    env_b = {**env_a, "AETHEX_DATA_DIR": str(tmp_path / "b")}
    source = make_source(tmp_path / "src.flv", size="426x240", seconds=20, bitrate="300k")
    async with (
        running_server(relay_env(hls_env(env_a, LADDER_A))) as a,
        running_server(hls_env(env_b)) as b,
        blackhole() as hole_port,
    ):
        _, key_a = await make_channel(a, "origin", "alice")
        _, key_b = await make_channel(b, "mirror", "bob")
        _, key_b2 = await make_channel(b, "mirror-rung", "bob")
        _, token = await make_user(a, "carol")
        refused_port = free_port()
        fake_keys = ["refused-key-0123456789", "hole-key-9876543210"]
        async with a.db.session() as db:
            alice_token = await queries.create_api_token(db, "alice")
            await db.commit()
        http = aiohttp.ClientSession(base_url(a), headers=auth(alice_token))
        async with http:
            for name, url, key, send in [
                ("real", f"rtmp://127.0.0.1:{b.rtmp_port}/live", key_b, "original"),
                ("rung", f"rtmp://127.0.0.1:{b.rtmp_port}/live", key_b2, "144p"),
                ("refused", f"rtmp://127.0.0.1:{refused_port}/live", fake_keys[0], "original"),
                ("hole", f"rtmp://127.0.0.1:{hole_port}/app", fake_keys[1], "original"),
            ]:
                body = {
                    "name": name,
                    "preset": "custom",
                    "ingest_url": url,
                    "stream_key": key,
                    "source": send,
                }
                async with http.post("/api/channels/origin/destinations", json=body) as r:
                    text = await r.text()
                    assert r.status == 201, text
                    assert key not in text
                    assert (await r.json())["destination"]["key_hint"] == key[-4:]

            ffmpeg = await push(source, rtmp_url(a, key_a))
            try:
                # B goes live from A's relay and serves HLS.
                await wait_until(lambda: b.registry.get("mirror") is not None, "B live")
                await wait_until(lambda: playlist_ok(base_url(b), "mirror"), "B's playlist")
                # The destination that asked for A's 144p rung gets that rung, not the source.
                await wait_until(lambda: playlist_ok(base_url(b), "mirror-rung"), "rung relay")
                async with aiohttp.ClientSession() as anon:
                    async with anon.get(f"{base_url(b)}/hls/mirror-rung/master.m3u8") as r:
                        master = await r.text()
                assert "RESOLUTION=256x144" in master, master
                # A's own viewers are served as usual.
                await wait_until(lambda: playlist_ok(base_url(a), "origin"), "A's playlist")

                async def failing_retried() -> bool:
                    s = await statuses(http, "origin")
                    return all(s[n]["status"]["reconnects"] >= 2 for n in ("refused", "hole"))

                await wait_until(failing_retried, "failing destinations retried")
                s = await statuses(http, "origin")
                real = s["real"]["status"]
                assert real["state"] == "live", real
                assert real["reconnects"] == 0, real
                assert real["bytes_sent"] > 0
                assert s["refused"]["status"]["state"] in ("connecting", "retrying")
                assert s["refused"]["status"]["last_error"]
                assert b.registry.get("mirror") is not None  # never interrupted
                # The real destination lost nothing while its neighbours failed...
                assert real["dropped_packets"] == 0, real

                async with aiohttp.ClientSession() as anon:
                    async with anon.get(f"{base_url(a)}/metrics") as r:
                        metrics = await r.text()
                # ...and neither did our own viewers: nothing dropped between A's ingest and
                # its ladder, and every rendition's playlist runs on without a discontinuity.
                for family in ("aethex_live_dropped_packets", "aethex_transcode_dropped_frames"):
                    assert f"# TYPE {family}_total counter" in metrics, family  # names right
                assert not any(dropped(metrics, "origin").values()), dropped(metrics, "origin")
                for playlist in await media_playlists(base_url(a), "origin"):
                    assert "#EXT-X-DISCONTINUITY" not in playlist, playlist
                    assert playlist.count("#EXTINF") >= 2, playlist
                for name in (
                    "aethex_restream_state",
                    "aethex_restream_bytes_total",
                    "aethex_restream_reconnects_total",
                    "aethex_restream_dropped_packets_total",
                ):
                    assert name in metrics, name

                # Disabling the real destination while live stops it within a couple of
                # seconds: B's stream ends.
                real_id = s["real"]["id"]
                mirror = b.registry.get("mirror")
                assert mirror is not None
                started = time.monotonic()
                async with http.patch(
                    f"/api/channels/origin/destinations/{real_id}", json={"enabled": False}
                ) as r:
                    assert r.status == 200, await r.text()
                await wait_until(lambda: mirror.ended, "B's stream ended", timeout=10)
                took = time.monotonic() - started
                assert took < 3.0, took
                s = await statuses(http, "origin")
                assert s["real"]["status"]["state"] == "stopped"

                # Editing a live destination's key takes effect as fast: the rung's relay
                # reconnects with the new (wrong) key and B refuses it.
                mirror_rung = b.registry.get("mirror-rung")
                assert mirror_rung is not None
                started = time.monotonic()
                wrong = "wrong-key-0000000000"
                async with http.patch(
                    f"/api/channels/origin/destinations/{s['rung']['id']}",
                    json={"stream_key": wrong},
                ) as r:
                    assert r.status == 200, await r.text()
                    assert wrong not in await r.text()
                await wait_until(lambda: mirror_rung.ended, "B's rung stream ended", timeout=10)
                took = time.monotonic() - started
                assert took < 3.0, took

                async def refused() -> bool:
                    st = (await statuses(http, "origin"))["rung"]["status"]
                    return st["state"] == "retrying" and "publish" in (st["last_error"] or "")

                await wait_until(refused, "the wrong key refused by B")
                assert b.registry.get("mirror-rung") is None
                s = await statuses(http, "origin")
                assert s["refused"]["status"]["state"] in ("connecting", "retrying")

                # Nobody else sees the destinations, let alone the keys.
                async with aiohttp.ClientSession(base_url(a), headers=auth(token)) as other:
                    async with other.get("/api/channels/origin/destinations") as r:
                        assert r.status == 403
                        assert key_b not in await r.text()
            finally:
                with contextlib.suppress(ProcessLookupError):
                    ffmpeg.kill()
                await ffmpeg.wait()
    logged = caplog.text
    for key in [key_b, key_b2, "wrong-key-0000000000", *fake_keys]:
        assert key not in logged
    assert "restream origin -> rtmp://127.0.0.1" in logged  # the relay logs, redacted


async def test_destinations_api_permissions_and_bad_input(server) -> None:
    await make_channel(server, "chan", "owner")
    async with server.db.session() as db:
        owner_token = await queries.create_api_token(db, "owner")
        await db.commit()
    _, other_token = await make_user(server, "other")
    _, admin_token = await make_user(server, "boss", admin=True)
    base = base_url(server)
    url = "/api/channels/chan/destinations"
    key = "live_123456789_abcdefghijklmnop"
    twitch = {"name": "Twitch", "preset": "twitch", "stream_key": key}
    async with aiohttp.ClientSession(base, headers=auth(owner_token)) as owner:
        async with owner.post(url, json=twitch) as r:
            assert r.status == 201
            text = await r.text()
            made = json.loads(text)["destination"]
        assert key not in text
        assert made["ingest_url"] == "rtmp://live.twitch.tv/app"
        assert made["key_hint"] == "mnop"
        assert made["source"] == "original" and made["enabled"] is True
        assert made["status"]["state"] == "stopped"
        one = f"{url}/{made['id']}"

        bad_bodies: list[Any] = [
            {"preset": "twitch", "stream_key": key},  # no name
            {"name": "x", "preset": "twitch"},  # no key
            {"name": "x", "preset": "myspace", "stream_key": key},
            {"name": "x", "preset": "custom", "stream_key": key},  # no URL
            {
                "name": "x",
                "preset": "custom",
                "ingest_url": "http://a.example/app",
                "stream_key": key,
            },
            {"name": "x", "preset": "custom", "ingest_url": "rtmp://a.example", "stream_key": key},
            {"name": "x", "preset": "custom", "ingest_url": "rtmp://:99/app", "stream_key": key},
            {"name": "x", "preset": "twitch", "stream_key": "has space"},
            {"name": "x", "preset": "twitch", "stream_key": 12345},
            {"name": "x", "preset": "twitch", "stream_key": key, "source": "4320p"},
            {"name": "x", "preset": "twitch", "stream_key": key, "enabled": "yes"},
            {"name": "", "preset": "twitch", "stream_key": key},
            {"name": "x" * 65, "preset": "twitch", "stream_key": key},
            # CA files: a name in restream.ca_dir, which this server has not set; never a path.
            {"name": "x", "preset": "twitch", "stream_key": key, "ca_file": "relative.pem"},
            {"name": "x", "preset": "twitch", "stream_key": key, "ca_file": "/etc/passwd"},
            {"name": "x", "preset": "twitch", "stream_key": key, "ca_file": "../ca.pem"},
            {"name": "x", "preset": "twitch", "stream_key": key, "ca_file": ".hidden"},
            [1, 2],
        ]
        for body in bad_bodies:
            async with owner.post(url, json=body) as r:
                assert r.status == 400, (body, r.status, await r.text())
                assert "error" in await r.json()
        async with owner.patch(one, json={"ingest_url": "rtmp://other.example/app"}) as r:
            assert r.status == 400  # the preset's URL
        async with owner.patch(one, json={"source": "nope"}) as r:
            assert r.status == 400
        async with owner.patch(f"{url}/999999", json={"enabled": False}) as r:
            assert r.status == 404
        new_key = "second-key-zyxw9876"
        async with owner.patch(one, json={"stream_key": new_key, "enabled": False}) as r:
            assert r.status == 200
            changed = (await r.json())["destination"]
        assert changed["key_hint"] == "9876" and changed["enabled"] is False
        async with owner.patch(
            one, json={"preset": "custom", "ingest_url": "rtmps://ingest.example:4443/live"}
        ) as r:
            assert r.status == 200
            assert (await r.json())["destination"]["ingest_url"].startswith("rtmps://")

    async with aiohttp.ClientSession(base) as anon:
        async with anon.get(url) as r:
            assert r.status == 401
    async with aiohttp.ClientSession(base, headers=auth(other_token)) as other:
        for method, target, body in [
            ("GET", url, None),
            ("POST", url, {"name": "x", "preset": "twitch", "stream_key": key}),
            ("PATCH", one, {"enabled": True}),
            ("DELETE", one, None),
        ]:
            async with other.request(method, target, json=body) as r:
                assert r.status == 403, (method, r.status)
                text = await r.text()
                assert key not in text and new_key not in text
    async with aiohttp.ClientSession(base, headers=auth(admin_token)) as admin:
        async with admin.get(url) as r:
            assert r.status == 200
            text = await r.text()
        assert new_key not in text and "9876" in text
        async with admin.get("/api/channels/nosuch/destinations") as r:
            assert r.status == 404
    async with aiohttp.ClientSession(base, headers=auth(owner_token)) as owner:
        async with owner.delete(one) as r:
            assert r.status == 204
        async with owner.get(url) as r:
            assert (await r.json())["destinations"] == []


async def test_a_destination_that_comes_back_mid_stream_gets_the_stream_from_a_keyframe(
    tmp_path: Path,
) -> None:
    """B is down when A goes live (its port refuses); A retries on its backoff; B starts
    mid-stream on that port and goes live from A's relay, its first video frame a keyframe;
    A's ingest never noticed."""
    env_a = {
        "AETHEX_DATA_DIR": str(tmp_path / "a"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_TRANSCODE__ENABLED": "false",
    }
    b_port = free_port()
    env_b = {**env_a, "AETHEX_DATA_DIR": str(tmp_path / "b"), "AETHEX_RTMP_PORT": str(b_port)}
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=30, bitrate="200k")
    async with running_server(relay_env(env_a)) as a:
        _, key_a = await make_channel(a, "origin", "alice")
        async with a.db.session() as db:
            token = await queries.create_api_token(db, "alice")
            await db.commit()
        # B's database first (its key must exist before it listens), then B itself later.
        async with running_server({**env_b, "AETHEX_RTMP_PORT": "0"}) as b0:
            _, key_b = await make_channel(b0, "mirror", "bob")
        async with aiohttp.ClientSession(base_url(a), headers=auth(token)) as http:
            body = {
                "name": "later",
                "ingest_url": f"rtmp://127.0.0.1:{b_port}/live",
                "stream_key": key_b,
            }
            async with http.post("/api/channels/origin/destinations", json=body) as r:
                assert r.status == 201, await r.text()
            ffmpeg = await push(source, rtmp_url(a, key_a))
            try:

                async def retried() -> bool:
                    s = (await statuses(http, "origin"))["later"]["status"]
                    return s["reconnects"] >= 2 and s["state"] in ("retrying", "connecting")

                await wait_until(retried, "retries while B is down")
                live = a.registry.get("origin")
                assert live is not None
                first_video: list[bool] = []

                def started(stream: Any) -> None:
                    sub = stream.subscribe("first-frame", maxsize=10_000)

                    async def first() -> None:
                        while (item := await sub.get()) is not None:
                            if isinstance(item, MediaPacket) and item.kind is MediaKind.VIDEO:
                                first_video.append(item.keyframe)
                                return

                    tasks.append(asyncio.get_running_loop().create_task(first()))

                tasks: list[asyncio.Task[None]] = []
                async with running_server(env_b) as b:
                    assert b.rtmp_port == b_port
                    b.registry.on_started(started)
                    await wait_until(lambda: b.registry.get("mirror") is not None, "B live")
                    await wait_until(lambda: first_video, "B's first video frame")
                    assert first_video == [True]

                    async def relaying() -> bool:
                        s = (await statuses(http, "origin"))["later"]["status"]
                        return s["state"] == "live" and s["bytes_sent"] > 0

                    await wait_until(relaying, "A shows the relay live")
                    assert a.registry.get("origin") is live  # ingest never interrupted
                    assert live.stats.snapshot()  # still counting
            finally:
                with contextlib.suppress(ProcessLookupError):
                    ffmpeg.kill()
                await ffmpeg.wait()


async def test_rtmps_destination_verifies_its_certificate_unless_given_its_ca(
    tmp_path: Path,
) -> None:
    """Two rtmps:// destinations behind a TLS front with a self-signed certificate: without a
    CA file the certificate is refused (and retried); with ``ca_file`` (its name in the
    operator's restream.ca_dir) the relay goes live. A path, or a name not in the directory,
    is refused with a 400."""
    env = {
        "AETHEX_DATA_DIR": str(tmp_path / "data"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
        "AETHEX_TRANSCODE__ENABLED": "false",
        "AETHEX_RESTREAM__CA_DIR": str(tmp_path / "cas"),
    }
    cert, cert_key = make_certificate(tmp_path)
    (tmp_path / "cas").mkdir()
    (tmp_path / "cas" / "front.pem").write_bytes(Path(cert).read_bytes())
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=30, bitrate="200k")
    async with running_server(relay_env(env)) as server:
        _, key = await make_channel(server, "tls-src", "tina")
        _, trusted_key = await make_channel(server, "tls-copy", "tina")
        _, other_key = await make_channel(server, "tls-other", "tina")
        async with server.db.session() as db:
            token = await queries.create_api_token(db, "tina")
            await db.commit()
        async with (
            tls_front(cert, cert_key, server.rtmp_port) as port,
            aiohttp.ClientSession(base_url(server), headers=auth(token)) as http,
        ):
            for bad in (str(cert), "missing.pem", "../cas/front.pem"):
                body = {
                    "name": "bad",
                    "ingest_url": f"rtmps://localhost:{port}/live",
                    "stream_key": trusted_key,
                    "ca_file": bad,
                }
                async with http.post("/api/channels/tls-src/destinations", json=body) as r:
                    assert r.status == 400, (bad, await r.text())
                    assert "error" in await r.json()
            for name, dest_key, ca_file in [
                ("trusted", trusted_key, "front.pem"),
                ("untrusted", other_key, None),
            ]:
                body = {
                    "name": name,
                    "ingest_url": f"rtmps://localhost:{port}/live",
                    "stream_key": dest_key,
                    "ca_file": ca_file,
                }
                async with http.post("/api/channels/tls-src/destinations", json=body) as r:
                    assert r.status == 201, await r.text()
            ffmpeg = await push(source, rtmp_url(server, key))
            try:
                await wait_until(lambda: server.registry.get("tls-copy") is not None, "relayed")

                async def refused() -> bool:
                    st = (await statuses(http, "tls-src"))["untrusted"]["status"]
                    return "CERTIFICATE_VERIFY_FAILED" in (st["last_error"] or "")

                await wait_until(refused, "the self-signed certificate refused")
                assert server.registry.get("tls-other") is None
                st = (await statuses(http, "tls-src"))["trusted"]["status"]
                assert st["state"] == "live" and st["reconnects"] == 0, st
            finally:
                with contextlib.suppress(ProcessLookupError):
                    ffmpeg.kill()
                await ffmpeg.wait()


async def test_a_platform_preset_gets_the_top_h264_rung_of_an_hevc_source(
    tmp_path: Path,
) -> None:
    """PyAV publishes HEVC (Enhanced RTMP); a Twitch-preset destination (its row pointed at
    our server B instead of Twitch) receives the top rung of A's H.264 ladder, not HEVC."""
    env_a = {
        "AETHEX_DATA_DIR": str(tmp_path / "a"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
    }
    env_b = {**env_a, "AETHEX_DATA_DIR": str(tmp_path / "b"), "AETHEX_TRANSCODE__ENABLED": "false"}
    async with (
        running_server(relay_env(hls_env(env_a, LADDER_A))) as a,
        running_server(env_b) as b,
    ):
        _, key_a = await make_channel(a, "hevc", "hana")
        _, key_b = await make_channel(b, "hevc-copy", "bob")
        async with a.db.session() as db:
            token = await queries.create_api_token(db, "hana")
            await db.commit()
        async with aiohttp.ClientSession(base_url(a), headers=auth(token)) as http:
            body = {"name": "tw", "preset": "twitch", "stream_key": key_b}
            async with http.post("/api/channels/hevc/destinations", json=body) as r:
                assert r.status == 201, await r.text()
                dest_id = (await r.json())["destination"]["id"]
            async with a.db.session() as db:  # only the URL differs from a real Twitch row
                await db.execute(
                    update(RestreamDestination)
                    .where(RestreamDestination.id == dest_id)
                    .values(ingest_url=f"rtmp://127.0.0.1:{b.rtmp_port}/live")
                )
                await db.commit()
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tests.pyav_publisher",
                rtmp_url(a, key_a),
                "--codec",
                "libx265",
                "--seconds",
                "12",
                cwd=Path(__file__).resolve().parents[2],
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                await wait_until(lambda: b.registry.get("hevc-copy") is not None, "relayed")
                live_a = a.registry.get("hevc")
                assert live_a is not None and live_a.video_config is not None
                assert live_a.video_config.codec == "hvc1"
                copy = b.registry.get("hevc-copy")
                assert copy is not None
                await wait_until(lambda: copy.video_config is not None, "B's video config")
                assert copy.video_config is not None and copy.video_config.codec == "avc1"

                async def sending_top() -> bool:
                    st = (await statuses(http, "hevc"))["tw"]["status"]
                    return st["state"] == "live" and st["sending"] == "240p"

                await wait_until(sending_top, "the top rung shown as sent")
            finally:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
