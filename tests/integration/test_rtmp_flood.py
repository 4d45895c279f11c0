"""Clients without a stream key cannot exhaust the server, and cannot push a real publisher out.

The flooding clients are raw sockets that never read what the server answers. Every check is
on the server's side (its metrics, its sessions, its /proc memory figures), and the clients
keep sending until the server cuts them rather than for a fixed time, so nothing depends on
kernel socket buffer sizes or CPU speed: the server fixes its own SO_SNDBUF
(rtmp.socket_send_buffer) and the clients shrink their SO_RCVBUF.
"""

from __future__ import annotations

import array
import asyncio
import fcntl
import json
import os
import re
import select
import socket
import subprocess
import sys
import termios
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from benchmarks.lib.server import ServerProcess
from mediaserver.live import MediaKind
from mediaserver.rtmp import ServerConnection
from tests.conftest import free_port, make_channel, rtmp_url, running_server, start_ffmpeg
from tests.integration.test_ingest import Recorder, wait_for
from tests.rtmp_client import RtmpTestClient
from tests.serve_process import SERVE_READY

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

CLIENT_RCVBUF = 4096  # the kernel doubles it; the flooders never read anyway
SEND_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


def raw_socket(source: str) -> socket.socket:
    """A non-blocking client socket bound to ``source`` (any 127/8 address is loopback)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CLIENT_RCVBUF)
    sock.bind((source, 0))
    sock.setblocking(False)
    return sock


def keyless_setup(client: RtmpTestClient) -> bytes:
    """Handshake and connect, sent without waiting for (or ever reading) the replies."""
    return client.c0c1() + client.c2(None) + client.set_chunk_size(4096) + client.connect()


def unread(sock: socket.socket) -> int:
    """Bytes waiting in the socket's receive queue (FIONREAD), left there unread."""
    count = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count)
    return count[0]


async def send_setup(sock: socket.socket, client: RtmpTestClient) -> None:
    """Send the handshake and connect, then wait -- without reading -- until the server's
    answer to all of it is in our receive queue: commands pipelined behind an unanswered
    connect are bounded by another limit (max_setup_message_size) than the one under test."""
    setup = keyless_setup(client)
    model = ServerConnection()
    model.receive_data(setup)
    model.accept_connect()
    answer = len(model.data_to_send())
    await asyncio.get_running_loop().sock_sendall(sock, setup)
    for _ in range(6000):
        if unread(sock) >= answer:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the server answered {unread(sock)} of {answer} setup bytes")


async def send_until_cut(sock: socket.socket, pieces: Iterator[bytes], cap: int) -> bool:
    """Send ``pieces`` until the server cuts the connection (True) or ``cap`` bytes went into
    the kernel (which does not mean the server has read them yet)."""
    loop = asyncio.get_running_loop()
    sent = 0
    try:
        for piece in pieces:
            await loop.sock_sendall(sock, piece)
            sent += len(piece)
            if sent >= cap:
                return False
    except SEND_ERRORS:
        return True
    return False


def is_cut(sock: socket.socket) -> bool:
    """The server closed this socket (EOF or reset) -- without waiting if it did not."""
    if not select.select([sock], [], [], 0)[0]:
        return False
    try:
        return sock.recv(1 << 16) == b""
    except SEND_ERRORS:
        return True


# ---------------------------------------------------------------------------------------------
# 200 key-less clients that never read, against `aethex serve` in its own process


def vm_kib(pid: int, field: str) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.M)
    assert match, status
    return int(match.group(1))


