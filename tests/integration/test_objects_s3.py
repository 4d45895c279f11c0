"""S3 mode end to end (issue 15, test 6's storage half), against a real SeaweedFS.

A real ffmpeg publishes a few seconds; the recording ends up in the bucket (every segment,
init section, media and master playlist, the thumbnail); the server's media on disk is then
removed (the database kept) and a restarted server still plays the VOD from the bucket,
byte for byte. A store killed mid-recording is an error counted and retried, never a broken
stream.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path

import aiohttp
import pytest
from seaweed import BUCKET, SeaweedFS, make_s3_settings, seaweed  # noqa: F401

from tests.accounts import csrf_of, login, register
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding
from tests.integration.test_clips import wait_status
from tests.integration.test_videos import wait_archived
from tests.s3_recordings import (
    assert_bucket_matches_disk,
    own_seaweed,
    recording_in_bucket,
    renditions,
    until,
)
from webapp.sharing import live_thumbnail_url

pytestmark = pytest.mark.integration


async def test_vod_in_the_bucket_plays_after_the_disk_is_wiped(
    settings_env: dict[str, str],
    tmp_path: Path,
    seaweed: SeaweedFS,  # noqa: F811
) -> None:
    prefix = f"vod-{tmp_path.name}"
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=3, bitrate="300k")
    env = {
        **transcoding(settings_env),
        "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
        **make_s3_settings(seaweed, prefix=prefix),
    }
    data_dir = Path(env["AETHEX_DATA_DIR"])
    async with running_server(env) as server:
        _, key = await make_channel(server, "s3-live", "alice")
        proc = await push(source, rtmp_url(server, key))
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, err.decode()
        row = await wait_archived(server)
        base = f"{prefix}/streams/{row.id}"
        stored = await recording_in_bucket(seaweed, base, "the master playlist in the bucket")
        local = data_dir / "streams" / str(row.id)
        master = (local / "master.m3u8").read_bytes()
        names = assert_bucket_matches_disk(stored, base, local)
        assert any(n.endswith(".m4s") for n in names) and any(n.endswith(".mp4") for n in names)
        assert row.thumbnail_path is not None
        thumbs = await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/{row.thumbnail_path}")
        assert (
            thumbs[f"{prefix}/{row.thumbnail_path}"] == (data_dir / row.thumbnail_path).read_bytes()
        )
        previews = f"{base}/previews/previews.vtt"

        async def previews_uploaded() -> dict[str, bytes] | None:
            found = await asyncio.to_thread(seaweed.objects, BUCKET, previews)
            return found or None

        await until("the scrub previews in the bucket", previews_uploaded)
        pending = server.metrics.sample("aethex_object_uploads_pending")
        assert server.metrics.sample("aethex_object_store_errors_total", op="put") == 0
    assert pending == 0

    # The node loses its media (not its database): the VOD plays from the bucket. What it
    # copies back for a download or a clip is a cache, here kept only while in use.
    shutil.rmtree(data_dir / "streams")
    shutil.rmtree(data_dir / "thumbnails")
    copies = {"AETHEX_OBJECTS__COPIES_MAX_MB": "0", "AETHEX_OBJECTS__COPIES_SWEEP": "1"}
    async with running_server({**env, **copies}) as server, aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{server.http_port}/vod/{row.id}"
        async with http.get(f"{url}/master.m3u8") as r:
            assert r.status == 200
            assert await r.read() == stored[f"{base}/master.m3u8"]
        for name in names:
            async with http.get(f"{url}/{name}") as r:
                assert r.status == 200, name
                assert await r.read() == stored[f"{base}/{name}"], name
        segment = next(n for n in names if n.endswith(".m4s"))
        async with http.get(f"{url}/{segment}", headers={"Range": "bytes=10-99"}) as r:
            assert r.status == 206
            assert await r.read() == stored[f"{base}/{segment}"][10:100]
        async with http.get(f"{url}/{renditions(master)[0]}/seg999999.m4s") as r:
            assert r.status == 404
        assert not (data_dir / "streams" / str(row.id)).exists()  # nothing came back to disk
        # The past broadcast's thumbnail and its scrub previews come from the bucket too.
        site = f"http://127.0.0.1:{server.http_port}"
        async with http.get(f"{site}/thumbnails/streams/{row.id}.jpg") as r:
            assert r.status == 200
            assert await r.read() == thumbs[f"{prefix}/{row.thumbnail_path}"]
        async with http.get(f"{site}/videos/{row.id}/previews/previews.vtt") as r:
            assert r.status == 200
            vtt = await r.text()
        sprite = re.search(r"(sprite-\d+\.jpg)#xywh", vtt)
        assert sprite is not None
        async with http.get(f"{site}/videos/{row.id}/previews/{sprite.group(1)}") as r:
            assert r.status == 200 and (await r.read())[:2] == b"\xff\xd8"

        owner = await login(site, "alice", "pw-123456789")
        try:
            csrf = {"X-CSRF-Token": await csrf_of(owner, site)}
            # The MP4 download remuxes the recording it copies back from the bucket.
            async with owner.get(f"{site}/videos/{row.id}/download") as r:
                mp4 = await r.read()
                assert r.status == 200 and mp4[4:8] == b"ftyp"
            assert len(mp4) == int(r.headers["Content-Length"]) > 1000
            copy = data_dir / "streams" / str(row.id)

            async def evicted(path: Path = copy) -> bool:
                return not await asyncio.to_thread(path.exists)

            await until("the recording's copy evicted once unused", evicted, 30)
            # A clip of the VOD is cut, lands in the bucket, and outlives this node's copy.
            async with owner.post(
                f"{site}/api/videos/{row.id}/clips", json={"start": 0.5, "end": 2.5}, headers=csrf
            ) as r:
                assert r.status == 202, await r.text()
                clip = await r.json()
            clip = await wait_status(owner, clip["id"], "ready")
            clip_prefix = f"{prefix}/clips/{clip['id']}/out/"
            in_bucket = await asyncio.to_thread(seaweed.objects, BUCKET, clip_prefix)
            assert f"{clip_prefix}clip.json" in in_bucket
            assert any(k.endswith(".mp4") for k in in_bucket)
            clip_copy = data_dir / "clips" / clip["id"] / "out"
            shutil.rmtree(data_dir / "clips")
            async with owner.get(f"{site}{clip['mp4_url']}") as r:
                assert r.status == 200
                assert (
                    await r.read() == in_bucket[f"{clip_prefix}{clip['mp4_url'].split('/out/')[1]}"]
                )
            await until("the clip's copy evicted", lambda: evicted(clip_copy), 30)
            async with http.get(f"{site}/clips/{clip['id']}") as r:
                assert r.status == 200
            async with owner.delete(f"{site}/api/clips/{clip['id']}", headers=csrf) as r:
                assert r.status == 200
            assert await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/clips/") == {}
        finally:
            await owner.close()

    # With objects.public_url, VOD media is a redirect to the bucket (playlists stay ours).
    public = f"{seaweed.endpoint}/{BUCKET}"
    shutil.rmtree(data_dir / "streams", ignore_errors=True)  # no copy left behind
    env = {**env, **make_s3_settings(seaweed, prefix=prefix, public_url=public)}
    async with running_server(env) as server, aiohttp.ClientSession() as http:
        site = f"http://127.0.0.1:{server.http_port}"
        url = f"{site}/vod/{row.id}"
        async with http.get(f"{url}/master.m3u8") as r:
            assert r.status == 200
        segment = next(n for n in names if n.endswith(".m4s"))
        async with http.get(f"{url}/{segment}", allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == f"{public}/{base}/{segment}"

        # Deleting the video deletes its objects.
        owner = await login(site, "alice", "pw-123456789")
        try:
            csrf = {"X-CSRF-Token": await csrf_of(owner, site)}
            async with owner.delete(f"{site}/api/videos/{row.id}", headers=csrf) as r:
                assert r.status == 200
        finally:
            await owner.close()
        assert await asyncio.to_thread(seaweed.objects, BUCKET, f"{base}/") == {}
        # The past broadcast's thumbnail goes with it (the channel's live one stays).
        assert (
            await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/thumbnails/streams/") == {}
        )

        async def gone() -> bool:  # once the link cache (hls.VOD_LINK_SECONDS) lets go
            async with http.get(f"{url}/master.m3u8") as r:
                return r.status == 404

        await until("the deleted video's VOD to answer 404", gone)


async def test_an_avatar_lands_in_the_bucket_and_any_node_serves_it(
    settings_env: dict[str, str],
    tmp_path: Path,
    seaweed: SeaweedFS,  # noqa: F811
) -> None:
    from tests.integration.test_profile_uploads import form_with, image_bytes

    prefix = f"up-{tmp_path.name}"
    env = {**settings_env, **make_s3_settings(seaweed, prefix=prefix)}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with await register(base, "carol") as http:
            headers = {"X-CSRF-Token": await csrf_of(http, base)}
            data = image_bytes((64, 64), "PNG")
            async with http.post(
                f"{base}/api/upload/avatar", data=form_with(data), headers=headers
            ) as r:
                assert r.status == 200, await r.text()
                url = (await r.json())["url"]
            name = url.rsplit("/", 1)[1]
            stored = await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/uploads/")
            assert set(stored) == {f"{prefix}/uploads/{name}"}
            local = server.settings.data_dir / "uploads" / name
            assert stored[f"{prefix}/uploads/{name}"] == local.read_bytes()
            local.unlink()  # this node loses it: the bucket still serves it
            async with http.get(f"{base}{url}") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("image/")
                assert await r.read() == stored[f"{prefix}/uploads/{name}"]
            # A new avatar replaces the old one in the bucket too.
            async with http.post(
                f"{base}/api/upload/avatar",
                data=form_with(image_bytes((80, 80), "PNG")),
                headers=headers,
            ) as r:
                assert r.status == 200
                second = (await r.json())["url"].rsplit("/", 1)[1]

            async def replaced() -> bool:
                now = await asyncio.to_thread(seaweed.objects, BUCKET, f"{prefix}/uploads/")
                return set(now) == {f"{prefix}/uploads/{second}"}

            await until("the old avatar gone from the bucket", replaced)
            async with http.get(f"{base}{url}") as r:
                assert r.status == 404


async def test_a_channel_thumbnail_from_another_origin_wins_over_a_stale_copy(
    settings_env: dict[str, str],
    tmp_path: Path,
    seaweed: SeaweedFS,  # noqa: F811
) -> None:
    """A node keeps the live thumbnail of a channel it once transcoded; the channel went live
    on another origin since, which sends its thumbnails to the bucket. This node serves (and
    links) the bucket's, not its stale copy."""
    prefix = f"thumb-{tmp_path.name}"
    env = {**settings_env, **make_s3_settings(seaweed, prefix=prefix)}
    async with running_server(env) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        old = server.broadcasts.thumbnail_path("moved")
        old.parent.mkdir(parents=True, exist_ok=True)
        old.write_bytes(b"\xff\xd8 the frame of the broadcast here \xff\xd9")
        hour_ago = time.time() - 3600
        os.utime(old, (hour_ago, hour_ago))
        current = b"\xff\xd8 the frame the other origin sent \xff\xd9"
        await server.objects.put_bytes("thumbnails/moved.jpg", current, "image/jpeg")
        async with http.get(f"{base}/thumbnails/moved.jpg") as r:
            assert r.status == 200 and await r.read() == current
        # Linked versioned by the refresh period, as a web node links it, not by the old file.
        app = server._runner.app
        period = server.settings.transcode.thumbnail_interval
        version = int(live_thumbnail_url(app, "moved").rsplit("=", 1)[1])
        assert version % period == 0 and version > time.time() - 2 * period
        # The bucket lacks it (an upload not made yet): this node's copy is better than none.
        async with http.get(f"{base}/thumbnails/{'x' * 3}.jpg") as r:
            assert r.status == 404
        old.rename(old.with_name("only-here.jpg"))
        async with http.get(f"{base}/thumbnails/only-here.jpg") as r:
            assert r.status == 200 and b"broadcast here" in await r.read()


