"""What the benchmark scripts share, one copy of each tool, and what the tests borrow from it.

Why a package of its own: the latency, delivery, chat, soak and ingest benchmarks all need the
same few tools (a picture clock, a PyAV publisher, an fMP4 and a playlist reader, a server in a
subprocess, /proc readings, nginx as the reference), and copies drift: a fix to one reader
never reached the other. The tests use the same fMP4 reader, publisher and server runner, so
what the benchmarks measure and what the tests check are read the same way.

Modules, each small and named for what it does:

- ``barcode``: frame index and send time drawn into the picture and read back (also in JS).
- ``publisher``: a real-time PyAV RTMP publisher, run in its own process.
- ``fmp4``: ISO BMFF boxes and CMAF fragments, read as a player does.
- ``part_decoder``: LL-HLS parts decoded and the barcode read off every frame.
- ``playlist``: LL-HLS media and master playlists, read as a player does.
- ``server``: ``aethex serve`` as a child process; ports, readiness and stopping.
- ``live_server``: the benchmarks' server set-up (settings, user, channels) on ``server``.
- ``procstats``: CPU, memory and contention readings from /proc.
- ``stats``: percentiles and medians.
- ``pyspy``: sampling profiles of the server with py-spy.
- ``nginx``: nginx as the reference server (RTMP ingest, static files).
- ``rtmp_probe``: a relay's added delay per frame (probe sender, probe receiver, the match).
- ``discovery_seed``: a platform's worth of rows (users, channels, follows, past broadcasts).
- ``seeded_live``: ``aethex serve`` with a seed's channels made live inside it.
- ``discovery_fanout``: a real go-live with 100,000 followers: fan-out and first playlist.
- ``ws_lean``: a lean WebSocket client (a Protocol per socket) for rooms of many viewers.

Scripts run as ``python benchmarks/NAME.py`` put the repository root on ``sys.path`` before
importing this package.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
"""The repository root: the working directory of every child process the tools start."""
