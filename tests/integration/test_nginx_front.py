"""config/nginx/aethex.conf run by a real nginx in front of a real server (both upstreams, web
and HLS, pointed at it): HTTPS with HTTP/2 (curl), plain HTTP redirected, the chat WebSocket
upgraded through it both ways, HLS routed to the HLS upstream, /metrics kept private. The
syntax check alone is in test_config_kit.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest
from certs import self_signed

from benchmarks.lib.nginx import Nginx
from benchmarks.lib.server import free_port
from tests.chat_support import ChatClient, auth, make_chat_channel
from tests.conftest import running_server
from tests.integration.test_config_kit import CONFIG, require

pytestmark = pytest.mark.integration


def make_cert(directory: Path) -> tuple[Path, Path]:
    return self_signed(
        directory / "fullchain.pem",
        directory / "privkey.pem",
        common_name="live.example.com",
        alt_names=None,
    )


def render(cert: Path, key: str | Path, https: int, http: int, node: int) -> str:
    """The shipped file with the test's certificate, loopback ports and upstreams."""
    text = (CONFIG / "nginx" / "aethex.conf").read_text()
    for old, new in (
        ("/etc/letsencrypt/live/live.example.com/fullchain.pem", str(cert)),
        ("/etc/letsencrypt/live/live.example.com/privkey.pem", str(key)),
        ("listen 80;", f"listen 127.0.0.1:{http};"),
        ("listen [::]:80;", ""),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
        ("listen [::]:443 ssl http2;", ""),
        ("server 10.0.0.21:8080", f"server 127.0.0.1:{node}"),
        ("server 10.0.0.22:8080", f"server 127.0.0.1:{node}"),
        ("server 10.0.0.31:6081", f"server 127.0.0.1:{node}"),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


class FrontNginx(Nginx):
    missing = "nginx is needed (Debian package nginx): run `make test` to install it"

    def __init__(self, workdir: Path, site: str, http_port: int) -> None:
        super().__init__(workdir)
        self.site = site
        self.http_port = http_port

    def body(self) -> str:
        temp = self.dir / "tmp"
        temp.mkdir(parents=True, exist_ok=True)
        paths = "".join(
            f"    {kind}_temp_path {temp};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        return f"http {{\n    access_log off;\n{paths}{self.site}\n}}\n"


async def curl(*args: str) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        require("curl", "curl"),
        "-sS",
        "-k",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_nginx_front_serves_https_http2_chat_and_hls(settings_env, tmp_path: Path) -> None:
    env = {**settings_env, "AETHEX_HTTP__TRUST_FORWARDED_FOR": "true"}
    async with running_server(env) as server:
        cert, key = make_cert(tmp_path)
        http_port = free_port()
        nginx = FrontNginx(tmp_path, "", http_port)
        nginx.site = render(cert, key, nginx.port, http_port, server.http_port)
        await asyncio.to_thread(nginx.start)
        try:
            base = f"https://127.0.0.1:{nginx.port}"
            # Pages and API through TLS, spoken as HTTP/2.
            out, _ = await curl(
                "--http2", "-w", "\n%{http_version} %{http_code}", f"{base}/healthz"
            )
            body, status = out.rsplit("\n", 1)
            assert status == "2 200", out
            assert json.loads(body)["status"] == "ok"
            out, _ = await curl("--http2", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/")
            assert out == "200"
            # Plain HTTP goes to HTTPS; /metrics is not for the internet.
            out, _ = await curl(
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{redirect_url}",
                f"http://127.0.0.1:{http_port}/streams/x",
            )
            assert out == "301 https://127.0.0.1/streams/x"
            out, _ = await curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/metrics")
            assert out == "404"
            # HLS reaches the node through the HLS upstream: its own 404 for a channel that is
            # not live (the HLS path's plain "Not Found", not nginx's page).
            out, _ = await curl("-w", "\n%{http_code}", f"{base}/hls/nobody/master.m3u8")
            body, status = out.rsplit("\n", 1)
            assert status == "404" and body.strip() == "Not Found", out

            # Chat: the WebSocket upgrade passes through, both ways.
            _, _, token = await make_chat_channel(server, "carol", "carol-live")
            async with aiohttp.ClientSession() as http:
                async with http.ws_connect(
                    f"wss://127.0.0.1:{nginx.port}/ws/chat/carol-live",
                    headers=auth(token),
                    ssl=False,
                ) as ws:
                    chat = ChatClient(ws)
                    await chat.next("chat:history", timeout=10)
                    await chat.say("hello through nginx")
                    message = await chat.next("chat:message", timeout=10)
                    assert message["content"] == "hello through nginx"
        finally:
            await asyncio.to_thread(nginx.stop)
