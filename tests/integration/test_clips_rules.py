"""Clip rules without media (issue 13): a clip's visibility is its source's (public, unlisted,
private video; listed or unlisted channel) on the API, the pages, the media and the listings;
who may delete; the per-user rate limit on creation; bad input on the API."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import update

from storage import clips as clip_queries
from storage import queries
from storage.models import Channel, Stream, StreamStatus
from tests.accounts import csrf_of, register
from tests.conftest import make_channel, running_server


async def _video(server, channel_id: int, visibility: str) -> Stream:
    now = datetime.now(UTC)
    async with server.db.session() as db:
        stream = await queries.start_stream(db, channel_id, now, title=f"{visibility} video")
        stream = await queries.end_stream(db, stream.id, now, StreamStatus.ARCHIVED)
        stream.visibility = visibility
        stream.vod_available = True
        stream.vod_duration_seconds = 60.0
        stream.vod_path = f"streams/{stream.id}/master.m3u8"
        await db.commit()
        return stream


async def _clip(server, channel_id: int, stream_id: int, clipper_id: int, title: str) -> str:
    async with server.db.session() as db:
        clip = await clip_queries.create(
            db,
            channel_id=channel_id,
            stream_id=stream_id,
            clipper_id=clipper_id,
            title=title,
            source="vod",
            start=1.0,
            end=5.0,
            status="ready",
        )
        await clip_queries.update_fields(db, clip.id, published_at=datetime.now(UTC))
        await db.commit()
        return clip.public_id


@pytest.fixture
def rules_env(settings_env):
    return {
        **settings_env,
        "AETHEX_CLIPS__RATE_LIMIT": "3",
        "AETHEX_CLIPS__DRAFT_HOURS": "0.0005",
        "AETHEX_CLIPS__PRUNE_INTERVAL": "0.2",
    }


async def test_visibility_deletion_and_rate_limit(rules_env) -> None:
    async with running_server(rules_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with (
            await register(base, "root") as _admin,
            await register(base, "olive") as owner,
            await register(base, "vic") as viewer,
            aiohttp.ClientSession(base) as anon,
        ):
            channel_id, _ = await make_channel(server, "olive-ch", "olive")
            async with server.db.session() as db:
                olive = await queries.get_user_by_username(db, "olive")
                vic = await queries.get_user_by_username(db, "vic")
                assert olive and vic
            public = await _video(server, channel_id, "public")
            unlisted = await _video(server, channel_id, "unlisted")
            private = await _video(server, channel_id, "private")
            c_pub = await _clip(server, channel_id, public.id, olive.id, "pub")
            c_unl = await _clip(server, channel_id, unlisted.id, vic.id, "unl")
            c_priv = await _clip(server, channel_id, private.id, olive.id, "priv")

            async def status(http: aiohttp.ClientSession, path: str) -> int:
                async with http.get(path) as r:
                    return r.status

            async def visibility(clip_id: str) -> str:
                async with owner.get(f"/api/clips/{clip_id}") as r:
                    return (await r.json())["visibility"]

            assert await visibility(c_pub) == "public"
            assert await visibility(c_unl) == "unlisted"
            assert await visibility(c_priv) == "private"
            # Unlisted: by its link, for anyone; private: its owner (and admins) only.
            for path in ("/api/clips/{}", "/clips/{}", "/embed/clips/{}"):
                assert await status(anon, path.format(c_unl)) == 200
                assert await status(anon, path.format(c_priv)) == 404
                assert await status(viewer, path.format(c_priv)) == 404
                assert await status(owner, path.format(c_priv)) == 200
            assert await status(anon, f"/clips/{c_priv}/media/out/clip.mp4") == 404
            assert await status(anon, f"/clips/{c_pub}/media/out/../../../aethex.db") == 404
            assert await status(anon, "/api/clips/nope") == 404

            async def listed() -> list[str]:
                async with anon.get("/api/channels/olive-ch/clips?period=all") as r:
                    assert r.status == 200
                    return [c["id"] for c in (await r.json())["clips"]]

            assert await listed() == [c_pub]
            async with viewer.get(f"/videos/{public.id}") as r:
                assert 'id="clip-vod-form"' not in await r.text()  # VOD clips not allowed
            async with owner.get(f"/videos/{public.id}") as r:
                assert 'id="clip-vod-form"' in await r.text()
            # The channel turns unlisted: its clips follow.
            async with server.db.session() as db:
                await db.execute(
                    update(Channel).where(Channel.id == channel_id).values(is_public=False)
                )
                await db.commit()
            assert await visibility(c_pub) == "unlisted"
            assert await listed() == []
            async with anon.get(f"/clips/{c_pub}") as r:
                page = await r.text()
                assert r.status == 200 and '<meta name="robots" content="noindex">' in page
            async with server.db.session() as db:
                await db.execute(
                    update(Channel)
                    .where(Channel.id == channel_id)
                    .values(is_public=True, allow_vod_clips=True)
                )
                await db.commit()

            # The video page's clip form: viewers get it once the channel allows VOD clips.
            async def has_form(http: aiohttp.ClientSession) -> bool:
                async with http.get(f"/videos/{public.id}") as r:
                    assert r.status == 200
                    return 'id="clip-vod-form"' in await r.text()

            assert await has_form(owner) and await has_form(viewer)
            assert not await has_form(anon)

            vh = {"X-CSRF-Token": await csrf_of(viewer, base)}
            oh = {"X-CSRF-Token": await csrf_of(owner, base)}
            # Clipping a private video: as if it did not exist, for a viewer.
            async with viewer.post(
                f"/api/videos/{private.public_id}/clips", json={"start": 1, "end": 3}, headers=vh
            ) as r:
                assert r.status == 404
            async with anon.post(
                f"/api/videos/{public.id}/clips", json={"start": 1, "end": 3}
            ) as r:
                assert r.status == 401
            for bad in ({"start": 3, "end": 1}, {"start": 1}, {"start": 0, "end": 61}, [1]):
                async with viewer.post(f"/api/videos/{public.id}/clips", json=bad, headers=vh) as r:
                    assert r.status == 400, bad
            # Rate limit: vic made one clip (c_unl); two more, then 429 (with Retry-After).
            for _ in range(2):
                async with viewer.post(
                    f"/api/videos/{public.id}/clips", json={"start": 1, "end": 3}, headers=vh
                ) as r:
                    assert r.status == 202, await r.text()
            async with viewer.post(
                f"/api/videos/{public.id}/clips", json={"start": 1, "end": 3}, headers=vh
            ) as r:
                assert r.status == 429 and "Retry-After" in r.headers
            # Others are not limited by vic's clips.
            async with owner.post(
                f"/api/videos/{public.id}/clips", json={"start": 1, "end": 3}, headers=oh
            ) as r:
                assert r.status == 202

            # Deletion: the clipper may delete their clip; a viewer may not delete another's.
            async with viewer.delete(f"/api/clips/{c_priv}", headers=vh) as r:
                assert r.status == 404  # cannot even see it
            async with viewer.delete(f"/api/clips/{c_unl}", headers=vh) as r:
                assert r.status == 200
            assert await status(anon, f"/api/clips/{c_unl}") == 404
            async with owner.delete(f"/api/clips/{c_pub}", headers=oh) as r:
                assert r.status == 200
            async with owner.delete(f"/api/clips/{c_pub}", headers=oh) as r:
                assert r.status == 404


async def test_unpublished_drafts_are_removed(rules_env) -> None:
    """A draft older than clips.draft_hours loses its files and is marked deleted."""
    async with running_server(rules_env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with await register(base, "olive") as owner:
            channel_id, _ = await make_channel(server, "olive-ch", "olive")
            async with server.db.session() as db:
                olive = await queries.get_user_by_username(db, "olive")
                assert olive
                clip = await clip_queries.create(
                    db,
                    channel_id=channel_id,
                    stream_id=None,
                    clipper_id=olive.id,
                    title="draft",
                    source="live",
                    start=0.0,
                    end=5.0,
                    status="draft",
                )
                await db.commit()
            files = server.settings.data_dir / "clips" / clip.public_id / "draft"
            files.mkdir(parents=True)
            (files / "master.m3u8").write_text("#EXTM3U\n")
            deadline = time.monotonic() + 30
            while files.exists():
                assert time.monotonic() < deadline, "the stale draft was never removed"
                await asyncio.sleep(0.1)
            async with owner.get(f"/api/clips/{clip.public_id}") as r:
                assert r.status == 404
