"""A real Varnish (Debian's varnishd 7.1) in front of a test server, with the project's own VCL
(config/varnish/aethex.vcl) and only its backend address changed: the runner of
benchmarks/lib/varnish.py, failing (under CI) or skipping when varnishd is missing.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.lib.varnish import VarnishServer as _VarnishServer
from benchmarks.lib.varnish import find_varnishd, vcl_for
from tests.redis_server import missing

__all__ = ["VarnishServer", "vcl_for"]


class VarnishServer(_VarnishServer):
    def __init__(self, backend_port: int, directory: Path, backend_host: str = "127.0.0.1"):
        if find_varnishd() is None:
            missing("varnishd (Debian package varnish)")
        super().__init__(backend_port, directory, backend_host)
