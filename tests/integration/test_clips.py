"""Clips (issue 13) end to end: a real ffmpeg publishes, a viewer clips the live stream from
the DVR buffer, trims and publishes the draft; the owner clips the archived video; both come
out frame-accurate and play in ffmpeg/ffprobe. Pages carry Open Graph tags, views count once
per viewer, deletion and visibility follow their rules, and creation is rate limited."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
from sqlalchemy import select

from storage import chat as chat_queries
from storage import queries
from storage.models import Stream, StreamStatus
from tests.accounts import csrf_of, register
from tests.conftest import make_channel, make_source, push, rtmp_url, running_server, transcoding

FRAME = 1 / 30


def ffprobe_json(path: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            shutil.which("ffprobe") or "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            path,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def decodes_cleanly(path: str) -> None:
    done = subprocess.run(
        [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-i", path, "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def check_clip_file(path: Path, seconds: float) -> None:
    probe = ffprobe_json(str(path))
    video = next(s for s in probe["streams"] if s["codec_type"] == "video")
    assert any(s["codec_type"] == "audio" for s in probe["streams"])
    frames = int(video["nb_read_frames"])
    assert abs(frames * FRAME - seconds) <= FRAME + 1e-6, (frames, seconds)
    assert abs(float(video["duration"]) - seconds) <= FRAME + 1e-3, video["duration"]
    decodes_cleanly(str(path))
    # The first frame decodes and is the first thing shown.
    with av.open(str(path)) as container:
        first = next(container.decode(video=0))
        assert first.time is not None and abs(first.time) < 1e-6, first.time


def video_packets(path: Path) -> list[tuple[float, bytes]]:
    """(pts seconds, bytes) of every video packet, in decode order."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [
            (float(p.pts * p.time_base), bytes(p))
            for p in container.demux(stream)
            if p.pts is not None and p.size
        ]


def recording_as_one_file(rendition: Path, out: Path) -> Path:
    """A recorded rendition's init section and segments, in playlist order, as one fMP4."""
    parts = []
    for line in (rendition / "index.m3u8").read_text().splitlines():
        m = re.match(r'#EXT-X-MAP:URI="([^"]+)"', line)
        if m:
            parts.append(m.group(1))
        elif line and not line.startswith("#"):
            parts.append(line)
    with out.open("wb") as whole:
        for name in parts:
            whole.write((rendition / name).read_bytes())
    return out


def check_copied_middle(clip_mp4: Path, recording: Path, tmp_path: Path) -> tuple[int, int]:
    """The clip's copied GOPs are the recording's packets byte for byte: the packets the clip
    shares with the source's best-matching rendition are one run, the same run in the source,
    at one constant time offset; only the edges differ (re-encoded). Returns the run's length
    and the clip's number of video packets."""
    clip = video_packets(clip_mp4)
    best: list[tuple[int, int]] = []
    for rendition in sorted(p for p in recording.iterdir() if (p / "index.m3u8").is_file()):
        source = video_packets(recording_as_one_file(rendition, tmp_path / f"{rendition.name}.mp4"))
        index = {data: i for i, (_, data) in enumerate(source)}
        shared = [(k, index[data]) for k, (_, data) in enumerate(clip) if data in index]
        if len(shared) > len(best):
            best, best_source = shared, source
    assert len(best) >= 30, f"no whole GOP copied ({len(best)} packets shared)"
    clip_run = [k for k, _ in best]
    source_run = [i for _, i in best]
    assert clip_run == list(range(clip_run[0], clip_run[0] + len(best))), clip_run
    assert source_run == list(range(source_run[0], source_run[0] + len(best))), source_run
    offsets = {round(best_source[i][0] - clip[k][0], 3) for k, i in best}
    assert len(offsets) == 1, offsets
    return len(best), len(clip)


