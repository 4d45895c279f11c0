"""The benchmarks' LL-HLS viewers in C (``benchmarks/lib/llhls_viewers.c``): they stand in for
thousands of hls.js players in the cluster benchmark, so a playlist read differently from the
Python viewer, or a body cut short or run together with the next answer, would turn into wrong
part numbers, sizes and delays there.

Its playlist parser is compared with ``benchmarks/lib/playlist.py`` on generated full and delta
playlists; the whole program plays a small LL-HLS server here that holds blocking reloads, writes
its answers in pieces, sizes them by Content-Length or chunked, and closes some connections."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.lib import c_viewers
from benchmarks.lib.playlist import parse_media_playlist

PARTS_PER_SEGMENT = 4


@pytest.fixture(scope="module")
def exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return c_viewers.build(tmp_path_factory.mktemp("c-viewers"))


def render(first: int, done: int, parts: int, skip: int, hint: bool, eol: str) -> str:
    """An LL-HLS media playlist: segments ``first``..``first+done-1`` complete, ``parts`` parts
    of the next one, the first ``skip`` segments replaced by EXT-X-SKIP, and a preload hint."""
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        "#EXT-X-TARGETDURATION:1",
        "#EXT-X-PART-INF:PART-TARGET=0.05",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=6.0,PART-HOLD-BACK=0.15",
        f"#EXT-X-MEDIA-SEQUENCE:{first}",
        '#EXT-X-MAP:URI="init.mp4"',
    ]
    if skip:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skip}")
    for msn in range(first + skip, first + done):
        for p in range(PARTS_PER_SEGMENT):
            indep = ",INDEPENDENT=YES" if p == 0 else ""
            lines.append(f'#EXT-X-PART:DURATION=0.05000,URI="part{msn}.{p}.m4s"{indep}')
        lines += ["#EXTINF:0.20000,", f"seg{msn}.m4s"]
    for p in range(parts):
        lines.append(f'#EXT-X-PART:DURATION=0.05000,URI="part{first + done}.{p}.m4s"')
    if hint:
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{first + done}.{parts}.m4s"')
    else:
        lines.append("#EXT-X-ENDLIST")
    return eol.join(lines) + eol


def c_parse(exe: Path, text: str, tmp: Path) -> dict:
    path = tmp / "playlist.m3u8"
    path.write_bytes(text.encode())
    out = subprocess.run([str(exe), "--parse", str(path)], capture_output=True, check=True)
    return json.loads(out.stdout)


def py_parse(text: str) -> dict:
    pl = parse_media_playlist(text)
    return {
        "parts": [[m, p, uri] for m, p, uri, _, _ in pl.parts],
        "hint": [pl.hint[0], pl.hint[1]] if pl.hint else None,
    }


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.integers(0, 10**6),
    done=st.integers(0, 5),
    parts=st.integers(0, PARTS_PER_SEGMENT - 1),
    skip=st.integers(0, 5),
    hint=st.booleans(),
    eol=st.sampled_from(["\n", "\r\n"]),
)
def test_the_parser_reads_playlists_as_the_python_viewer(
    exe: Path, tmp_path: Path, first: int, done: int, parts: int, skip: int, hint: bool, eol: str
) -> None:
    text = render(first, done, parts, min(skip, done), hint, eol)
    assert c_parse(exe, text, tmp_path) == py_parse(text)


# -- the whole program against a small LL-HLS server ------------------------------------------


def part_size(msn: int, part: int) -> int:
    return 700 + (msn * PARTS_PER_SEGMENT + part) * 37 % 5000


class FakeLive:
    """Publishes a part every ``interval`` seconds; answers playlists (holding blocking
    reloads until the part exists) and parts, in pieces, some chunked, some closing."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.published = 0  # parts so far, counted from msn 0 part 0
        self.changed = asyncio.Condition()
        self.answers = 0
        self.sessions: set[str] = set()

    def position(self) -> tuple[int, int]:
        return divmod(self.published, PARTS_PER_SEGMENT)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            async with self.changed:
                self.published += 1
                self.changed.notify_all()

    def playlist(self, skip_requested: bool) -> str:
        done, parts = self.position()
        first = max(0, done - 3)
        skip = max(0, done - first - 1) if skip_requested else 0
        return render(first, done - first, parts, skip, True, "\n")

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                await self.answer(target, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def answer(self, target: str, writer: asyncio.StreamWriter) -> None:
        path, _, query = target.partition("?")
        args = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
        if "session" in args:
            self.sessions.add(args["session"])
        status, body = 200, b""
        if path.endswith("index.m3u8"):
            if "_HLS_msn" in args:
                want = int(args["_HLS_msn"]) * PARTS_PER_SEGMENT + int(args["_HLS_part"])
                async with self.changed:
                    await self.changed.wait_for(lambda: self.published > want)
            body = self.playlist(args.get("_HLS_skip") == "YES").encode()
        elif m := re.fullmatch(r"/live/part(\d+)\.(\d+)\.m4s", path):
            msn, part = int(m.group(1)), int(m.group(2))
            if msn * PARTS_PER_SEGMENT + part < self.published:
                body = bytes([msn % 251]) * part_size(msn, part)
            else:
                status, body = 404, b"not yet"
        else:
            status, body = 404, b"no"
        self.answers += 1
        n = self.answers
        chunked, close = n % 3 == 0, n % 17 == 0
        head = f"HTTP/1.1 {status} X\r\nContent-Type: x\r\n"
        head += "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {len(body)}\r\n"
        head += "Connection: close\r\n\r\n" if close else "\r\n"
        if chunked:
            pieces = [body[i : i + 1000] for i in range(0, len(body), 1000)]
            payload = b"".join(b"%x;x=1\r\n%s\r\n" % (len(c), c) for c in pieces) + b"0\r\n\r\n"
        else:
            payload = body
        wire = head.encode() + payload
        step = 7 if n % 2 else len(wire)  # every other answer in small pieces
        for i in range(0, len(wire), step):
            writer.write(wire[i : i + step])
            await writer.drain()
        if close:
            writer.close()
            raise ConnectionError("closed after answering")


async def test_viewers_play_a_live_stream_and_record_every_part(exe: Path, tmp_path: Path) -> None:
    live = FakeLive(0.05)
    server = await asyncio.start_server(live.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    ticker = asyncio.ensure_future(live.run())
    out = tmp_path / "viewers.json"
    try:
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            f"http://127.0.0.1:{port}/live/index.m3u8",
            f"http://127.0.0.1:{port}/live/",
            "40",
            "3",
            "1.5",
            "0.2",
            str(out),
        )
        assert await proc.wait() == 0
    finally:
        ticker.cancel()
        server.close()
    data = json.loads(out.read_text())
    assert data["errors"] == {}
    assert live.sessions == {f"bench-viewer-{i:08d}" for i in (40, 41, 42)}
    assert len(data["records"]) == 3
    for recs in data["records"]:
        assert len(recs) >= 3
        seq = [m * PARTS_PER_SEGMENT + p for m, p, _, _, _ in recs]
        assert seq == list(range(seq[0], seq[0] + len(seq)))  # every part, in order, once
        for m, p, t_pl, t_part, size in recs:
            assert size == part_size(m, p)
            assert t_part >= t_pl
    assert data["cpu"] >= 0 and data["duration"] == 1.5


async def test_a_server_that_refuses_is_counted_not_fatal(exe: Path, tmp_path: Path) -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    out = tmp_path / "viewers.json"
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        f"http://127.0.0.1:{port}/live/index.m3u8",
        f"http://127.0.0.1:{port}/live/",
        "0",
        "2",
        "0.6",
        "0",
        str(out),
    )
    assert await proc.wait() == 0
    data = json.loads(out.read_text())
    assert data["records"] == [[], []]
    assert data["errors"].get("ConnectionRefusedError", 0) >= 2
