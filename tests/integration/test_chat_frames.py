"""Refused chat frames are cheap and bounded: a non-moderator's moderation frames are refused
from memory (no database query), and every socket has a frame budget for all frame types."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from chat_support import base_url, join, make_chat_channel, make_user
from sqlalchemy import event

pytestmark = pytest.mark.integration

BUDGET = 40


@pytest.fixture
def budget_env(settings_env: dict[str, str]) -> dict[str, str]:
    return {
        **settings_env,
        "AETHEX_CHAT__FRAME_BUDGET": str(BUDGET),
        # One window for the whole test: what is counted does not depend on its speed.
        "AETHEX_CHAT__FRAME_WINDOW": "3600",
        # No periodic viewer-count queries while queries are being counted.
        "AETHEX_HLS__VIEWER_UPDATE_INTERVAL": "3600",
    }


class QueryLog:
    """The SQL statements the server's engine runs for requests and sockets (tasks that aiohttp
    runs a handler in), from the moment it is attached. The server's background writers
    (the chat message group commit, history, analytics...) may run a statement on the same
    engine at any time; they are not what is counted."""

    def __init__(self, engine: Any) -> None:
        self.statements: list[str] = []
        self._engine = engine.sync_engine
        event.listen(self._engine, "before_cursor_execute", self._seen)

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        task = asyncio.current_task()
        code = getattr(task.get_coro() if task else None, "cr_code", None)
        if code is not None and code.co_filename.endswith("web_protocol.py"):
            self.statements.append(statement)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._seen)


async def test_refused_deletes_cost_no_query_and_hit_the_budget(budget_env) -> None:
    from conftest import running_server

    async with running_server(budget_env) as server:
        await make_chat_channel(server, "owner", "cheap")
        _, author = await make_user(server, "author")
        _, pest = await make_user(server, "pest")
        base = base_url(server)
        async with aiohttp.ClientSession() as http:
            a = await join(http, base, "cheap", author)
            await a.say("delete me if you can")
            target = await a.next("chat:message")
            p = await join(http, base, "cheap", pest)
            # From here on the server may only answer from memory: the channel's chat state
            # is cached since the joins, and the pest's role is known to its socket.
            log = QueryLog(server.db.engine)
            try:
                for _ in range(BUDGET):
                    await p.send({"type": "chat:delete", "id": target["id"]})
                for _ in range(BUDGET):
                    assert (await p.next("chat:error"))["code"] == "forbidden"
                assert log.statements == []
            finally:
                log.close()
            # Over the budget: one chat:error, then frames are ignored, of any type.
            await p.send({"type": "chat:delete", "id": target["id"]})
            err = await p.next("chat:error")
            assert err["code"] == "frame_budget" and err["retry_after"] > 0
            for _ in range(BUDGET - 2):
                await p.send({"type": "chat:send", "content": "ignored"})
            await p.ws.send_bytes(b"\x00")  # the budget's second helping, all ignored
            assert [e for e in await p.quiet(0.3) if e.get("type") == "chat:error"] == []
            # Twice the budget within the window: the socket is closed (policy).
            await p.send({"type": "nonsense"})
            assert await p.closed() == 1008
            assert p.events[-1] == {
                "type": "chat:error",
                "code": "frame_budget",
                "message": "too many frames: connection closed",
            }
            assert all(m["content"] != "ignored" for m in a.messages())
            # The room goes on for everyone else.
            await a.say("still here")
            assert await a.next("chat:message", content="still here")
            async with http.get(f"{base}/metrics") as r:
                text = await r.text()
            assert 'aethex_chat_closed_sockets_total{reason="frame_budget"} 1.0' in text
            await a.ws.close()