async def wait_status(http: aiohttp.ClientSession, clip_id: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        async with http.get(f"/api/clips/{clip_id}") as r:
            assert r.status == 200, await r.text()
            clip = await r.json()
        if clip["status"] == want:
            return clip
        assert clip["status"] in ("processing", "draft"), clip
        assert time.monotonic() < deadline, clip
        await asyncio.sleep(0.2)


async def fetch_to(http: aiohttp.ClientSession, url: str, path: Path) -> None:
    async with http.get(url) as r:
        assert r.status == 200, url
        path.write_bytes(await r.read())


def meta(html: str, name: str) -> str | None:
    m = re.search(rf'<meta (?:property|name)="{re.escape(name)}" content="([^"]*)"', html)
    return m.group(1) if m else None


async def test_clip_live_then_vod(settings_env, tmp_path) -> None:
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=14, gop=30)
    env = {**transcoding(settings_env), "AETHEX_RECORDING__FSYNC": "false"}
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with (
            await register(base, "root") as _admin,
            await register(base, "olive") as owner,
            await register(base, "vic") as viewer,
            await register(base, "mona") as mod,
            aiohttp.ClientSession(base) as anon,
        ):
            channel_id, key = await make_channel(server, "olive-live", "olive")
            async with server.db.session() as db:
                olive = await queries.get_user_by_username(db, "olive")
                mona = await queries.get_user_by_username(db, "mona")
                assert olive and mona
                await chat_queries.add_moderator(db, channel_id, mona.id, olive.id)
                await db.commit()
            vh = {"X-CSRF-Token": await csrf_of(viewer, base)}
            oh = {"X-CSRF-Token": await csrf_of(owner, base)}
            mh = {"X-CSRF-Token": await csrf_of(mod, base)}

            async with viewer.post("/api/channels/olive-live/clips", json={}, headers=vh) as r:
                assert r.status == 409  # not live yet
            proc = await push(source, rtmp_url(server, key))
            # Wait until the live edge holds 6 s of segments on disk.
            deadline = time.monotonic() + 60
            while True:
                edge = server.broadcasts.edges.get("olive-live")
                if edge is not None and any(sum(s.duration for s in r.dvr) >= 6 for r in edge):
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            async with viewer.post(
                "/api/channels/olive-live/clips", json={"seconds": 6}, headers=vh
            ) as r:
                assert r.status == 201, await r.text()
                draft = await r.json()
            assert draft["status"] == "draft" and draft["source"] == "live"
            lo, hi = draft["range"]["start"], draft["range"]["end"]
            assert hi - lo >= 5.9
            # The draft is its clipper's until published.
            async with anon.get(draft["hls_url"]) as r:
                assert r.status == 404
            async with viewer.get(draft["hls_url"]) as r:
                assert r.status == 200 and "#EXTM3U" in await r.text()
            async with viewer.get(draft["edit_url"]) as r:
                assert r.status == 200 and 'id="clip-editor"' in await r.text()
            # Bad trims: 400.
            for bad in (
                {"start": lo + 3, "end": lo + 2},
                {"start": lo - 10, "end": lo + 1},
                {"start": lo + 1, "end": hi + 30},
                {"start": "x", "end": lo + 2},
            ):
                async with viewer.patch(f"/api/clips/{draft['id']}", json=bad, headers=vh) as r:
                    assert r.status == 400, (bad, await r.text())
            async with owner.patch(
                f"/api/clips/{draft['id']}", json={"title": "not yours?"}, headers=oh
            ) as r:
                assert r.status == 200  # the channel's owner may retitle
            start, end = lo + 1.5, lo + 4.5  # mid-GOP (1 s GOPs): a re-encoded head
            async with viewer.patch(
                f"/api/clips/{draft['id']}",
                json={"start": start, "end": end, "title": "Big moment", "publish": True},
                headers=vh,
            ) as r:
                assert r.status == 200, await r.text()
                assert (await r.json())["status"] == "processing"
            clip = await wait_status(viewer, draft["id"], "ready")
            assert clip["title"] == "Big moment" and clip["edit_url"] is None
            await fetch_to(anon, clip["mp4_url"], tmp_path / "live.mp4")
            check_clip_file(tmp_path / "live.mp4", 3.0)
            # ffmpeg reads the clip's HLS from this server: off the event loop.
            await asyncio.to_thread(decodes_cleanly, f"{base}{clip['hls_url']}")
            await asyncio.wait_for(proc.communicate(), 60)

            # The clip page: player, share, embed code, cards; views once per viewer.
            async with anon.get(clip["url"]) as r:
                html = await r.text()
                assert r.status == 200
                assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert meta(html, "og:video") == f"{base}{clip['mp4_url']}"
            assert meta(html, "og:image") == f"{base}{clip['thumbnail_url']}"
            assert meta(html, "og:type") == "video.other"
            assert meta(html, "twitter:player") == f"{base}/embed/clips/{clip['id']}"
            assert 'id="share-button"' in html and "embed-code" in html
            for _ in range(2):
                async with viewer.get(clip["url"]) as r:
                    assert r.status == 200
            async with anon.get(f"/api/clips/{clip['id']}") as r:
                assert (await r.json())["views"] == 2  # anon once, viewer once
            async with anon.get(f"/embed/clips/{clip['id']}") as r:
                assert r.status == 200
                assert "frame-ancestors *" in r.headers["Content-Security-Policy"]
                assert "X-Frame-Options" not in r.headers
            async with anon.get("/api/channels/olive-live/clips?period=7d") as r:
                listed = await r.json()
            assert [c["id"] for c in listed["clips"]] == [clip["id"]]
            async with anon.get("/api/channels/olive-live/clips?period=year") as r:
                assert r.status == 400

            # The archived video: its owner clips it; viewers may not (allow_vod_clips off).
            deadline = time.monotonic() + 90
            while True:
                async with server.db.session() as db:
                    row = await db.scalar(select(Stream).where(Stream.channel_id == channel_id))
                if row is not None and row.status is StreamStatus.ARCHIVED:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            url = f"/api/videos/{row.id}/clips"
            async with viewer.post(url, json={"start": 1, "end": 3}, headers=vh) as r:
                assert r.status == 403
            for bad in (
                {"start": 5, "end": 5},
                {"start": 0, "end": 120},
                {"start": 10, "end": 1000},
                {"start": -1, "end": 2},
            ):
                async with owner.post(url, json=bad, headers=oh) as r:
                    assert r.status == 400, (bad, await r.text())
            async with owner.post(
                url, json={"start": 2.2, "end": 4.7, "title": "From the VOD"}, headers=oh
            ) as r:
                assert r.status == 202, await r.text()
                vod_clip = await r.json()
            vod_clip = await wait_status(owner, vod_clip["id"], "ready")
            assert vod_clip["source"] == "vod"
            await fetch_to(anon, vod_clip["mp4_url"], tmp_path / "vod.mp4")
            check_clip_file(tmp_path / "vod.mp4", 2.5)
            # Both clips start mid-GOP: their heads are re-encoded, the whole GOPs after are
            # the recording's packets, byte for byte.
            recording = server.settings.data_dir / "streams" / str(row.id)
            for name in ("live.mp4", "vod.mp4"):
                copied, frames = check_copied_middle(tmp_path / name, recording, tmp_path)
                assert 0 < copied < frames, (name, copied, frames)

            # Deletion: not a stranger; a moderator may.
            async with viewer.delete(f"/api/clips/{vod_clip['id']}", headers=vh) as r:
                assert r.status == 403
            async with mod.delete(f"/api/clips/{vod_clip['id']}", headers=mh) as r:
                assert r.status == 200
            async with anon.get(f"/api/clips/{vod_clip['id']}") as r:
                assert r.status == 404
            async with anon.get(vod_clip["mp4_url"]) as r:
                assert r.status == 404
            assert not (server.settings.data_dir / "clips" / vod_clip["id"]).exists()


