"""config/haproxy/aethex.cfg with a real haproxy in front of a real server: haproxy checks the
origins (the live one UP, a dead one DOWN), ffmpeg publishes through it and goes live, and the
server counts the publisher's address, not haproxy's, because haproxy sends the PROXY header:
with rtmp.max_connections_per_address = 1 a second connection from the same client through
haproxy is refused while another client's is served.

On loopback every address is local, so haproxy connects to the origin from 127.0.0.2 (the
``source`` the test adds) while the clients come from 127.0.0.1 and 127.0.0.3."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, make_channel, running_server, start_ffmpeg
from tests.haproxy_server import HaproxyProcess, Ports, render_config
from tests.integration.test_proxy_protocol import C0C1, closed_by_server, rejected
from tests.integration.test_rtmps import make_pair

pytestmark = pytest.mark.integration


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("proxy_version", [2, 1], ids=["send-proxy-v2", "send-proxy"])
async def test_publish_through_haproxy_counts_the_client(
    settings_env, tmp_path: Path, proxy_version: int
) -> None:
    env = {
        **settings_env,
        "AETHEX_RTMP__PROXY_PROTOCOL": "true",
        "AETHEX_RTMP__PROXY_TRUSTED": "127.0.0.2/32",
        "AETHEX_RTMP__MAX_CONNECTIONS_PER_ADDRESS": "1",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
    }
    async with running_server(env) as server:
        dead = free_port()  # origin2: nothing listens there
        ports = Ports(
            rtmp=free_port(),
            rtmps=free_port(),
            stats=free_port(),
            origins=[("127.0.0.1", server.rtmp_port, server.http_port), ("127.0.0.1", dead, dead)],
            tls_origins=[("127.0.0.1", dead, dead), ("127.0.0.1", dead, dead)],
        )
        config = render_config(
            ports, tmp_path / "haproxy" / "haproxy.sock", "127.0.0.2", proxy_version
        )
        servers = [ln for ln in config.splitlines() if ln.strip().startswith("default-server")]
        assert servers and all(" send-proxy" in ln for ln in servers)
        assert all(("send-proxy-v2" in ln) == (proxy_version == 2) for ln in servers)
        haproxy = HaproxyProcess(config, tmp_path / "haproxy")
        await asyncio.to_thread(haproxy.start)
        try:
            # Health checks (GET /healthz): the live origin stays UP, the dead one goes DOWN.
            deadline = time.monotonic() + 30
            while (status := await asyncio.to_thread(haproxy.status, "rtmp_origins")) != {
                "origin1": "UP",
                "origin2": "DOWN",
            }:
                assert time.monotonic() < deadline, f"haproxy's view: {status}\n{haproxy.log()}"
                await asyncio.sleep(0.2)
            assert rejected(server, "proxy_header") == 0  # checks are no protocol errors

            channel_id, key = await make_channel(server, "proxied-live")
            ffmpeg = await start_ffmpeg(
                f"rtmp://127.0.0.1:{ports.rtmp}/live/{key}", seconds=30, size="320x180"
            )
            try:
                await until(lambda: server.registry.get("proxied-live") is not None, 30, "live")
                session = server.ingest.publishers[channel_id]
                assert session.host == "127.0.0.1"
                assert session.peer.startswith("127.0.0.1:")
                assert session.transport.get_extra_info("proxy_peername")[0] == "127.0.0.2"
                assert server.ingest.per_address.get("127.0.0.1") == 1

                # The same client again through haproxy: over its cap of 1, refused.
                reader, writer = await asyncio.open_connection("127.0.0.1", ports.rtmp)
                writer.write(C0C1)
                assert await closed_by_server(reader)
                writer.close()
                await until(lambda: rejected(server, "per_address_cap") == 1, 10, "refusal")

                # Another client (127.0.0.3) through the same haproxy is served.
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", ports.rtmp, local_addr=("127.0.0.3", 0)
                )
                writer.write(C0C1)
                s0s1 = await asyncio.wait_for(reader.readexactly(1537), 10)
                assert s0s1[0] == 3
                await until(
                    lambda: server.ingest.per_address.get("127.0.0.3") == 1, 10, "the other"
                )
                writer.close()
                # And the publisher was never disturbed.
                assert server.registry.get("proxied-live") is not None
                assert ffmpeg.returncode is None
            finally:
                if ffmpeg.returncode is None:
                    ffmpeg.terminate()
                await ffmpeg.wait()
        finally:
            await asyncio.to_thread(haproxy.stop)


async def test_rtmps_passes_through_haproxy(settings_env, tmp_path: Path) -> None:
    """RTMPS in TCP mode: haproxy forwards the TLS bytes after its PROXY header, the origin
    ends TLS with its own certificate and counts the client."""
    cert, key = make_pair(tmp_path / "tls")
    env = {
        **settings_env,
        "AETHEX_RTMP__PROXY_PROTOCOL": "true",
        "AETHEX_RTMP__PROXY_TRUSTED": "127.0.0.2/32",
        "AETHEX_RTMP__IDLE_TIMEOUT": "20",
        "AETHEX_RTMP__TLS_PORT": str(free_port()),
        "AETHEX_RTMP__TLS_CERT_FILE": str(cert),
        "AETHEX_RTMP__TLS_KEY_FILE": str(key),
    }
    async with running_server(env) as server:
        dead = free_port()
        origin = ("127.0.0.1", server.ingest.tls_port, server.http_port)
        ports = Ports(
            rtmp=free_port(),
            rtmps=free_port(),
            stats=free_port(),
            origins=[("127.0.0.1", server.rtmp_port, server.http_port), ("127.0.0.1", dead, dead)],
            tls_origins=[origin, ("127.0.0.1", dead, dead)],
        )
        haproxy = HaproxyProcess(
            render_config(ports, tmp_path / "haproxy" / "haproxy.sock", source="127.0.0.2"),
            tmp_path / "haproxy",
        )
        await asyncio.to_thread(haproxy.start)
        try:
            deadline = time.monotonic() + 30
            while (await asyncio.to_thread(haproxy.status, "rtmps_origins")).get("origin1") != "UP":
                assert time.monotonic() < deadline, haproxy.log()
                await asyncio.sleep(0.2)
            channel_id, key = await make_channel(server, "secure-proxied")
            ffmpeg = await start_ffmpeg(
                f"rtmps://127.0.0.1:{ports.rtmps}/live/{key}", seconds=30, size="320x180"
            )
            try:
                await until(lambda: server.registry.get("secure-proxied") is not None, 30, "live")
                session = server.ingest.publishers[channel_id]
                assert session.host == "127.0.0.1"
                assert session.transport.get_extra_info("proxy_peername")[0] == "127.0.0.2"
                assert session.transport.get_extra_info("ssl_object") is not None
            finally:
                if ffmpeg.returncode is None:
                    ffmpeg.terminate()
                await ffmpeg.wait()
        finally:
            await asyncio.to_thread(haproxy.stop)
