"""Restreaming destinations (issue 14): the places a channel's live stream is relayed to,
their JSON API and dashboard page, with each relay's live status.

The relaying itself is ``mediaserver.restream`` (started by the composition root); this area
edits rows, reports each committed edit through ``RESTREAM_CHANGED_KEY`` (the relays follow it
at once) and reads the relays' status through ``RESTREAM_STATUS_KEY``.
"""

from __future__ import annotations

from aiohttp import web

from . import api, pages


def setup(app: web.Application) -> None:
    api.setup_routes(app)
    pages.setup_routes(app)


__all__ = ["setup"]
