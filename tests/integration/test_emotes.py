"""Emotes (issue 16) on one real server: the API's permissions (admins keep the global set,
owners their channel's, anyone else 403), codes checked, the per-channel limit, bad uploads
refused with 400, every size produced (animation kept), files gone with the emote, the map in
a joining socket's first frame and its changes pushed to the room, and the follower-only
decision made by the server on each message."""

from __future__ import annotations

import io
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url, join, make_chat_channel, make_user
from PIL import Image

from webapp.emotes import SWEEP_KEY
from webapp.emotes.sets import SETS_KEY

pytestmark = pytest.mark.integration


def png(w: int = 40, h: int = 20) -> bytes:
    out = io.BytesIO()
    Image.new("RGBA", (w, h), (200, 30, 30, 255)).save(out, "PNG")
    return out.getvalue()


def animated(fmt: str, frames: int = 3) -> bytes:
    pics = [Image.new("RGBA", (32, 32), (60 * i, 200, 0, 255)) for i in range(frames)]
    out = io.BytesIO()
    pics[0].save(out, fmt, save_all=True, append_images=pics[1:], duration=80, loop=0)
    return out.getvalue()


def jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 32)).save(out, "JPEG")
    return out.getvalue()


def form(code: str, data: bytes | None, follower_only: bool = False) -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field("code", code, content_type="text/plain")  # multipart even without a file
    if data is not None:
        f.add_field("file", data, filename="e.png", content_type="application/octet-stream")
    if follower_only:
        f.add_field("follower_only", "true")
    return f


