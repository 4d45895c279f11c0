"""The room's extension points (issue 16): a module registers a client frame type and a join
hook on the ChatService; its frames reach the handler with the sender checked, its events reach
every socket through the bus, and unregistered types are still refused."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from chat_support import base_url, join, make_chat_channel, make_user

from webapp.keys import CHAT_KEY

pytestmark = pytest.mark.integration


async def test_registered_frame_and_join_hook(settings_env) -> None:
    from conftest import running_server

    async with running_server(settings_env) as server:
        service = server._runner.app[CHAT_KEY]
        seen: list[tuple[str, int, dict[str, Any]]] = []

        async def wave(svc, state, client, actor, frame) -> dict[str, Any] | None:
            if frame.get("size") == "huge":
                return {"type": "chat:error", "code": "too_big", "message": "no"}
            seen.append((state.slug, actor.id, frame))
            await svc.publish(state.slug, [{"type": "test:wave", "by": actor.username}])
            return None

        async def welcome(svc, state, client) -> list[dict[str, Any]]:
            return [{"type": "test:welcome", "slug": state.slug}]

        service.register_frame("test:wave", wave)
        service.join_hooks.append(welcome)
        with pytest.raises(ValueError):
            service.register_frame("test:wave", wave)
        with pytest.raises(ValueError):
            service.register_frame("chat:send", wave)

        await make_chat_channel(server, "owner", "ext")
        uid, token = await make_user(server, "waver")
        base = base_url(server)
        async with aiohttp.ClientSession() as http:
            anon = await join(http, base, "ext", None)
            await anon.next("test:welcome", slug="ext")
            w = await join(http, base, "ext", token)
            await w.next("test:welcome", slug="ext")
            await anon.send({"type": "test:wave"})
            assert (await anon.next("chat:error"))["code"] == "login_required"
            await w.send({"type": "test:wave", "size": "small"})
            assert (await anon.next("test:wave"))["by"] == "waver"
            await w.next("test:wave")
            assert seen == [("ext", uid, {"type": "test:wave", "size": "small"})]
            await w.send({"type": "test:wave", "size": "huge"})
            assert (await w.next("chat:error"))["code"] == "too_big"
            await w.send({"type": "test:unknown"})
            assert (await w.next("chat:error"))["code"] == "unknown_type"
