"""Real-time chat: the ``/ws/chat/{slug}`` WebSocket, its JSON API and moderation pages.

``setup(app)`` creates the process's ``ChatService`` (rooms, message writer, bus) under
``CHAT_KEY``, starts it with the app and stops it before the database closes. Other areas
reach the service only through ``CHAT_KEY`` (``webapp.keys``) and ``identity.account_changed``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from ..keys import CHAT_KEY, COUNTS_KEY, DB_KEY, METRICS_KEY, REGISTRY_KEY, SETTINGS_KEY
from . import api, pages, socket
from .service import ChatService
from .typing import TypingIndicators


def setup(app: web.Application) -> ChatService:
    service = ChatService(
        app[SETTINGS_KEY], app[DB_KEY], app[REGISTRY_KEY], app[METRICS_KEY], app.get(COUNTS_KEY)
    )
    app[CHAT_KEY] = service
    typing = TypingIndicators(service)  # typing:start frames, typing:config on join
    typing.install()
    app.router.add_get("/ws/chat/{slug}", socket.chat_socket, name="chat-socket")
    api.setup_routes(app)
    pages.setup_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()
        await typing.stop()

    async def shutdown(app: web.Application) -> None:
        # Close sockets before aiohttp waits on open handlers at shutdown.
        await service.stop()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(shutdown)
    return service


__all__ = ["CHAT_KEY", "ChatService", "setup"]
