"""nginx as the reference a benchmark compares us with: nginx-rtmp for ingest, plain nginx for
static files (the segments a CDN origin would serve).

Why nginx, and why configured like this: it is what people put in front of (or instead of) a
streaming server, so "within 2x of nginx" is a ratio a reader can judge. One worker process
on the same machine, in the foreground, with its own prefix directory, so its CPU is the
master plus that worker (``procstats.tree_cpu_seconds``) and nothing outlives the run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

from benchmarks.lib.server import free_port, wait_port

RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


class Nginx:
    """``nginx -p DIR -c DIR/nginx.conf`` on a free loopback port; subclasses give the
    configuration's main block."""

    missing = "nginx is needed as the reference: run `make bench-deps`"
    modules: tuple[str, ...] = ()
    worker_connections = 1024

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / "nginx"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def body(self) -> str:
        raise NotImplementedError

    def extra(self) -> str:
        """More of the configuration's main level after ``body`` (none here)."""
        return ""

    def prepare(self) -> None:
        """Check that nginx (and its modules) are installed and write the configuration."""
        if not shutil.which("nginx") or not all(Path(m).exists() for m in self.modules):
            raise SystemExit(self.missing)
        (self.dir / "logs").mkdir(parents=True, exist_ok=True)
        load = "".join(f"load_module {m};\n" for m in self.modules)
        (self.dir / "nginx.conf").write_text(f"""
{load}daemon off;
master_process on;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/logs/error.log warn;
events {{ worker_connections {self.worker_connections}; }}
{self.body()}
{self.extra()}
""")

    def start(self) -> int:
        if not (self.dir / "nginx.conf").exists():
            self.prepare()
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf")]
        )
        wait_port(self.port, 30.0, self.proc)
        return self.proc.pid

    def stop(self) -> None:
        """SIGQUIT (graceful: workers finish their requests), SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class RtmpNginx(Nginx):
    """nginx-rtmp taking publishers on ``rtmp://127.0.0.1:PORT/live/NAME``, no recording."""

    missing = "nginx with libnginx-mod-rtmp is needed: run `make bench-deps`"
    modules = (RTMP_MODULE,)

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.stat_port = free_port()

    def extra(self) -> str:
        """The module's statistics page on its own loopback port: how a benchmark waits until
        every publisher is live (or every push is up) instead of guessing a ramp. Idle while
        nobody asks, so it costs nothing in a CPU window."""
        return f"""http {{
    access_log off;
    client_body_temp_path {self.dir}/tmp;
    proxy_temp_path {self.dir}/tmp;
    fastcgi_temp_path {self.dir}/tmp;
    uwsgi_temp_path {self.dir}/tmp;
    scgi_temp_path {self.dir}/tmp;
    server {{
        listen 127.0.0.1:{self.stat_port};
        location /stat {{ rtmp_stat all; }}
    }}
}}"""

    def stat(self) -> ET.Element:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stat_port}/stat", timeout=10) as r:
            return ET.fromstring(r.read())

    def publishing(self) -> int:
        """Streams with a publisher now (the stat page's ``<stream>`` with ``<publishing/>``)."""
        return sum(s.find("publishing") is not None for s in self.stat().iter("stream"))

    def body(self) -> str:
        return f"""rtmp {{
    server {{
        listen 127.0.0.1:{self.port};
        chunk_size 4096;
        application live {{
            live on;
            record off;
        }}
    }}
}}"""


class StaticNginx(Nginx):
    """nginx serving the files of ``root`` under ``/static/``, with sendfile, as an origin."""

    worker_connections = 4096

    def __init__(self, workdir: Path, root: Path) -> None:
        super().__init__(workdir)
        self.root = root

    def body(self) -> str:
        return f"""http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    types {{ video/mp4 m4s mp4; }}
    client_body_temp_path {self.dir}/tmp;
    proxy_temp_path {self.dir}/tmp;
    fastcgi_temp_path {self.dir}/tmp;
    uwsgi_temp_path {self.dir}/tmp;
    scgi_temp_path {self.dir}/tmp;
    server {{
        listen 127.0.0.1:{self.port};
        location /static/ {{
            alias {self.root}/;
        }}
    }}
}}"""
