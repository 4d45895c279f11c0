"""RTMPS ingest: the ffmpeg CLI publishing over TLS to a certificate made here by the openssl
CLI, beside plain RTMP; clients that stall or send garbage on the TLS port; the certificate
reloaded on SIGHUP in a real ``aethex serve`` process; the settings' checks of the pair."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import m3u8
import pytest
from certs import self_signed

from benchmarks.lib.server import wait_port
from mediaserver.settings import SettingsError, load_settings
from tests.accounts import register
from tests.conftest import (
    free_port,
    make_channel,
    rtmp_url,
    running_server,
    start_ffmpeg,
    transcoding,
)
from tests.serve_process import SERVE_READY, serve_process

pytestmark = pytest.mark.integration

LADDER = [{"name": "180p", "height": 180, "fps": 30, "video_kbps": 300}]


def make_pair(directory: Path, name: str = "server") -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made by the openssl CLI."""
    return self_signed(directory / f"{name}.crt", directory / f"{name}.key", common_name=name)


def file_fingerprint(cert: Path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest()


def served_fingerprint(port: int) -> str:
    """The SHA-256 of the certificate a new TLS connection to ``port`` is shown."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def tls_env(env: dict[str, str], cert: Path, key: Path, port: int) -> dict[str, str]:
    return {
        **env,
        "AETHEX_RTMP__TLS_PORT": str(port),
        "AETHEX_RTMP__TLS_CERT_FILE": str(cert),
        "AETHEX_RTMP__TLS_KEY_FILE": str(key),
    }


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` (reading whatever it sends)."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


async def until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_ffmpeg_publishes_over_rtmps_beside_plain_rtmp(settings_env, tmp_path) -> None:
    cert, key = make_pair(tmp_path / "tls")
    env = {
        **transcoding(tls_env(settings_env, cert, key, free_port())),
        "AETHEX_TRANSCODE__LADDER": json.dumps(LADDER),
        "AETHEX_HLS__SEGMENT_DURATION": "1",
    }
    async with running_server(env) as server:
        tls_port = server.ingest.tls_port
        assert tls_port == int(env["AETHEX_RTMP__TLS_PORT"])
        base = f"http://127.0.0.1:{server.http_port}"
        http = await register(base, "alice")  # the owner, logged in
        async with http:
            _, secure_key = await make_channel(server, "secure-live", "alice")
            _, plain_key = await make_channel(server, "plain-live", "bob")
            secure = await start_ffmpeg(
                f"rtmps://127.0.0.1:{tls_port}/live/{secure_key}", seconds=30, size="320x180"
            )
            plain = await start_ffmpeg(rtmp_url(server, plain_key), seconds=30, size="320x180")
            try:

                async def both_live() -> bool:
                    return all(server.registry.get(s) for s in ("secure-live", "plain-live"))

                await until(both_live, 30, "both publishers live")

                async def playlist_has_segment() -> bool:
                    async with http.get(f"{base}/hls/secure-live/master.m3u8") as resp:
                        if resp.status != 200:
                            return False
                        master = m3u8.loads(await resp.text())
                    uri = master.playlists[0].uri
                    async with http.get(f"{base}/hls/secure-live/{uri}") as resp:
                        media = m3u8.loads(await resp.text())
                    return resp.status == 200 and any(s.uri for s in media.segments)

                await until(playlist_has_segment, 60, "the RTMPS stream's HLS playlist")

                # What came in decrypted was counted as the channel's media bytes.
                async def counted() -> bool:
                    got = server.metrics.sample("aethex_ingest_bytes_total", channel="secure-live")
                    return (got or 0) > 20_000

                await until(counted, 20, "ingest bytes of the RTMPS publisher")

                # The owner sees the rtmps:// server beside the rtmp:// one.
                async with http.get(f"{base}/api/channels/secure-live") as resp:
                    assert resp.status == 200
                    obs = (await resp.json())["rtmp"]
                assert obs["server"] == f"rtmp://127.0.0.1:{server.rtmp_port}/live"
                assert obs["rtmps_server"] == f"rtmps://127.0.0.1:{tls_port}/live"
                assert obs["rtmps_url"] == f"rtmps://127.0.0.1:{tls_port}/live/{secure_key}"
                async with http.get(f"{base}/dashboard") as resp:
                    page = await resp.text()
                assert f"rtmps://127.0.0.1:{tls_port}/live" in page
                # Both streams carried media through the same registry at the same time.
                assert server.registry.get("plain-live") is not None
            finally:
                for proc in (secure, plain):
                    if proc.returncode is None:
                        proc.terminate()
                    await asyncio.wait_for(proc.communicate(), 30)


async def test_no_rtmps_field_when_off(server) -> None:
    base = f"http://127.0.0.1:{server.http_port}"
    async with await register(base, "carol") as http:
        await make_channel(server, "carol-live", "carol")
        async with http.get(f"{base}/api/channels/carol-live") as resp:
            obs = (await resp.json())["rtmp"]
    assert "rtmps_server" not in obs and "rtmps_url" not in obs
    assert server.ingest.tls_port == 0


async def test_silent_and_garbage_tls_clients_are_dropped(settings_env, tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO)
    cert, key = make_pair(tmp_path / "tls")
    env = {**tls_env(settings_env, cert, key, free_port())}  # handshake_timeout 1.5 s
    async with running_server(env) as server:
        port = server.ingest.tls_port
        silent = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 10)
        garbage = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 10)
        garbage.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + os.urandom(4096))
        t0 = time.monotonic()
        try:
            assert await asyncio.to_thread(closed_by_peer, garbage, 30)
            # A socket that never sends a ClientHello is dropped at the handshake deadline.
            assert await asyncio.to_thread(closed_by_peer, silent, 30)
            assert time.monotonic() - t0 < 25
        finally:
            silent.close()
            garbage.close()

        # A client that does TLS but stalls inside the RTMP handshake: the same deadline.
        def tls_then_stall() -> bool:
            raw = socket.create_connection(("127.0.0.1", port), 10)
            with client_context().wrap_socket(raw) as tls:
                tls.sendall(b"\x03" + b"\x00" * 100)  # C0 + part of C1
                return closed_by_peer(tls, 30)

        assert await asyncio.to_thread(tls_then_stall)

        # TLS done, then bytes that are no TLS record: closed as well, no traceback.
        def tls_then_garbage() -> bool:
            raw = socket.create_connection(("127.0.0.1", port), 10)
            raw.settimeout(10)
            incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = client_context().wrap_bio(incoming, outgoing)
            with raw:
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        raw.sendall(outgoing.read())
                        incoming.write(raw.recv(65536))
                raw.sendall(outgoing.read())
                raw.sendall(b"\x17\x03\x03\x00\x20" + os.urandom(32))  # a forged record
                return closed_by_peer(raw, 30)

        assert await asyncio.to_thread(tls_then_garbage)

        def rejected(reason: str) -> float:
            return server.metrics.sample("aethex_rtmp_rejected_total", reason=reason) or 0

        assert rejected("tls_error") >= 2
        assert rejected("handshake_timeout") >= 2

        async def all_gone() -> bool:
            return server.metrics.sample("aethex_rtmp_connections") == 0

        await until(all_gone, 20, "every connection closed")
    assert "TLS handshake failed" in caplog.text and "TLS record failed" in caplog.text
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], [
        r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR
    ]
    assert "Traceback" not in caplog.text


async def test_tls_port_has_the_same_per_address_cap(settings_env, tmp_path) -> None:
    cert, key = make_pair(tmp_path / "tls")
    env = {
        **tls_env(settings_env, cert, key, free_port()),
        "AETHEX_RTMP__MAX_CONNECTIONS_PER_ADDRESS": "2",
        "AETHEX_RTMP__HANDSHAKE_TIMEOUT": "30",
    }
    async with running_server(env) as server:
        port = server.ingest.tls_port
        held = [
            await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 10)
            for _ in range(2)
        ]
        # Silent sockets that have not begun TLS count: the third is refused at once.
        third = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", port), 10)
        try:
            assert await asyncio.to_thread(closed_by_peer, third, 10)
            assert server.metrics.sample("aethex_rtmp_rejected_total", reason="per_address_cap")
            for s in held:
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    s.recv(1)  # still open
        finally:
            third.close()
            for s in held:
                s.close()


def rtmp_handshake_over(tls: ssl.SSLSocket) -> bytes:
    """C0+C1 out, S0+S1 back: the connection carries RTMP."""
    tls.sendall(b"\x03" + bytes(1536))
    got = b""
    tls.settimeout(10)
    while len(got) < 1537:
        chunk = tls.recv(4096)
        assert chunk, "closed during the RTMP handshake"
        got += chunk
    return got[:1]


async def test_sighup_reloads_the_certificate(settings_env, tmp_path) -> None:
    live_dir = tmp_path / "live"
    cert, key = make_pair(live_dir)
    first = file_fingerprint(cert)
    new_cert, new_key = make_pair(tmp_path / "renewed", "renewed")
    second = file_fingerprint(new_cert)
    other_cert, _ = make_pair(tmp_path / "other", "other")
    tls_port = free_port()
    env = {
        k: v
        for k, v in tls_env(settings_env, cert, key, tls_port).items()
        if k not in ("AETHEX_HTTP_PORT", "AETHEX_RTMP_PORT", "AETHEX_DATA_DIR")
    }
    env["AETHEX_RTMP__HANDSHAKE_TIMEOUT"] = "60"
    env["AETHEX_RTMP__PUBLISH_TIMEOUT"] = "60"
    env["AETHEX_RTMP__IDLE_TIMEOUT"] = "120"
    async with serve_process(env, tmp_path / "data") as proc:
        await asyncio.to_thread(wait_port, tls_port, SERVE_READY, proc.proc)
        assert await asyncio.to_thread(served_fingerprint, tls_port) == first

        # A connection made before the reload keeps its certificate and keeps working.
        raw = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", tls_port), 10)
        old = client_context().wrap_socket(raw)
        try:
            der = old.getpeercert(binary_form=True)
            assert der is not None and hashlib.sha256(der).hexdigest() == first

            # Renew: the new pair replaces the files (as certbot's deploy would), then SIGHUP.
            os.replace(new_cert, cert)
            os.replace(new_key, key)
            proc.proc.send_signal(signal.SIGHUP)

            async def renewed() -> bool:
                return await asyncio.to_thread(served_fingerprint, tls_port) == second

            await until(renewed, 30, "the renewed certificate on new connections")

            # The log line reaches us through a pipe and a reader thread: wait for it too.
            async def logged() -> bool:
                return "RTMPS certificate replaced" in proc.log()

            await until(logged, 30, "the replacement in the log")
            assert await asyncio.to_thread(rtmp_handshake_over, old) == b"\x03"
        finally:
            old.close()

        # A broken pair (the key is not the certificate's) is refused and the current one kept.
        os.replace(other_cert, cert)
        proc.proc.send_signal(signal.SIGHUP)

        async def refused() -> bool:
            return "keeping the current RTMPS certificate" in proc.log()

        await until(refused, 30, "the refused reload in the log")
        assert "is not the key of the certificate" in proc.log()
        assert await asyncio.to_thread(served_fingerprint, tls_port) == second
        assert proc.poll() is None
        assert "Traceback" not in proc.log()


def test_settings_check_the_pair(tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path / "a", "a")
    other_cert, other_key = make_pair(tmp_path / "b", "b")
    base = {"AETHEX_DATA_DIR": str(tmp_path / "data")}

    def error(**settings: str) -> SettingsError:
        env = {**base, **{f"AETHEX_RTMP__{k.upper()}": v for k, v in settings.items()}}
        with pytest.raises(SettingsError) as info:
            load_settings(None, env=env)
        return info.value

    ok = load_settings(None, env=tls_env(base, cert, key, 1936))
    assert (ok.rtmp.tls_port, ok.rtmp.tls_cert_file) == (1936, str(cert))
    assert ok.rtmps_public_url.startswith("rtmps://") and ok.rtmps_public_url.endswith(":1936/live")
    assert load_settings(None, env=base).rtmps_public_url == ""  # off by default

    e = error(tls_port="1936")
    assert (e.key, e.reason) == ("rtmp.tls_cert_file", "is required when rtmp.tls_port is set")
    e = error(tls_port="1936", tls_cert_file=str(cert))
    assert e.key == "rtmp.tls_key_file" and "required" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(tmp_path / "nope.crt"), tls_key_file=str(key))
    assert e.key == "rtmp.tls_cert_file" and "file not found" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(tmp_path / "x.key"))
    assert e.key == "rtmp.tls_key_file" and "file not found" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(other_key))
    assert e.key == "rtmp.tls_key_file" and "is not the key of the certificate" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(key), tls_key_file=str(key))  # swapped
    assert e.key == "rtmp.tls_cert_file" and "no PEM certificate" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(other_cert))
    assert e.key == "rtmp.tls_key_file" and "no PEM private key" in e.reason
    e = error(tls_port="1936", tls_cert_file=str(tmp_path), tls_key_file=str(key))
    assert e.key == "rtmp.tls_cert_file" and "directory" in e.reason
    e = error(tls_port="1935", tls_cert_file=str(cert), tls_key_file=str(key))
    assert e.key == "rtmp.tls_port" and "rtmp.port" in e.reason
    e = error(tls_port="70000")
    assert e.key == "rtmp.tls_port"
    # Unreadable: root reads anything, so only check it as another user.
    if os.geteuid() != 0:
        locked = tmp_path / "locked.key"
        locked.write_bytes(key.read_bytes())
        locked.chmod(0)
        e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(locked))
        assert e.key == "rtmp.tls_key_file" and "cannot read" in e.reason
    # A key that is not PEM text at all.
    binary = tmp_path / "binary.key"
    binary.write_bytes(b"\x30\x82\xff\xfe" * 64)
    e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(binary))
    assert e.key == "rtmp.tls_key_file" and "not a PEM file" in e.reason
    # An encrypted key would need a passphrase the server has no way to ask for.
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        subprocess.run(
            ["openssl", "pkey", "-in", str(key), "-aes256", "-passout", "pass:secret"],
            check=True,
            capture_output=True,
        ).stdout
    )
    e = error(tls_port="1936", tls_cert_file=str(cert), tls_key_file=str(encrypted))
    assert e.key == "rtmp.tls_key_file" and "encrypted" in e.reason
    # TOML too, with the settings' names.
    toml = tmp_path / "aethex.toml"
    toml.write_text(f'[rtmp]\ntls_port = 1936\ntls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
    assert load_settings(toml, env=base).rtmp.tls_key_file == str(key)


def test_cli_channel_create_json_has_the_rtmps_url(tmp_path: Path) -> None:
    cert, key = make_pair(tmp_path / "tls")
    repo = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AETHEX_")}
    env |= tls_env(
        {
            "AETHEX_DATA_DIR": str(tmp_path / "data"),
            "AETHEX_RTMP__PUBLIC_URL": "rtmp://stream.example.org/live",
            "PYTHONPATH": str(repo),
        },
        cert,
        key,
        1936,
    )

    def aethex(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "mediaserver", *args],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=repo,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        return result

    aethex("user", "create", "dana", "--email", "dana@example.org")
    create = ("channel", "create", "--owner", "dana", "--json", "--slug")
    info = json.loads(aethex(*create, "dd").stdout)
    assert info["rtmp_url"] == "rtmp://stream.example.org/live"
    assert info["rtmps_url"] == "rtmps://stream.example.org:1936/live"
    assert info["rtmps_publish_url"] == f"rtmps://stream.example.org:1936/live/{info['stream_key']}"
    text = aethex("channel", "create", "--owner", "dana", "--slug", "ee").stdout
    assert "rtmps://stream.example.org:1936/live" in text
    env["AETHEX_RTMP__TLS_PORT"] = "0"
    info = json.loads(aethex(*create, "ff").stdout)
    assert "rtmps_url" not in info
