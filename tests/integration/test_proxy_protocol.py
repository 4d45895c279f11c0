"""RTMP ingest behind a TCP proxy (rtmp.proxy_protocol): a real server on loopback, clients
that speak the PROXY protocol (v1 and v2) before RTMP or RTMPS. The client address the header
carries is the one ingest counts, caps and logs; bad and late headers are closed and counted,
never a traceback; peers outside rtmp.proxy_trusted are plain clients.

The whole path through a real haproxy is in test_haproxy.py."""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
import time
from pathlib import Path

import pytest

from mediaserver.settings import SettingsError, load_settings
from tests.conftest import free_port, running_server
from tests.integration.test_rtmps import client_context, make_pair

pytestmark = pytest.mark.integration

C0C1 = b"\x03" + bytes(1536)


def v1_header(client: str, port: int = 40001) -> bytes:
    return f"PROXY TCP4 {client} 10.0.0.5 {port} 1935\r\n".encode()


def v2_header(client: str, port: int = 40001) -> bytes:
    a, b, c, d = (int(x) for x in client.split("."))
    body = bytes([a, b, c, d, 10, 0, 0, 5]) + struct.pack("!HH", port, 1935)
    return b"\r\n\r\n\x00\r\nQUIT\n\x21\x11" + struct.pack("!H", len(body)) + body


def proxy_env(env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **env,
        "AETHEX_RTMP__PROXY_PROTOCOL": "true",
        **{f"AETHEX_RTMP__{k.upper()}": v for k, v in extra.items()},
    }


