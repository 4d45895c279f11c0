"""Test 6 of issue 15 (VOD after disk loss), on a cluster: an origin and a web node on one
PostgreSQL and one Redis, objects in a real SeaweedFS. A real ffmpeg publishes to the origin;
the recording ends up in the bucket; then the origin's data dir loses its media and the VOD
still plays byte for byte through every node: the web node (which never had it) and the
origin (which lost it)."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path

import aiohttp
import pytest
from seaweed import BUCKET, SeaweedFS, make_s3_settings, seaweed  # noqa: F401

from tests.cluster_nodes import node_env as node
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding
from tests.integration.test_videos import wait_archived
from tests.s3_recordings import recording_in_bucket, recording_names, renditions

pytestmark = pytest.mark.integration


async def play(http: aiohttp.ClientSession, site: str, stream_id: int) -> dict[str, bytes]:
    """The VOD's master, media playlists and every segment and init section, by name."""
    url = f"{site}/vod/{stream_id}"
    got = {}
    async with http.get(f"{url}/master.m3u8") as r:
        assert r.status == 200, site
        got["master.m3u8"] = await r.read()
    playlists = {}
    for rendition in renditions(got["master.m3u8"]):
        async with http.get(f"{url}/{rendition}/index.m3u8") as r:
            assert r.status == 200
            playlists[rendition] = await r.read()
    for name in recording_names(got["master.m3u8"], playlists):
        async with http.get(f"{url}/{name}") as r:
            assert r.status == 200, (site, name)
            got[name] = await r.read()
    return got


async def test_vod_plays_through_every_node_after_the_origin_loses_its_disk(
    settings_env: dict[str, str],
    tmp_path: Path,
    seaweed: SeaweedFS,  # noqa: F811
    postgres_url: str,
    redis_url: str,
) -> None:
    prefix = f"cluster-{tmp_path.name}"
    base = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
        **make_s3_settings(seaweed, prefix=prefix),
    }
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=3, bitrate="300k")
    origin_env = node(base, tmp_path, "origin-a", "origin", postgres_url, redis_url)
    web_env = node(base, tmp_path, "web-w", "web", postgres_url, redis_url)
    async with running_server(origin_env) as origin, running_server(web_env) as web:
        _, key = await make_channel(origin, "cluster-vod", "erin")
        proc = await push(source, rtmp_url(origin, key))
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        row = await wait_archived(origin)
        stored_base = f"{prefix}/streams/{row.id}"
        stored = await recording_in_bucket(seaweed, stored_base, "the VOD in the bucket")
        shutil.rmtree(Path(origin_env["AETHEX_DATA_DIR"]) / "streams")  # the origin's disk loss
        assert not (Path(web_env["AETHEX_DATA_DIR"]) / "streams").exists()
        async with aiohttp.ClientSession() as http:
            for server in (web, origin):
                site = f"http://127.0.0.1:{server.http_port}"
                got = await play(http, site, row.id)
                assert len(got) > 3
                for name, data in got.items():
                    assert data == stored[f"{stored_base}/{name}"], (site, name)
                # The video's page on this node points the player at that VOD.
                async with http.get(f"{site}/videos/{row.id}") as r:
                    assert r.status == 200
                    assert re.search(r'data-src="/vod/[^"]+/master\.m3u8"', await r.text())
            # The channel's last live thumbnail and the past broadcast's come from the bucket.
            thumbs = await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/thumbnails/")
            site = f"http://127.0.0.1:{web.http_port}"
            for path, key in (
                ("/thumbnails/cluster-vod.jpg", "thumbnails/cluster-vod.jpg"),
                (f"/thumbnails/streams/{row.id}.jpg", f"thumbnails/streams/{row.id}.jpg"),
            ):
                async with http.get(f"{site}{path}") as r:
                    assert r.status == 200, path
                    assert await r.read() == thumbs[f"{prefix}/{key}"]