async def test_a_store_that_goes_down_mid_recording_is_retried_not_fatal(
    settings_env: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SeaweedFS is SIGKILLed while a stream records: uploads fail, are logged and counted,
    the stream goes on and archives; once the store is back the retries complete the VOD."""
    with own_seaweed(tmp_path / "weed") as weed:
        source = make_source(tmp_path / "src.flv", size="320x180", seconds=8, bitrate="300k")
        env = {
            **transcoding(settings_env),
            "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
            **make_s3_settings(weed),
            "AETHEX_OBJECTS__TIMEOUT": "2",
        }
        async with running_server(env) as server:
            _, key = await make_channel(server, "down-live", "dana")
            proc = await push(source, rtmp_url(server, key))

            async def first_segment() -> bool:
                objects = await asyncio.to_thread(weed.objects, BUCKET, "streams/")
                return any(k.endswith(".m4s") for k in objects)

            await until("a first segment in the bucket", first_segment)
            weed.stop()  # SIGKILL, mid-recording

            async def failed_puts() -> float | None:
                return server.metrics.sample("aethex_object_store_errors_total", op="put")

            await until("a failed upload counted", failed_puts)
            assert proc.returncode is None  # the publisher is still sending
            weed.start()  # back on the same ports with the same data
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            row = await wait_archived(server)
            base = f"streams/{row.id}"
            what = "the whole VOD in the bucket after the outage"
            stored = await recording_in_bucket(weed, base, what)
            local = server.settings.data_dir / base
            assert_bucket_matches_disk(stored, base, local, master_too=False)
            assert server.metrics.sample("aethex_object_uploads_pending") == 0
        assert any("retrying" in r.getMessage() for r in caplog.records)
        assert not any(r.exc_info for r in caplog.records if r.name.startswith("mediaserver"))


async def test_a_recording_the_store_missed_is_sent_at_the_next_start(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    """The store is down for a whole recording, longer than objects.retry_for: the uploads are
    given up (counted; the VOD plays from this disk). At the next start, with the store back,
    the recording goes to the bucket, playlists after segments."""
    with own_seaweed(tmp_path / "weed") as weed:
        weed.stop()
        source = make_source(tmp_path / "src.flv", size="320x180", seconds=3, bitrate="300k")
        env = {
            **transcoding(settings_env),
            "AETHEX_TRANSCODE__PASSTHROUGH": "auto",
            **make_s3_settings(weed),
            "AETHEX_OBJECTS__TIMEOUT": "1",
            "AETHEX_OBJECTS__RETRY_FOR": "1",
        }
        async with running_server(env) as server:
            _, key = await make_channel(server, "late-live", "fay")
            proc = await push(source, rtmp_url(server, key))
            _, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode == 0, err.decode()
            row = await wait_archived(server)

            async def settled() -> bool:
                return server.metrics.sample("aethex_object_uploads_pending") == 0

            await until("the uploads given up", settled)
            gave_up = server.metrics.sample("aethex_object_uploads_dropped_total", reason="gave_up")
            assert gave_up and gave_up > 0
        weed.start()
        env.pop("AETHEX_OBJECTS__RETRY_FOR")  # a store just back may need a few retries
        async with running_server(env):
            base = f"streams/{row.id}"
            stored = await recording_in_bucket(weed, base, "the recording sent at start")
            assert_bucket_matches_disk(stored, base, Path(env["AETHEX_DATA_DIR"]) / base)
