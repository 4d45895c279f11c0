"""The barcode clock's command line and its old names.

    python benchmarks/clock.py publish URL [--seconds 60] [--size 1280x720] [--log FILE]

publishes barcoded 720p30 H.264 and silent AAC in real time (``benchmarks/lib/publisher.py``).
The clock itself is ``benchmarks/lib/barcode.py``; the names below stay importable from here
because the clock's unit test and the glass-to-glass browser test reach it as ``clock``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.lib import ROOT
from benchmarks.lib import publisher as _publisher
from benchmarks.lib.barcode import (
    COLS,
    READ_JS,
    ROWS,
    band_height,
    draw,
    read,
    stamp_luma,
)
from benchmarks.lib.publisher import (
    Picture as _Picture,
)
from benchmarks.lib.publisher import (
    PublisherOptions,
    publish,
    read_publisher_log,
    start_publisher,
)
from benchmarks.lib.server import stop_process

__all__ = [
    "COLS",
    "READ_JS",
    "ROOT",
    "ROWS",
    "PublisherOptions",
    "_Picture",
    "band_height",
    "draw",
    "publish",
    "read",
    "read_publisher_log",
    "stamp_luma",
    "start_publisher",
    "stop_process",
]


def main() -> None:
    ap = argparse.ArgumentParser(description="barcode clock helpers")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser(
        "publish",
        add_help=False,
        help="publish barcoded 720p30 H.264 + silent AAC over RTMP "
        "(publish --help for its options)",
    )
    _, rest = ap.parse_known_args()
    _publisher.main(rest, prog="clock.py publish")


if __name__ == "__main__":
    main()
