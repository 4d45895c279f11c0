"""Emotes (issue 16): images chat shows where a message has their code as a whole word.

Global emotes are kept by admins (``/dashboard/admin/emotes``), each channel's by its owner
(``/dashboard/channels/{slug}/emotes``); both through the JSON API too (``api``). Images go
through the upload rules and the decode gate (``pictures``); the sets ride on the chat room
(``sets``: the map in a joining socket's first frame, changes through the bus, the
follower-only decision on each message). The client side is ``static/js/emotes.js``.
"""

from __future__ import annotations

from aiohttp import web

from ..keys import DB_KEY
from . import api, pages, pictures, sweep
from .sets import SETS_KEY, EmoteSets, install

# The orphan sweep (tests run it by hand).
SWEEP_KEY = web.AppKey("emote_sweep", sweep.OrphanSweep)


def setup(app: web.Application) -> None:
    """After ``chat.setup``: the sets hook into the app's chat service."""
    sets = app[SETS_KEY] = EmoteSets(app[DB_KEY])
    install(app, sets)
    api.setup_routes(app)
    pages.setup_routes(app)
    app.router.add_get(pictures.FILES_PREFIX + "{name}", pictures.serve_file)
    app[SWEEP_KEY] = sweep.setup(app)


__all__ = ["SWEEP_KEY", "setup"]
