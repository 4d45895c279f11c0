"""Accounts: registration, login and logout (JSON API and HTML pages), onboarding.

``setup(app)`` registers the routes; ``webapp.identity`` resolves who a request comes from.
"""

from __future__ import annotations

from aiohttp import web

from . import api, pages
from .api import OPENAPI_PATHS as AUTH_OPENAPI_PATHS
from .login import limiter


def setup(app: web.Application) -> None:
    limiter(app)  # created now, while the application can still take new keys
    api.setup(app)
    pages.setup(app)


OPENAPI_PATHS = AUTH_OPENAPI_PATHS

__all__ = ["setup", "OPENAPI_PATHS"]
