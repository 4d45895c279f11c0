"""Web application: HLS delivery, pages, JSON API, chat WebSocket and /metrics."""

from .app import create_app

__all__ = ["create_app"]
