"""What an image upload costs the server in memory, measured on a real ``aethex serve`` process.

A 167 KB PNG of 6000x6600 pixels, within the old 40 MP limit, once took 0.8 GB of RSS to
upload, three at once 1.6 GB. The figure that matters is the peak: VmHWM of the server process,
reset to the current RSS just before the uploads (``clear_refs``), so start-up and password
hashing before do not hide anything. The image is as large as the default limits allow.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image
from serve_process import serve_process

from mediaserver.settings import UploadSettings
from tests.accounts import csrf_of, register

pytestmark = pytest.mark.integration

# What one upload may add to the server's peak RSS, at the default limits.
BUDGET_MIB = 150


def near_max_png(limits: UploadSettings) -> bytes:
    """An RGB PNG 6000 pixels wide with as many rows as ``max_pixels`` allows: highly
    compressible (stripes), like the 167 KB file that took 0.8 GB."""
    width = 6000
    height = limits.max_pixels // width
    image = Image.new("RGB", (width, height), (200, 40, 90))
    for x in range(0, width, 97):
        image.paste((10, 200, 10), (x, 0, x + 3, height))
    out = io.BytesIO()
    image.save(out, "PNG")
    assert len(out.getvalue()) <= limits.max_bytes
    return out.getvalue()


async def _upload(
    http: aiohttp.ClientSession, base: str, kind: str, data: bytes, token: str
) -> tuple[int, dict]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename="big.png", content_type="image/png")
    async with http.post(
        f"{base}/api/upload/{kind}", data=form, headers={"X-CSRF-Token": token}
    ) as r:
        return r.status, await r.json()


async def test_peak_memory_of_near_limit_uploads_stays_bounded(tmp_path: Path) -> None:
    limits = UploadSettings()  # the defaults: nothing in the environment changes them
    big = near_max_png(limits)
    async with serve_process(
        {"AETHEX_TRANSCODE__ENABLED": "false", "AETHEX_LOG__LEVEL": "warning"}, tmp_path / "data"
    ) as server:
        base = server.base
        async with await register(base, "alice") as http:
            token = await csrf_of(http, base)
            # Warm-up with a tiny image: imports Pillow and starts the decode thread, costs
            # that are paid once per process, not per upload.
            tiny = io.BytesIO()
            Image.new("RGB", (64, 64), (1, 2, 3)).save(tiny, "PNG")
            status, body = await _upload(http, base, "avatar", tiny.getvalue(), token)
            assert status == 200, body

            before = server.reset_peak_rss()
            status, body = await _upload(http, base, "banner", big, token)
            assert status == 200, body
            one = (server.status_kib("VmHWM") - before) / 1024

            before = server.reset_peak_rss()
            answers = await asyncio.gather(
                *(_upload(http, base, kind, big, token) for kind in ("avatar", "banner", "avatar"))
            )
            assert [status for status, _ in answers] == [200, 200, 200], answers
            three = (server.status_kib("VmHWM") - before) / 1024
    print(
        f"peak RSS growth: one upload {one:.0f} MiB, three at once {three:.0f} MiB "
        f"({len(big) // 1024} KB PNG of 6000x{limits.max_pixels // 6000})"
    )
    assert one < BUDGET_MIB, f"one upload raised the peak RSS by {one:.0f} MiB"
    assert three < BUDGET_MIB, f"three uploads at once raised the peak RSS by {three:.0f} MiB"
    assert "Traceback" not in server.log(), server.log()