async def hello(
    port: int, header: bytes = b""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect, send ``header`` then C0+C1, and read S0+S1: the server speaks RTMP to us."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(header + C0C1)
    s0s1 = await asyncio.wait_for(reader.readexactly(1537), 10)
    assert s0s1[0] == 3
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not await asyncio.wait_for(reader.read(65536), deadline - time.monotonic()):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def ingest_errors(caplog) -> list[logging.LogRecord]:
    """Errors and tracebacks logged by ingest or by the loop on its behalf (an exception
    escaping a protocol callback is logged by asyncio)."""
    return [
        r
        for r in caplog.records
        if (r.name.startswith("mediaserver.ingest") or r.name == "asyncio")
        and (r.levelno >= logging.ERROR or r.exc_info)
    ]


def rejected(server, reason: str) -> float:
    return server.metrics.sample("aethex_rtmp_rejected_total", reason=reason) or 0.0


@pytest.mark.parametrize("make_header", [v1_header, v2_header], ids=["v1", "v2"])
async def test_header_address_is_counted_and_capped(settings_env, make_header) -> None:
    """The per-address cap applies to the client the proxy names: a second connection
    for 198.51.100.9 is refused while 198.51.100.10, through the same proxy, is served; the
    session's peer (what its log lines name) is the client's address and port."""
    env = proxy_env(settings_env, max_connections_per_address="1")
    async with running_server(env) as server:
        port = server.rtmp_port
        _, first = await hello(port, make_header("198.51.100.9"))
        await until(lambda: server.ingest.per_address.get("198.51.100.9") == 1, 10, "counted")
        assert "127.0.0.1" not in server.ingest.per_address

        reader, second = await asyncio.open_connection("127.0.0.1", port)
        second.write(make_header("198.51.100.9", 40002) + C0C1)
        assert await closed_by_server(reader)
        await until(lambda: rejected(server, "per_address_cap") == 1, 10, "the cap's count")

        _, third = await hello(port, make_header("198.51.100.10"))
        await until(lambda: server.ingest.per_address.get("198.51.100.10") == 1, 10, "third")
        session = next(s for s in server.ingest.sessions if s.host == "198.51.100.10")
        assert session.peer == "198.51.100.10:40001"
        for writer in (first, second, third):
            writer.close()
        await until(lambda: not server.ingest.per_address, 10, "connections released")


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 999.0.0.1 10.0.0.5 1 2\r\n",
        b"PROXY TCP4 198.51.100.9 10.0.0.5 1 2\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x12\x00\x0c" + bytes(12),  # UDP
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",  # 64 KiB of TLVs, over the max size
        C0C1,  # a direct RTMP client at the proxy port
    ],
    ids=["bad-address", "lf-only", "udp", "too-long", "no-header"],
)
async def test_bad_header_is_closed_and_counted(settings_env, header, caplog) -> None:
    caplog.set_level(logging.INFO)
    async with running_server(proxy_env(settings_env)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
        writer.write(header)
        assert await closed_by_server(reader)
        writer.close()
        await until(lambda: rejected(server, "proxy_header") == 1, 10, "the count")
        await until(lambda: not server.ingest.sessions, 10, "no session made")
        # The server still serves proxied clients.
        _, ok = await hello(server.rtmp_port, v1_header("198.51.100.20"))
        ok.close()
    assert "bad PROXY header" in caplog.text
    assert not ingest_errors(caplog)


async def test_late_header_times_out_and_a_bare_connect_is_quiet(settings_env, caplog) -> None:
    """A trusted peer that sends nothing is cut at rtmp.proxy_header_timeout (counted); one
    that connects and closes at once, as a TCP health check does, is no error."""
    caplog.set_level(logging.INFO)
    env = proxy_env(settings_env, proxy_header_timeout="0.5")
    async with running_server(env) as server:
        _, check = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
        check.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
        writer.write(b"PROXY TCP4 198.51")  # and then nothing
        assert await closed_by_server(reader, 10)
        writer.close()
        await until(lambda: rejected(server, "proxy_timeout") == 1, 10, "the count")
        assert rejected(server, "proxy_header") == 0
    assert "no PROXY header within 0.5 s" in caplog.text
    assert not ingest_errors(caplog)


async def test_untrusted_peer_is_a_direct_client(settings_env) -> None:
    """From outside rtmp.proxy_trusted no header is read: RTMP as usual under the socket's
    address, and a header it sends cannot pick another address (it is a bad handshake)."""
    env = proxy_env(settings_env, proxy_trusted="192.0.2.0/24")
    async with running_server(env) as server:
        _, direct = await hello(server.rtmp_port)
        await until(lambda: server.ingest.per_address.get("127.0.0.1") == 1, 10, "counted")
        reader, spoof = await asyncio.open_connection("127.0.0.1", server.rtmp_port)
        spoof.write(v1_header("198.51.100.9") + C0C1)
        assert await closed_by_server(reader)
        assert "198.51.100.9" not in server.ingest.per_address
        direct.close()
        spoof.close()


async def test_rtmps_behind_a_proxy(settings_env, tmp_path: Path) -> None:
    """haproxy passes RTMPS through in TCP mode: the header comes first, then TLS."""
    cert, key = make_pair(tmp_path / "tls")
    env = proxy_env(
        settings_env,
        tls_port=str(free_port()),
        tls_cert_file=str(cert),
        tls_key_file=str(key),
    )
    async with running_server(env) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.ingest.tls_port)
        writer.write(v2_header("203.0.113.44"))
        await writer.drain()
        await writer.start_tls(client_context())
        assert isinstance(writer.get_extra_info("ssl_object"), ssl.SSLObject)
        writer.write(C0C1)
        s0s1 = await asyncio.wait_for(reader.readexactly(1537), 10)
        assert s0s1[0] == 3
        await until(lambda: server.ingest.per_address.get("203.0.113.44") == 1, 10, "counted")
        writer.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("proxy_trusted", "10.0.0.0/8, haproxy.lan"),
        ("proxy_header_timeout", "0"),
        ("proxy_header_max_size", "100"),
    ],
)
def test_bad_proxy_settings_name_the_key(settings_env, key: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"rtmp.{key}"):
        load_settings(None, env={**proxy_env(settings_env), f"AETHEX_RTMP__{key.upper()}": value})
