"""MP4 downloads of past broadcasts (issue 13): ``GET /videos/{id}/download?rendition=NAME``.

The file is made as it is sent by ``transcode.remux``: the whole moov is computed from the
recording's moof boxes first (in a worker thread), so the length is known up front and the
client gets a faststart MP4 with the recording's own video and audio bytes, read from the
segment files a block at a time (``Range`` works too). Who may download: the channel's owner
and admins always; anyone else who may watch the video when the channel allows downloads.
"""

from __future__ import annotations

from aiohttp import web

from ..keys import METRICS_KEY, SETTINGS_KEY
from .metrics import download_metrics
from .service import DOWNLOADS_KEY, Downloads, download

__all__ = ["DOWNLOADS_KEY", "Downloads", "setup"]


def setup(app: web.Application) -> None:
    limits = app[SETTINGS_KEY].downloads
    app[DOWNLOADS_KEY] = Downloads(
        limits.max_concurrent,
        limits.plan_cache_mb << 20,
        limits.plan_cache_seconds,
        download_metrics(app[METRICS_KEY].registry),
        limits.max_per_address,
    )
    app.router.add_get("/videos/{id}/download", download, name="video_download")
