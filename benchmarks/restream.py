"""Restream benchmark (issue 14): CPU of relaying 10 channels to 2 destinations each, ours
against nginx-rtmp's ``push`` relaying the same inputs, in the same run.

A receiving nginx-rtmp (two applications, ``live on``) stands for the platforms. Ours: our
server (no transcoder: the relay alone), 10 channels each with 2 destinations (one per
receiving application), 10 ``ffmpeg -re -c copy`` publishers. Reference: an nginx-rtmp with
``push`` to the same two applications, the same publishers. Each relay's CPU seconds (process
tree, /proc) over the same window; medians over rounds; the ratio ours / nginx (goal: at most
2.0). Ours is checked to have all 20 relays live at the end of each window (/metrics).

Not yet measured here: the added delay between a frame's arrival at our ingest and at the
destination (the issue's p95 < 100 ms goal).

    .venv/bin/python benchmarks/restream.py [--channels 10] [--seconds 15] [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib.live_server import LiveServer
from benchmarks.lib.nginx import RtmpNginx
from benchmarks.rtmp_ingest import cpu_seconds, make_source, start_publishers
from mediaserver.settings import load_settings
from storage import Database
from storage import restream as store

APPS = ("dest1", "dest2")


class Receiver(RtmpNginx):
    """The destinations: nginx-rtmp taking each relayed stream in one of two applications."""

    def body(self) -> str:
        apps = "".join(f"        application {a} {{ live on; record off; }}\n" for a in APPS)
        return f"""rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
{apps}    }}
}}"""


class PushNginx(RtmpNginx):
    """The reference relay: nginx-rtmp pushing every stream it takes to both applications."""

    def __init__(self, workdir: Path, receiver_port: int) -> None:
        super().__init__(workdir / "push")
        self.receiver_port = receiver_port

    def body(self) -> str:
        pushes = "".join(
            f"            push rtmp://127.0.0.1:{self.receiver_port}/{a};\n" for a in APPS
        )
        return f"""rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
{pushes}        }}
    }}
}}"""

    def urls(self, channels: int) -> list[str]:
        return [f"rtmp://127.0.0.1:{self.port}/live/bench{i}" for i in range(channels)]


class OurRelay(LiveServer):
    def __init__(self, workdir: Path, channels: int, receiver_port: int) -> None:
        super().__init__(
            workdir,
            channels=channels,
            transcode=False,
            extra_env={"AETHEX_RESTREAM__ALLOW_PRIVATE_ADDRESSES": "true"},
        )
        self.receiver_port = receiver_port

    def prepare(self) -> None:
        super().prepare()
        settings = load_settings(None, env=self.env())

        async def add() -> None:
            db = Database(settings.effective_database_url)
            await db.connect()
            async with db.session() as s:
                for i in range(self.channels):
                    for a in APPS:
                        await store.create_destination(
                            s,
                            i + 1,  # channel ids in creation order
                            name=a,
                            preset="custom",
                            ingest_url=f"rtmp://127.0.0.1:{self.receiver_port}/{a}",
                            stream_key=f"ours-{i}",
                        )
                await s.commit()
            await db.dispose()

        asyncio.run(add())

    def urls(self) -> list[str]:
        return [self.rtmp_url(i) for i in range(self.channels)]

    def live_relays(self) -> int:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as r:
            text = r.read().decode()
        return sum(
            1
            for line in text.splitlines()
            if line.startswith("aethex_restream_state{") and line.endswith(" 2.0")
        )


def window(pid: int, source: Path, urls: list[str], seconds: float) -> tuple[float, list]:
    """CPU seconds of ``pid``'s tree over ``seconds`` with all publishers up (after a ramp)."""
    ramp = 3.0
    pubs = start_publishers(source, urls, seconds + ramp + 2)
    time.sleep(ramp)
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - c0, pubs


def stop_all(pubs: list) -> None:
    for p in pubs:
        if p.poll() is None:
            p.terminate()
    for p in pubs:
        p.wait()


def run(channels: int, seconds: float, rounds: int) -> list[str]:
    lines = []
    with tempfile.TemporaryDirectory(prefix="aethex-restream-") as tmp:
        work = Path(tmp)
        source = work / "source.flv"
        make_source(source)
        receiver = Receiver(work / "receiver")
        receiver.start()
        try:
            ours = OurRelay(work, channels, receiver.port)
            ours.prepare()
            push = PushNginx(work, receiver.port)
            push.prepare()
            cpu: dict[str, list[float]] = {"ours": [], "nginx": []}
            for r in range(rounds):
                pid = ours.start()
                try:
                    used, pubs = window(pid, source, ours.urls(), seconds)
                    live = ours.live_relays()
                    stop_all(pubs)
                finally:
                    ours.stop()
                cpu["ours"].append(used)
                lines.append(f"  round {r + 1} ours : {used:.2f} CPU-s, {live} relays live")
                if live != 2 * channels:
                    lines.append(f"  WARNING: {live} of {2 * channels} relays were live")
                pid = push.start()
                try:
                    used, pubs = window(pid, source, push.urls(channels), seconds)
                    stop_all(pubs)
                finally:
                    push.stop()
                cpu["nginx"].append(used)
                lines.append(f"  round {r + 1} nginx: {used:.2f} CPU-s")
                print("\n".join(lines[-2:]), flush=True)
        finally:
            receiver.stop()
    ours_cpu, nginx_cpu = statistics.median(cpu["ours"]), statistics.median(cpu["nginx"])
    ratio = ours_cpu / nginx_cpu if nginx_cpu > 0 else float("inf")
    verdict = "meets" if ratio <= 2.0 else "MISSES"
    lines += [
        f"  ours : {ours_cpu:.2f} CPU-s (median) relaying {channels} x {len(APPS)}",
        f"  nginx: {nginx_cpu:.2f} CPU-s (median) with push",
        f"  ratio ours/nginx CPU: {ratio:.2f}  ({verdict} the goal of at most 2.0)",
    ]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--channels", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 round of 8 s")
    args = ap.parse_args()
    rounds, seconds = (1, 8.0) if args.quick else (args.rounds, args.seconds)
    print(
        f"Restream: {args.channels} channels x {len(APPS)} destinations (nginx-rtmp receiver), "
        f"{seconds:.0f} s x {rounds} rounds, ours vs nginx-rtmp push"
    )
    for line in run(args.channels, seconds, rounds):
        print(line)


if __name__ == "__main__":
    main()