async def post(
    http: aiohttp.ClientSession, url: str, token: str, code: str, data: bytes | None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    async with http.post(url, data=form(code, data, **kw), headers=auth(token)) as r:
        return r.status, await r.json()


async def test_emotes_end_to_end(settings_env) -> None:
    from conftest import running_server

    env = {**settings_env, "AETHEX_EMOTES__CHANNEL_LIMIT": "3"}
    async with running_server(env) as server:
        base = base_url(server)
        _, admin = await make_user(server, "boss", admin=True)
        _, _, owner = await make_chat_channel(server, "owner", "emo")
        await make_chat_channel(server, "rival", "other")
        _, stranger = await make_user(server, "stranger")
        _, fan = await make_user(server, "fan")
        glob, chan = f"{base}/api/emotes", f"{base}/api/channels/emo/emotes"
        async with aiohttp.ClientSession() as http:
            anon = await join(http, base, "emo")
            first = await anon.next("emotes:map")
            assert first["global"] == [] and first["channel"] == []

            # Global set: admins only; sizes produced; codes checked.
            status, body = await post(http, glob, admin, "Kappa", png())
            assert status == 201, body
            kappa = body["emote"]
            assert kappa["scope"] == "global" and not kappa["animated"]
            for size in ("28", "56", "112"):
                async with http.get(base + kappa["urls"][size]) as r:
                    assert r.status == 200 and r.content_type == "image/png"
                    pic = Image.open(io.BytesIO(await r.read()))
                    assert pic.size == (int(size), int(size)) and pic.mode == "RGBA"
            ev = await anon.next("emotes:changed", scope="global")
            assert [e["code"] for e in ev["emotes"]] == ["Kappa"]
            assert (await post(http, glob, owner, "Nope", png()))[0] == 403
            assert (await post(http, glob, admin, "Kappa", png()))[0] == 409
            for bad in ("a", "1abc", "<img src=x>", "two words", "x" * 33, "caf\u00e9"):
                status, body = await post(http, glob, admin, bad, png())
                assert status == 400 and body["error"]["code"], (bad, body)

            # Bad uploads: 400 in the error shape, nothing stored.
            broken = png()[:60]
            for data, code in (
                (b"", "empty_file"),
                (b"not an image at all", "not_an_image"),
                (jpeg(), "not_an_image"),
                (broken, "damaged_image"),
                (None, "missing_field"),
            ):
                status, body = await post(http, chan, owner, "Broken", data)
                assert status == 400 and body["error"]["code"] == code, (code, body)
            async with http.post(chan, json={"code": "X"}, headers=auth(owner)) as r:
                assert r.status == 415

            # The channel's set: its owner; a global code may not be shadowed; limit 3.
            assert (await post(http, chan, owner, "Kappa", png()))[0] == 409
            assert (await post(http, chan, stranger, "Mine", png()))[0] == 403
            status, body = await post(http, chan, owner, "PogGif", animated("GIF"))
            assert status == 201 and body["emote"]["animated"], body
            pog = body["emote"]
            async with http.get(base + body["emote"]["urls"]["112"]) as r:
                assert r.content_type == "image/webp"
                pic = Image.open(io.BytesIO(await r.read()))
                assert pic.size == (112, 112) and pic.n_frames == 3
            webp = animated("WEBP", 2)
            status, body = await post(http, chan, owner, "Subby", webp, follower_only=True)
            assert status == 201 and body["emote"]["follower_only"], body
            subby = body["emote"]
            status, body = await post(http, chan, owner, "Third", png(8, 8))
            assert status == 201, body
            third = body["emote"]
            status, body = await post(http, chan, owner, "Fourth", png())
            assert status == 400 and "at most 3" in body["error"]["message"], body
            ev = await anon.next("emotes:changed", scope="channel")
            async with http.get(chan) as r:
                listed = await r.json()
            assert [e["code"] for e in listed["emotes"]] == ["PogGif", "Subby", "Third"]
            assert [e["code"] for e in listed["global"]] == ["Kappa"]

            # Edits and deletes: whoever may change the set; others 403.
            one = f"{glob}/{third['id']}"
            async with http.patch(one, json={"code": "Renamed"}, headers=auth(stranger)) as r:
                assert r.status == 403
            kappa_url = f"{glob}/{kappa['id']}"
            async with http.patch(kappa_url, json={"code": "Kx"}, headers=auth(owner)) as r:
                assert r.status == 403
            async with http.patch(one, json={"code": "Kappa"}, headers=auth(owner)) as r:
                assert r.status == 409
            async with http.patch(one, json={"code": "no way"}, headers=auth(owner)) as r:
                assert r.status == 400
            async with http.patch(one, json={"code": "Renamed"}, headers=auth(owner)) as r:
                assert r.status == 200 and (await r.json())["emote"]["code"] == "Renamed"
            async with http.delete(one, headers=auth(stranger)) as r:
                assert r.status == 403
            async with http.delete(one, headers=auth(owner)) as r:
                assert r.status == 204
            async with http.get(base + third["urls"]["28"]) as r:
                assert r.status == 404
            ev = await anon.next(
                "emotes:changed",
                scope="channel",
                emotes=[e for e in listed["emotes"] if e["code"] != "Third"],
            )

            # Joins read the sets from memory.
            sets = server._runner.app[SETS_KEY]
            loads = sets.loads
            again = await join(http, base, "emo")
            got = await again.next("emotes:map")
            assert [e["code"] for e in got["channel"]] == ["PogGif", "Subby"]
            assert sets.loads == loads

            # Follower-only: the server marks the messages of followers (and the owner).
            talker = await join(http, base, "emo", fan)
            await talker.say("hi Subby")
            msg = await anon.next("chat:message", content="hi Subby")
            assert "follower_emotes" not in msg
            async with http.post(f"{base}/api/channels/emo/follow", headers=auth(fan)) as r:
                assert r.status in (200, 201)
            await talker.say("now Subby")
            msg = await anon.next("chat:message", content="now Subby")
            assert msg["follower_emotes"] is True
            boss = await join(http, base, "emo", owner)
            await boss.say("mine Subby")
            assert (await anon.next("chat:message", content="mine Subby"))["follower_emotes"]
            async with http.patch(
                f"{glob}/{subby['id']}", json={"follower_only": False}, headers=auth(owner)
            ) as r:
                assert r.status == 200
            await talker.say("plain Subby")
            assert "follower_emotes" not in await anon.next("chat:message", content="plain Subby")

            # The pages: the admin's and the owner's; others refused.
            for url, token, want in (
                ("/dashboard/admin/emotes", admin, 200),
                ("/dashboard/admin/emotes", owner, 403),
                ("/dashboard/channels/emo/emotes", owner, 200),
                ("/dashboard/channels/emo/emotes", stranger, 403),
                ("/dashboard/channels/nope/emotes", owner, 404),
            ):
                async with http.get(base + url, headers=auth(token)) as r:
                    assert r.status == want, (url, r.status)
                    if want == 200:
                        assert "Add emote" in await r.text()

            # A deleted channel's emote files go at the orphan sweep's second look.
            async with http.delete(f"{base}/api/channels/emo", headers=auth(owner)) as r:
                assert r.status == 204
            sweep = server._runner.app[SWEEP_KEY]
            assert await sweep.run_once() == 0  # first seen without a row: kept for now
            assert await sweep.run_once() == 2  # PogGif and Subby
            for emote, want in ((pog, 404), (kappa, 200)):
                async with http.get(base + emote["urls"]["56"]) as r:
                    assert r.status == want


async def test_emote_sets_follow_changes_on_another_process(settings_env, redis_url) -> None:
    """Two processes on one database and Redis: a change made through one reaches the other's
    room and its copy of the sets, so a later join there starts from the new map."""
    from conftest import running_server
    from test_chat_redis import second_process

    env = {**settings_env, "AETHEX_CHAT__BUS": redis_url}
    async with running_server(env) as one:
        _, admin = await make_user(one, "boss", admin=True)
        _, _, owner = await make_chat_channel(one, "owner", "emo")
        base1 = base_url(one)
        async with second_process(env) as base2, aiohttp.ClientSession() as http:
            early = await join(http, base2, "emo")  # process two reads (empty) sets now
            assert (await early.next("emotes:map"))["channel"] == []
            status, body = await post(http, f"{base1}/api/channels/emo/emotes", owner, "Pog", png())
            assert status == 201, body
            await early.next("emotes:changed", scope="channel")
            status, body = await post(http, f"{base1}/api/emotes", admin, "Kappa", png())
            assert status == 201, body
            await early.next("emotes:changed", scope="global")
            late = await join(http, base2, "emo")
            got = await late.next("emotes:map")
            assert [e["code"] for e in got["channel"]] == ["Pog"]
            assert [e["code"] for e in got["global"]] == ["Kappa"]
            async with http.get(base2 + got["global"][0]["urls"]["112"]) as r:
                assert r.status == 200
