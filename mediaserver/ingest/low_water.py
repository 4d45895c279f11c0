"""When a publisher's socket may make the kernel hold small reads back (SO_RCVLOWAT).

Ingest's cost in Python is per wake-up, not per byte: with 20 publishers half the reads were a
lone audio frame of a few hundred bytes, each costing a whole pass through the event loop and
the parser. With a low-water mark the kernel reports the socket readable only once that many
bytes wait, so an audio frame rides along with the next video data.

The mark is only set while video flows steadily, because it must never hold media for long:
at 20 frames a second or more, each frame over twice the mark, the next video frame releases
whatever waits within 50 ms, and video frames themselves are never held. A publisher that goes
quiet (no read for ``quiet`` seconds) has the mark dropped, which the kernel answers by waking
us for whatever it held. Pure functions of the stream's figures; the sweeper applies them.
"""

from __future__ import annotations

from mediaserver.live import IngestStats

# Video must come at least this often (frames per second) for the mark to be set.
MIN_FRAME_RATE = 20.0


def low_water_for(stats: IngestStats, now: float, last_rx: float, mark: int, quiet: float) -> int:
    """The SO_RCVLOWAT a publishing socket should have now: ``mark`` or 0 (none)."""
    if mark <= 0 or now - last_rx > quiet:
        return 0
    fps = stats.frame_rate
    if fps < MIN_FRAME_RATE:
        return 0
    frame_bytes = stats.video_kbps(now) * 1000 / 8 / fps
    return mark if frame_bytes >= 2 * mark else 0