async def metric(http: aiohttp.ClientSession, base: str, name: str, **labels: str) -> float:
    async with http.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    head = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(head + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "mediaserver", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def big_names(sock: socket.socket, index: int, port: int) -> None:
    """~1 MB releaseStream and FCPublish names, again and again: more echoed bytes than any
    kernel socket buffer holds (tcp_wmem's default maximum is 4 MiB)."""
    client = RtmpTestClient(4096, seed=index)
    name = "k" * 1_000_000

    def pieces() -> Iterator[bytes]:
        yield keyless_setup(client)
        for _ in range(8):
            yield client.release_stream(name)
            yield client.fc_publish(name)

    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await send_until_cut(sock, pieces(), cap=1 << 40)


async def echoed_names(sock: socket.socket, index: int, port: int, cap: int) -> None:
    """FCPublish names as long as the server echoes, as fast as it takes them. The socket
    stays open at the cap: closing it would drop what the kernel has not delivered yet."""
    client = RtmpTestClient(4096, seed=index)
    name = "e" * 256

    def pieces() -> Iterator[bytes]:
        while True:
            yield b"".join(client.fc_publish(name) for _ in range(32))

    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    await send_setup(sock, client)
    await send_until_cut(sock, pieces(), cap)


async def test_keyless_flood_keeps_server_memory_bounded(tmp_path: Path) -> None:
    rtmp_port, http_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    env.update(
        {
            "AETHEX_DATA_DIR": str(tmp_path / "data"),
            "AETHEX_HTTP_HOST": "127.0.0.1",
            "AETHEX_HTTP_PORT": str(http_port),
            "AETHEX_RTMP_HOST": "127.0.0.1",
            "AETHEX_RTMP_PORT": str(rtmp_port),
            "AETHEX_TRANSCODE__ENABLED": "false",
            "AETHEX_LOG__LEVEL": "warning",
            # Only the bounds under test may cut the flood, however slow the machine.
            "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "120",
            "AETHEX_RTMP__PUBLISH_TIMEOUT": "120",
            "AETHEX_RTMP__IDLE_TIMEOUT": "120",
        }
    )
    cli(env, "user", "create", "alice", "--email", "alice@example.test")
    key = json.loads(
        cli(env, "channel", "create", "--owner", "alice", "--slug", "alice", "--json")
    )["stream_key"]
    server = ServerProcess(env)
    publisher = None
    flood = [raw_socket(f"127.1.0.{i + 1}") for i in range(200)]  # one address each
    base = f"http://127.0.0.1:{http_port}"
    try:
        await asyncio.to_thread(server.wait_ready, SERVE_READY)
        async with aiohttp.ClientSession() as http:

            async def up() -> bool:
                try:
                    return await metric(http, base, "aethex_streams_live") == 0
                except aiohttp.ClientError:
                    return False

            for _ in range(600):
                if await up():
                    break
                assert server.poll() is None, "aethex serve exited"
                await asyncio.sleep(0.1)
            publisher = await start_ffmpeg(
                f"rtmp://127.0.0.1:{rtmp_port}/live/{key}", seconds=3600, size="640x360"
            )

            async def ingested() -> float:
                return await metric(http, base, "aethex_ingest_bytes_total", channel="alice")

            for _ in range(600):
                if await ingested() > 100_000:
                    break
                await asyncio.sleep(0.1)
            assert await ingested() > 100_000, "the real publisher never went live"

            baseline = vm_kib(server.pid, "VmRSS")
            Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            before = {
                r: await metric(http, base, "aethex_rtmp_rejected_total", reason=r)
                for r in ("protocol_error", "send_buffer")
            }

            # Far more than the server lets an echoing client queue (its kernel buffer is
            # socket_send_buffer, doubled, plus max_send_buffer), far less than memory allows.
            cap = 8 * (2 * 65536 + 65536 + 2 * CLIENT_RCVBUF)
            # A client may reach its cap before the server read what its kernel took, so the
            # verdict is the server's: every flooder gone, each for the expected reason.
            await asyncio.gather(
                *(big_names(flood[i], i, rtmp_port) for i in range(100)),
                *(echoed_names(flood[i], i, rtmp_port, cap) for i in range(100, 200)),
            )

            def check_growth() -> None:
                peak = vm_kib(server.pid, "VmHWM") - baseline
                assert peak < 50 * 1024, f"the server's RSS grew {peak / 1024:.0f} MB"

            async def flood_gone() -> bool:
                return await metric(http, base, "aethex_rtmp_connections") == 1

            for _ in range(1200):
                check_growth()
                if await flood_gone():
                    break
                await asyncio.sleep(0.1)
            assert await flood_gone(), "flooders are still connected"
            check_growth()
            after = {
                r: await metric(http, base, "aethex_rtmp_rejected_total", reason=r) - before[r]
                for r in before
            }
            assert vm_kib(server.pid, "VmRSS") - baseline < 50 * 1024
            # Big names are refused at their chunk header; echoing clients hit max_send_buffer.
            assert after == {"protocol_error": 100, "send_buffer": 100}

            # The real publisher never noticed: still connected, still live, bytes still coming.
            flowing = await ingested()
            for _ in range(600):
                if await ingested() > flowing + 50_000:
                    break
                await asyncio.sleep(0.1)
            assert await ingested() > flowing + 50_000
            assert publisher.returncode is None
            assert await metric(http, base, "aethex_streams_live") == 1
    finally:
        for sock in flood:
            sock.close()
        if publisher is not None and publisher.returncode is None:
            publisher.kill()
            await publisher.wait()
        await asyncio.to_thread(server.stop, 30)


# ---------------------------------------------------------------------------------------------
# Per-address connection cap


async def test_idle_flood_from_one_address_does_not_shut_out_publishers(settings_env) -> None:
    env = {
        **settings_env,
        "AETHEX_RTMP__MAX_CONNECTIONS": "24",
        "AETHEX_RTMP__MAX_CONNECTIONS_PER_ADDRESS": "8",
        # Idle flood sockets stay until the test ends: only the caps may close them.
        "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "120",
        "AETHEX_RTMP__IDLE_TIMEOUT": "120",
    }
    async with running_server(env) as server:
        rec = Recorder(server)
        _, key_a = await make_channel(server, "alpha", "alpha")
        _, key_b = await make_channel(server, "bravo", "bravo")
        first = await start_ffmpeg(rtmp_url(server, key_a), seconds=3600, size="640x360")
        flood: list[socket.socket] = []
        second = None
        try:
            await wait_for(lambda: len(rec.packets("alpha", MediaKind.VIDEO)) > 10, 30)
            loop = asyncio.get_running_loop()
            for _ in range(40):  # more than the global cap, from one address
                sock = raw_socket("127.0.0.2")
                flood.append(sock)
                await loop.sock_connect(sock, ("127.0.0.1", server.rtmp_port))

            def per_address() -> int:
                return (
                    server.metrics.sample("aethex_rtmp_rejected_total", reason="per_address_cap")
                    or 0
                )

            await wait_for(lambda: per_address() == 32, 30)
            await wait_for(lambda: sum(map(is_cut, flood)) == 32, 30)
            assert server.ingest.per_address.get("127.0.0.2") == 8
            assert not server.metrics.sample(
                "aethex_rtmp_rejected_total", reason="too_many_connections"
            )

            # The publisher keeps streaming, and another one from elsewhere still gets in.
            seen = len(rec.packets("alpha", MediaKind.VIDEO))
            second = await start_ffmpeg(rtmp_url(server, key_b), seconds=3600, size="640x360")
            await wait_for(lambda: len(rec.packets("bravo", MediaKind.VIDEO)) > 10, 30)
            await wait_for(lambda: len(rec.packets("alpha", MediaKind.VIDEO)) > seen + 30, 30)
            assert first.returncode is None and not rec.streams["alpha"].ended
        finally:
            for sock in flood:
                sock.close()
            for proc in (first, second):
                if proc is not None and proc.returncode is None:
                    proc.kill()
                    await proc.wait()


# ---------------------------------------------------------------------------------------------
# A refused client that never reads cannot keep its closing connection


async def test_refused_client_that_never_reads_is_cut_after_the_linger(settings_env) -> None:
    env = {
        **settings_env,
        "AETHEX_RTMP__CLOSE_LINGER": "1",
        "AETHEX_RTMP__MAX_SEND_BUFFER": str(1 << 20),
        "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "120",
        "AETHEX_RTMP__PUBLISH_TIMEOUT": "120",
        "AETHEX_RTMP__IDLE_TIMEOUT": "120",
    }
    async with running_server(env) as server:
        loop = asyncio.get_running_loop()
        client = RtmpTestClient(4096)
        sock = raw_socket("127.0.0.1")
        try:
            await loop.sock_connect(sock, ("127.0.0.1", server.rtmp_port))
            await send_setup(sock, client)
            (session,) = server.ingest.sessions
            # Replies pile up until the kernel holds no more and the transport buffers them.
            while session.transport.get_write_buffer_size() == 0:
                await loop.sock_sendall(
                    sock, b"".join(client.fc_publish("e" * 256) for _ in range(32))
                )
                await asyncio.sleep(0)
            await loop.sock_sendall(
                sock, client.create_stream() + client.publish(1, "live_not-a-key")
            )
            await wait_for(lambda: session.closing, 10)
            assert session.transport.get_write_buffer_size() > 0  # its refusal is unread
            await wait_for(lambda: not server.ingest.sessions, 10)
            assert server.ingest.per_address == {}
            assert server.metrics.sample("aethex_rtmp_rejected_total", reason="bad_key") == 1
            await wait_for(lambda: is_cut(sock), 10)
        finally:
            sock.close()
