"""Restreaming to a server we did not write: nginx with Debian's RTMP module, recording
(``record all``). A real ffmpeg pushes 15 s into our server, which relays the original
stream to one nginx stream name and its 144p rung to another; after the push, nginx's
recordings have the codec parameters of what was sent (the source's, and the rung's picture)
and a duration within 0.5 s of the source's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from chat_support import auth, base_url
from conftest import free_port, make_channel, make_source, push, rtmp_url, running_server
from test_restream import hls_env, relay_env

from storage import queries

pytestmark = pytest.mark.integration

RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
LADDER = [
    {"name": "240p", "height": 240, "fps": 30, "video_kbps": 300},
    {"name": "144p", "height": 144, "fps": 30, "video_kbps": 150},
]
SECONDS = 15.0


@contextlib.contextmanager
def nginx_recorder(directory: Path) -> Iterator[tuple[int, Path]]:
    if not shutil.which("nginx") or not Path(RTMP_MODULE).exists():
        # make test installs both (TEST_DEBS): missing, the set-up is broken, not the test moot.
        pytest.fail("nginx with libnginx-mod-rtmp is missing: run `make test`, which installs it")
    port = free_port()
    records = directory / "records"
    (directory / "logs").mkdir(parents=True)
    records.mkdir()
    conf = directory / "nginx.conf"
    conf.write_text(f"""
load_module {RTMP_MODULE};
user root;
daemon off;
master_process on;
worker_processes 1;
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections 64; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            record all;
            record_path {records};
            record_unique off;
        }}
    }}
}}
""")
    proc = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(conf)])
    try:
        yield port, records
    finally:
        # SIGQUIT: the master stops its worker (SIGKILL to the master alone orphans it).
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def probe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    return json.loads(out)


def params(info: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for s in info["streams"]:
        if s["codec_type"] == "video":
            for k in ("codec_name", "profile", "width", "height", "pix_fmt"):
                found[f"v_{k}"] = s.get(k)
        elif s["codec_type"] == "audio":
            for k in ("codec_name", "profile", "sample_rate", "channels"):
                found[f"a_{k}"] = s.get(k)
    return found


async def test_nginx_records_the_original_and_a_rung(tmp_path: Path) -> None:
    env = {
        "AETHEX_DATA_DIR": str(tmp_path / "data"),
        "AETHEX_HTTP_HOST": "127.0.0.1",
        "AETHEX_HTTP_PORT": "0",
        "AETHEX_RTMP_HOST": "127.0.0.1",
        "AETHEX_RTMP_PORT": "0",
    }
    source = make_source(tmp_path / "src.flv", size="426x240", seconds=SECONDS, bitrate="300k")
    sent = probe(source)
    with nginx_recorder(tmp_path / "nginx") as (nginx_port, records):
        async with running_server(relay_env(hls_env(env, LADDER))) as server:
            _, key = await make_channel(server, "recorded", "rita")
            async with server.db.session() as db:
                token = await queries.create_api_token(db, "rita")
                await db.commit()
            async with aiohttp.ClientSession(base_url(server), headers=auth(token)) as http:
                for name, send in [("orig-rec", "original"), ("rung-rec", "144p")]:
                    body = {
                        "name": name,
                        "ingest_url": f"rtmp://127.0.0.1:{nginx_port}/live",
                        "stream_key": name,
                        "source": send,
                    }
                    async with http.post("/api/channels/recorded/destinations", json=body) as r:
                        assert r.status == 201, await r.text()
                ffmpeg = await push(source, rtmp_url(server, key))
                assert await ffmpeg.wait() == 0
                # The stream ends; each relay sends what it holds and unpublishes.
                deadline = time.monotonic() + 60
                while server.restream.relays:
                    assert time.monotonic() < deadline, "relays still running"
                    await asyncio.sleep(0.1)
    # nginx was stopped: its recordings are closed.
    want = params(sent)
    duration = float(sent["format"]["duration"])
    orig = probe(records / "orig-rec.flv")
    assert params(orig) == want
    assert abs(float(orig["format"]["duration"]) - duration) <= 0.5, (orig["format"], duration)
    rung = probe(records / "rung-rec.flv")
    got = params(rung)
    assert (got["v_codec_name"], got["v_width"], got["v_height"]) == ("h264", 256, 144), got
    assert (got["a_codec_name"], got["a_sample_rate"], got["a_channels"]) == (
        "aac",
        want["a_sample_rate"],
        want["a_channels"],
    )
    assert abs(float(rung["format"]["duration"]) - duration) <= 0.5, (rung["format"], duration)
