"""Creator tools against their references, in one run (issue 13):

1. a 30 s clip from a 1080p recording: our smart cut (whole GOPs copied, only the edges
   re-encoded) against ``ffmpeg -ss -to`` re-encoding the whole clip; goal: our time at most
   0.3x ffmpeg's (benchmarks.lib.clips_vod_cut);
2. the MP4 download of a 10-minute 1080p rendition (a faststart MP4 streamed from the fMP4
   segments) against ``ffmpeg -c copy -movflags +faststart`` of the same HLS; goal: throughput
   at least 0.8x ffmpeg's (benchmarks.lib.clips_vod_download);
3. the analytics dashboard's queries on a year of rollups for 10,000 channels; goal: p99 under
   50 ms (benchmarks.lib.clips_vod_analytics).

Each part measures its reference in the same run and prints ratios and absolute figures
(medians of several runs); this driver runs them in turn and repeats each part's summary at
the end. ``--quick`` makes every part small: a check that it runs, not figures to quote.

    .venv/bin/python benchmarks/clips_vod.py [--quick] [--only cut,download,analytics]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script: the repository root on sys.path, for benchmarks.lib and the server's code.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.lib import (
    clips_vod_analytics,
    clips_vod_cut,
    clips_vod_download,
)

PARTS: dict[str, Callable[[bool], list[str]]] = {
    "cut": clips_vod_cut.run,
    "download": clips_vod_download.run,
    "analytics": clips_vod_analytics.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs: a check, not figures")
    parser.add_argument(
        "--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}"
    )
    args = parser.parse_args()
    wanted = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = [p for p in wanted if p not in PARTS]
    if unknown:
        parser.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    summaries: dict[str, list[str]] = {}
    for name in wanted:
        print(f"=== {name} ===", flush=True)
        started = time.monotonic()
        lines = PARTS[name](args.quick)
        for line in lines:
            print(line, flush=True)
        summaries[name] = lines
        print(f"({name}: {time.monotonic() - started:.0f} s)", flush=True)
    print("=== summary ===")
    for name, lines in summaries.items():
        for line in lines[-3:]:
            print(f"{name}: {line}")


if __name__ == "__main__":
    main()