async def test_live_clip_with_recording_off_outlives_the_stream(settings_env, tmp_path) -> None:
    """Recording off and a 3-segment live window (6 s): the DVR buffer still keeps 10 s on
    disk for the Clip button, and the draft's own copy survives the stream's files, which
    are removed soon after it ends; the draft is then published and cut."""
    source = make_source(tmp_path / "src.flv", size="320x180", seconds=14, gop=30)
    env = {
        **transcoding(settings_env),
        "AETHEX_RECORDING__ENABLED": "false",
        "AETHEX_HLS__LIVE_SEGMENTS": "3",
        "AETHEX_HLS__RECONNECT_GRACE": "1",
        "AETHEX_CLIPS__LIVE_SECONDS": "10",
        "AETHEX_CLIPS__DVR_SECONDS": "16",
    }
    async with running_server(env) as server:
        base = f"http://127.0.0.1:{server.http_port}"
        async with await register(base, "vic") as viewer:
            _, key = await make_channel(server, "no-rec", "olive")
            vh = {"X-CSRF-Token": await csrf_of(viewer, base)}
            proc = await push(source, rtmp_url(server, key))
            deadline = time.monotonic() + 60
            while True:
                edge = server.broadcasts.edges.get("no-rec")
                if edge is not None and any(sum(s.duration for s in r.dvr) >= 10 for r in edge):
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.2)
            stream_dir = server.settings.data_dir / "streams" / str(edge.stream_id)
            async with viewer.post("/api/channels/no-rec/clips", json={}, headers=vh) as r:
                assert r.status == 201, await r.text()
                draft = await r.json()
            lo, hi = draft["range"]["start"], draft["range"]["end"]
            assert hi - lo >= 9.9  # more than the 6 s window
            await asyncio.wait_for(proc.communicate(), 60)
            deadline = time.monotonic() + 60
            while stream_dir.exists():  # recording off: the stream's files go
                assert time.monotonic() < deadline, "the stream's files stayed"
                await asyncio.sleep(0.2)
            async with viewer.patch(
                f"/api/clips/{draft['id']}",
                json={"start": lo + 0.5, "end": lo + 9.5, "publish": True},
                headers=vh,
            ) as r:
                assert r.status == 200, await r.text()
            clip = await wait_status(viewer, draft["id"], "ready")
            await fetch_to(viewer, clip["mp4_url"], tmp_path / "clip.mp4")
            check_clip_file(tmp_path / "clip.mp4", 9.0)
            assert not (server.settings.data_dir / "clips" / clip["id"] / "draft").exists()
