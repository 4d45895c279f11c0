"""Dashboard health: figures computed from the running counters, and the warnings' thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mediaserver.live import (
    CodecConfig,
    HealthPolicy,
    LiveStream,
    MediaKind,
    MediaPacket,
    TranscodeProbe,
)
from mediaserver.live.health import bitrate_warning, keyframe_warning

V, A = MediaKind.VIDEO, MediaKind.AUDIO
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Plan:
    name: str
    video_kbps: int
    maxrate_kbps: int
    passthrough: bool = False


def feed(
    stream: LiveStream,
    *,
    seconds: float,
    fps: int = 30,
    gop_s: float = 2.0,
    frame_bytes: int = 10_000,
    t0: float = 100.0,
) -> float:
    """Publish ``seconds`` of video (and AAC every ~21 ms) with wall time = media time."""
    frames = int(seconds * fps)
    gop = round(gop_s * fps)
    now = t0
    for i in range(frames):
        dts = round(i * 1000 / fps)
        now = t0 + dts / 1000
        stream.publish(MediaPacket(V, "avc1", dts, dts, i % gop == 0, b"x" * frame_bytes), now)
        stream.publish(MediaPacket(A, "mp4a", dts, dts, True, b"a" * 300), now)
    return now


def make_stream(**policy: float) -> LiveStream:
    s = LiveStream(channel_id=1, slug="chan", stream_id=7, started_at=NOW, queue_size=8)
    s.health_policy = HealthPolicy(**policy)
    s.set_config(CodecConfig(V, "avc1", b"cfg"))
    s.set_config(CodecConfig(A, "mp4a", b"asc", 48000, 2))
    s.metadata = {"width": 1280, "height": 720, "encoder": "obs-output module"}
    return s


def test_ingest_figures_come_from_the_packets() -> None:
    s = make_stream()
    end = feed(s, seconds=6, fps=30, gop_s=2.0, frame_bytes=10_000)
    h = s.health(now=end)
    ing = h["ingest"]
    # 10 000 bytes x 30 fps = 2400 kbit/s of video (plus 300 B per frame of audio).
    assert 2300 < ing["video_kbps"] < 2500, ing
    assert ing["bitrate_kbps"] > ing["video_kbps"]
    assert 29.5 < ing["frame_rate"] < 30.5
    assert ing["keyframe_interval_s"] == 2.0
    assert (ing["width"], ing["height"]) == (1280, 720)
    assert ing["video_codec"] == "avc1" and ing["audio_codec"] == "mp4a"
    assert ing["audio_sample_rate"] == 48000 and ing["audio_channels"] == 2
    assert ing["encoder"] == "obs-output module"
    assert h["warnings"] == [] and h["transcode"] is None


def test_a_stall_pulls_the_bitrate_down_and_warns() -> None:
    s = make_stream()
    end = feed(s, seconds=5)
    live = s.health(now=end)["ingest"]["video_kbps"]
    later = s.health(now=end + 5)
    assert later["ingest"]["video_kbps"] < live / 1.5
    assert [w["code"] for w in later["warnings"]] == ["stalled"]


def test_keyframe_interval_must_fit_the_segment_duration() -> None:
    long = make_stream(segment_duration=2.0)
    end = feed(long, seconds=12, gop_s=4.0)
    codes = [w["code"] for w in long.health(now=end)["warnings"]]
    assert codes == ["keyframe_interval_long"]
    uneven = make_stream(segment_duration=2.0)
    end = feed(uneven, seconds=8, gop_s=1.5)
    assert [w["code"] for w in uneven.health(now=end)["warnings"]] == ["keyframe_interval_uneven"]
    half = make_stream(segment_duration=2.0)
    end = feed(half, seconds=8, gop_s=1.0)
    assert half.health(now=end)["warnings"] == []
    # Pure threshold checks, including the "none seen yet" case.
    assert keyframe_warning(None, 2.0, 1.0) is None
    assert keyframe_warning(None, 2.0, 10.0)["code"] == "no_keyframes"  # type: ignore[index]
    assert keyframe_warning(2.04, 2.0, 10.0) is None


def test_a_scene_cut_keyframe_does_not_shorten_the_reported_gop() -> None:
    s = make_stream()
    t = 0.0
    for dts, key in ((0, True), (2000, True), (2500, True), (4000, True)):
        t = 100 + dts / 1000
        s.publish(MediaPacket(V, "avc1", dts, dts, key, b"x"), t)
    assert s.health(now=t)["ingest"]["keyframe_interval_s"] == 2.0


def test_bitrate_against_the_top_rung() -> None:
    policy = HealthPolicy()
    top = Plan("1080p", 6000, 6600)
    assert bitrate_warning(1000, top, policy, 10)["code"] == "bitrate_low"  # type: ignore[index]
    assert bitrate_warning(5000, top, policy, 10) is None
    assert bitrate_warning(20000, top, policy, 10)["code"] == "bitrate_high"  # type: ignore[index]
    # Not before the figures settle, and not without a ladder.
    assert bitrate_warning(1000, top, policy, 1) is None
    assert bitrate_warning(1000, None, policy, 10) is None
    # A copied top rung is the source itself: judged against its peak rate.
    copied = Plan("1080p", 6000, 6600, passthrough=True)
    assert bitrate_warning(12000, copied, policy, 10) is None
    assert bitrate_warning(14000, copied, policy, 10)["code"] == "bitrate_high"  # type: ignore[index]


def test_transcoder_figures_and_warnings_per_rung() -> None:
    s = make_stream()
    end = feed(s, seconds=6, frame_bytes=2_000)  # 480 kbit/s against a 3000 kbit/s top rung
    stats = {
        "running": True,
        "speed": 0.8,
        "dropped_frames": 3,
        "decode_errors": 0,
        "renditions": {
            "720p": {
                "fps": 30.0,
                "speed": 1.01,
                "frames": 180,
                "dropped_frames": 0,
                "passthrough": False,
                "width": 1280,
                "height": 720,
            },
            "480p": {
                "fps": 24.0,
                "speed": 0.8,
                "frames": 150,
                "dropped_frames": 3,
                "passthrough": False,
                "width": 854,
                "height": 480,
            },
        },
    }
    plans = [Plan("720p", 3000, 3300), Plan("480p", 1200, 1320)]
    s.transcode_probe = TranscodeProbe(lambda: stats, lambda: plans)
    h = s.health(now=end)
    assert h["transcode"]["speed"] == 0.8 and h["transcode"]["running"] is True
    rungs = {r["name"]: r for r in h["transcode"]["renditions"]}
    assert rungs["480p"]["dropped_frames"] == 3 and rungs["480p"]["speed"] == 0.8
    assert rungs["720p"]["video_kbps"] == 3000 and rungs["720p"]["width"] == 1280
    codes = [w["code"] for w in h["warnings"]]
    assert codes == ["bitrate_low", "transcode_slow", "frames_dropped"]
    assert "480p" in h["warnings"][1]["message"] and "720p" not in h["warnings"][1]["message"]


def test_stop_publisher_calls_the_ingest_hook_once_live() -> None:
    s = make_stream()
    assert s.stop_publisher() is False  # nothing wired: not a publisher of ours
    calls: list[str] = []
    s.disconnect = calls.append
    assert s.stop_publisher("ended") is True and calls == ["ended"]
    s.end()
    assert s.stop_publisher() is False
