"""Web application: HLS delivery, pages, JSON API, chat WebSocket and /metrics.

What the composition root (``mediaserver/app.py``) uses, and nothing else is imported from
outside the package: ``create_app`` builds the site, ``HttpFront`` accepts every HTTP
connection and answers HLS itself, and ``HLS_KEY`` names the HLS service it answers with.
"""

from .app import create_app
from .fastpath import HttpFront
from .keys import HLS_KEY

__all__ = ["HLS_KEY", "HttpFront", "create_app"]
