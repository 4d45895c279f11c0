"""The benchmarks' looping publisher (``benchmarks.lib.publisher.replay``): the cluster
benchmark encodes a few seconds once and sends them again and again, so that no encoder shares
the two cores with what it measures. A join between two passes with a timestamp going back, a
pass that does not start on a keyframe, or packets sent faster than real time would each feed
the server something no encoder sends."""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import av
import pytest

from benchmarks.lib.publisher import PublisherOptions, publish, replay
from benchmarks.lib.publisher import main as publisher_main

FPS = 30
PERIOD = 1.0  # seconds encoded once
SECONDS = 2.5  # seconds sent: two whole passes and half of a third


def test_replay_sends_the_loop_again_with_timestamps_that_go_on(tmp_path: Path) -> None:
    material = tmp_path / "loop.flv"
    opts = PublisherOptions(width=320, height=240, fps=FPS, gop_seconds=0.5, seconds=PERIOD)
    assert publish(str(material), opts, realtime=False) == FPS * PERIOD

    out = tmp_path / "sent.flv"
    t0 = time.monotonic()
    sent = replay(str(out), material, PERIOD, SECONDS, threading.Event())
    elapsed = time.monotonic() - t0

    video: list[tuple[float, bool]] = []
    audio: list[float] = []
    with av.open(str(out)) as got:
        for pkt in got.demux():
            if pkt.size == 0 or pkt.dts is None or pkt.time_base is None:
                continue
            t = float(pkt.dts * pkt.time_base)
            if pkt.stream.type == "video":
                video.append((t, pkt.is_keyframe))
            else:
                audio.append(t)
    assert sent == len(video) + len(audio)
    # Every frame of the two whole passes and of the half pass, once, 1/FPS apart.
    assert len(video) == int(SECONDS * FPS)
    times = [t for t, _ in video]
    assert all(abs(b - a - 1 / FPS) < 0.002 for a, b in itertools.pairwise(times))
    # Each pass starts on a keyframe, where the first one did.
    for lap in range(3):
        assert video[lap * FPS * int(PERIOD)][1]
    # The audio goes on across the joins too, and covers the same time.
    assert all(b > a for a, b in itertools.pairwise(audio))
    assert audio[-1] > SECONDS - 0.1
    # Paced: the last packet left no earlier than its timestamp says.
    assert elapsed >= max(times[-1], audio[-1]) - 0.05
    # Every decoded frame of the copy is intact (the joins included).
    with av.open(str(out)) as got:
        frames = sum(1 for _ in got.decode(video=0))
    assert frames == len(video)


def test_replay_stops_when_asked(tmp_path: Path) -> None:
    material = tmp_path / "loop.flv"
    publish(
        str(material),
        PublisherOptions(width=160, height=120, fps=FPS, seconds=PERIOD, audio=False),
        realtime=False,
    )
    stop = threading.Event()
    stop.set()
    assert replay(str(tmp_path / "sent.flv"), material, PERIOD, 3600, stop) == 0


def test_loop_with_a_send_time_log_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        publisher_main(["rtmp://127.0.0.1:1/live/x", "--loop", "8", "--log", "sent.jsonl"])
    assert exc.value.code == 2
    assert "--loop" in capsys.readouterr().err
