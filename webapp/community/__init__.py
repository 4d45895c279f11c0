"""Community channels (issue 16): a creator's persistent text topics beside the live chat
(#general, #clips, #announcements), readable and writable while the creator is offline.

The chat's rules and room carry them (service.py): the channel's moderation state and content
checks are the live chat's, and new messages reach open pages through the channel's chat room.
Messages, topics and read markers are in the database (``storage.community``).
"""

from __future__ import annotations

from aiohttp import web

from . import api, pages


def setup(app: web.Application) -> None:
    api.setup_routes(app)
    pages.setup_routes(app)


__all__ = ["setup"]
