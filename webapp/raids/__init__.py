"""Raids (issue 16): a channel's owner sends everyone watching to another live channel.

The owner (or an admin; moderators may not: a raid moves the owner's audience, which is theirs
to give) picks a live channel on the dashboard's raids page or from the chat column; the
server checks the raid (raiding.py), records it, publishes ``raid:go`` to the raiding room,
whose pages (raids.js) go to the target with the raid's id in the URL and show the arrival
notice, and ``raid:incoming`` to the target room, whose chat shows a system line. The target's
owner may refuse raids or take them only from channels they follow (``channel_extras``, set on
the same page with the typing-indicator switch of the chat).
"""

from __future__ import annotations

from aiohttp import web

from . import api, pages


def setup(app: web.Application) -> None:
    api.setup_routes(app)
    pages.setup_routes(app)


__all__ = ["setup"]
