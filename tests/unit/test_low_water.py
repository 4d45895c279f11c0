"""When a publisher's socket gets a read low-water mark (mediaserver/ingest/low_water.py)."""

from __future__ import annotations

from mediaserver.ingest.low_water import low_water_for
from mediaserver.live import IngestStats, MediaKind, MediaPacket

MARK = 2048


def stats_of(fps: int, frame_bytes: int, seconds: float = 3.0) -> IngestStats:
    """A publisher's figures after ``seconds`` of video at ``fps`` frames of ``frame_bytes``,
    with AAC audio between them, fed with wall-clock times as ingest feeds them."""
    stats = IngestStats()
    frames = int(fps * seconds)
    for i in range(frames):
        now = i / fps
        dts = round(1000 * i / fps)
        stats.record(
            MediaPacket(MediaKind.VIDEO, "avc1", dts, dts, i % fps == 0, b"v" * frame_bytes), now
        )
        stats.record(MediaPacket(MediaKind.AUDIO, "mp4a", dts, dts, True, b"a" * 300), now)
    return stats


def test_steady_video_with_frames_over_twice_the_mark_gets_it() -> None:
    stats = stats_of(30, 6000)
    assert low_water_for(stats, 3.0, 2.99, MARK, 0.1) == MARK


def test_small_frames_slow_video_audio_only_or_a_quiet_publisher_get_none() -> None:
    assert low_water_for(stats_of(30, 3000), 3.0, 2.99, MARK, 0.1) == 0  # frames too small
    assert low_water_for(stats_of(10, 50_000), 3.0, 2.99, MARK, 0.1) == 0  # too few a second
    audio_only = IngestStats()
    for i in range(200):
        audio_only.record(
            MediaPacket(MediaKind.AUDIO, "mp4a", i * 21, i * 21, True, b"a" * 300), i * 0.021
        )
    assert low_water_for(audio_only, 4.2, 4.19, MARK, 0.1) == 0
    assert low_water_for(stats_of(30, 6000), 3.0, 2.8, MARK, 0.1) == 0  # no read for 0.2 s
    assert low_water_for(stats_of(30, 6000), 3.0, 2.99, 0, 0.1) == 0  # the setting is off
