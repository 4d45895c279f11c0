"""What the video page shows beside and under the player (issue 13): the stream's chat
replayed in sync with the playback position, its chapters (where the title or category changed
while it was live) and scrubbing previews (sprites with a WebVTT index) for its timeline.

``api``: ``GET /api/videos/{id}/chat`` (time windows of the chat, paged) and
``GET /api/videos/{id}/chapters``. ``previews``: the sprites and their index under
``/videos/{id}/previews/``. Every route reaches a video exactly as its page does
(``stream_links.find_video``). The templates ``videos/_chat_replay.html`` and
``videos/_chapters.html`` (with ``static/js/replay.js`` and ``static/js/timeline.js``) are
included by the video page. The previews are made by ``mediaserver.broadcast`` when a stream is
archived (``transcode.sprites``); chapters are recorded by ``storage.channels`` and
``storage.queries`` (``storage.replay.add_chapter``).
"""

from __future__ import annotations

from aiohttp import web

from . import api, previews
from .api import OPENAPI_PATHS, OPENAPI_SCHEMAS

__all__ = ["OPENAPI_PATHS", "OPENAPI_SCHEMAS", "setup"]


def setup(app: web.Application) -> None:
    api.setup_routes(app)
    previews.setup_routes(app)
