"""Real-time chat: the ``/ws/chat/{slug}`` WebSocket, its JSON API and moderation pages.

``setup(app)`` creates the process's ``ChatService`` (rooms, message writer, bus) under
``CHAT_KEY``, starts it with the app and stops it before the database closes.
"""

from __future__ import annotations

from typing import AsyncIterator

from aiohttp import web

from ..app import DB_KEY, METRICS_KEY, REGISTRY_KEY, SETTINGS_KEY
from .service import ChatService

CHAT_KEY = web.AppKey("chat", ChatService)


def setup(app: web.Application) -> ChatService:
    from . import api, pages, socket

    service = ChatService(app[SETTINGS_KEY], app[DB_KEY], app[REGISTRY_KEY], app[METRICS_KEY])
    app[CHAT_KEY] = service
    app.router.add_get("/ws/chat/{slug}", socket.chat_socket, name="chat-socket")
    api.setup_routes(app)
    pages.setup_routes(app)

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await service.start()
        yield
        await service.stop()

    async def shutdown(app: web.Application) -> None:
        # Close sockets before aiohttp waits on open handlers at shutdown.
        await service.stop()

    app.cleanup_ctx.append(lifetime)
    app.on_shutdown.append(shutdown)
    return service


def account_changed(app: web.Application, user_id: int) -> None:
    """Call after committing a change to a user's account, role or credentials (disable,
    promote/demote, logout, token revocation): their open chat sockets follow it on every
    process (see principal.py). Harmless when the app has no chat."""
    service = app.get(CHAT_KEY)
    if service is not None:
        service.account_changed(user_id)


__all__ = ["CHAT_KEY", "ChatService", "account_changed", "setup"]
