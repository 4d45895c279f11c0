"""The benchmarks' server: ``aethex serve`` (``server.ServerProcess``) with the latency
settings, one user and ``channels`` channels ``bench-0``… made through storage.queries.

Why its own settings: a benchmark measures the product as deployed behind a reverse proxy
(every client on 127.0.0.1, so the per-address cap is off, as there), with the segment and
part durations and the transcoder preset each script varies, and a warning-level log so the
server's output does not drown the figures.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.lib.server import SERVE, ServerProcess, free_port
from mediaserver.settings import load_settings
from storage import Database, queries, upgrade


@dataclass
class LiveServer:
    """Ports are chosen at construction; ``prepare`` makes the database and the channels,
    ``start`` runs the server until both ports accept, ``stop`` ends it with SIGTERM."""

    workdir: Path
    passthrough: str = "auto"
    preset: str = "veryfast"
    segment: float = 2.0
    part: float = 0.333
    channels: int = 1
    transcode: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    # None: the server's output goes to our terminal; a path: appended to that file.
    log_path: Path | None = None
    process: ServerProcess | None = None

    def __post_init__(self) -> None:
        self.dir = self.workdir / "aethex"
        self.rtmp_port = free_port()
        self.http_port = free_port()

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The running server's process (its pid for /proc readings), None before ``start``."""
        return self.process.proc if self.process is not None else None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "AETHEX_DATA_DIR": str(self.dir),
            "AETHEX_RTMP_HOST": "127.0.0.1",
            "AETHEX_RTMP_PORT": str(self.rtmp_port),
            "AETHEX_HTTP_HOST": "127.0.0.1",
            "AETHEX_HTTP_PORT": str(self.http_port),
            "AETHEX_LOG__LEVEL": "warning",
            "AETHEX_TRANSCODE__ENABLED": "true" if self.transcode else "false",
            "AETHEX_TRANSCODE__PRESET": self.preset,
            "AETHEX_TRANSCODE__PASSTHROUGH": self.passthrough,
            "AETHEX_HLS__SEGMENT_DURATION": str(self.segment),
            "AETHEX_HLS__PART_DURATION": str(self.part),
            "AETHEX_RTMP__IDLE_TIMEOUT": "30",
            # Every client of a benchmark is on 127.0.0.1, as behind a reverse proxy: the
            # cap against one address flooding the server is off (0), as there.
            "AETHEX_HTTP__MAX_CONNECTIONS_PER_ADDRESS": "0",
            **self.extra_env,
        }

    def prepare(self) -> None:
        settings = load_settings(None, env=self.env())
        upgrade(settings.effective_database_url)

        async def create() -> list[str]:
            db = Database(settings.effective_database_url)
            await db.connect()
            keys = []
            async with db.session() as s:
                await queries.create_user(s, "bench", "bench@example.test", None)
                for i in range(self.channels):
                    ch = await queries.create_channel(s, "bench", f"bench-{i}")
                    keys.append(ch.stream_key)
                await s.commit()
            await db.dispose()
            return keys

        self.keys = asyncio.run(create())

    def serve_command(self) -> list[str]:
        return list(SERVE)

    def start(self) -> int:
        self.process = ServerProcess(
            self.env(),
            self.log_path,
            echo=True,
            http_port=self.http_port,
            rtmp_port=self.rtmp_port,
            command=self.serve_command(),
        )
        self.process.wait_ready(60)
        return self.process.pid

    def rtmp_url(self, i: int = 0) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.keys[i]}"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def metric(self, name: str) -> float:
        """The value of an unlabelled sample on /metrics (``aethex_streams_live``), NaN when
        it is not there: what a benchmark waits on instead of guessing a ramp."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
        return float("nan")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(20)
