"""Our server with ingest cut short at a layer, for ``rtmp_ingest.py --layers``: where the CPU
of 20 publishers goes, measured rather than guessed from a profiler on a VM.

Why cut the server instead of profiling it: sampling profilers (py-spy here) catch too few of
the loop's short wake-ups to apportion them, and an instrumented read costs more than the read;
taking a layer away and measuring the whole process's CPU over the same load says what the
layer costs, in the same run as the reference.

Layers, each with everything below it:

- ``receive``: the event loop and the kernel. Once a publisher is live, each socket read is
  dropped as it arrives (the handshake and commands run as usual).
- ``parse``: the sans-I/O core too. Each read goes through ``ServerConnection.receive_data``
  (chunks, messages, FLV tags, events, acknowledgements) and the events are dropped.
- ``full``: the server as it runs: the events handed to the live stream as well.

In the cut layers the read low-water mark is held at ``rtmp.read_low_water`` (the sweeper sets
it from figures those layers no longer produce), as a steady publisher has it in ``full``, so
every layer sees the same reads. ``QUIET`` slows the platform's periodic work (bell, webhooks,
restream refresh, analytics, viewer counts, points and polls) to once an hour, which separates
its share from ingest's.
"""

from __future__ import annotations

from typing import Any

LAYERS = ("receive", "parse", "full")

QUIET = {
    f"AETHEX_{name}": "3600"
    for name in (
        "HLS__VIEWER_UPDATE_INTERVAL",
        "NOTIFICATIONS__POLL_INTERVAL",
        "NOTIFICATIONS__RECOUNT_INTERVAL",
        "EMAIL__SEND_INTERVAL",
        "WEBHOOKS__POLL_INTERVAL",
        "ANALYTICS__SAMPLE_INTERVAL",
        "ANALYTICS__ROLLUP_INTERVAL",
        "ANALYTICS__WATCH_FLUSH_INTERVAL",
        "RESTREAM__REFRESH_INTERVAL",
        "HISTORY__FLUSH_INTERVAL",
        "POINTS__FLUSH_INTERVAL",
        "POINTS__PUBLISH_INTERVAL",
        "POLLS__TALLY_INTERVAL",
    )
}


def cut(layer: str) -> None:
    """Patch ingest to stop at ``layer`` (one of LAYERS); before the server starts."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}: one of {', '.join(LAYERS)}")
    if layer == "full":
        return
    # Imported here: the benchmark's own process only needs LAYERS and QUIET.
    from mediaserver.ingest import server as ingest

    whole = ingest.RtmpSession.data_received

    def held_mark(stats: Any, now: float, last_rx: float, mark: int, quiet: float) -> int:
        return mark

    ingest.low_water_for = held_mark

    def data_received(self: ingest.RtmpSession, data: bytes) -> None:
        if self.stream is None or self.closing:
            whole(self, data)  # handshake, commands, the publish decision
            return
        self.last_rx = now = self.server.loop.time()
        if layer == "parse":
            self.conn.receive_data(data, now)
            self._flush()

    ingest.RtmpSession.data_received = data_received  # type: ignore[method-assign]
