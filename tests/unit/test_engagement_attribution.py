"""benchmarks/engagement.py's attribution of per-tick reaction bursts to taps: per emoji, the
n-th tap sent is seen by a viewer when the running sum of that emoji's burst counts reaching the
viewer gets to n; "to every viewer" is the latest of those times per tap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.engagement import EMOJIS, attribute


def _save(
    path: Path,
    taps: list[tuple[float, int]],
    viewers: list[list[tuple[float, int]]],
    bursts: list[list[int]],
) -> Path:
    flat = [x for v in viewers for x in v]
    np.savez(
        path,
        tap_time=np.array([t for t, _ in taps], dtype=np.float64),
        tap_emoji=np.array([e for _, e in taps], dtype=np.int64),
        arr_time=np.array([t for t, _ in flat], dtype=np.float64),
        arr_burst=np.array([b for _, b in flat], dtype=np.int64),
        offsets=np.cumsum([0] + [len(v) for v in viewers]),
        bursts=np.array(bursts, dtype=np.int64),
        hist=np.zeros(10, dtype=np.int64),
    )
    return path


def test_bursts_are_attributed_to_taps_in_send_order(tmp_path: Path) -> None:
    e0 = [2] + [0] * (len(EMOJIS) - 1)
    e0_e1 = [1, 1] + [0] * (len(EMOJIS) - 2)
    # Two client processes: taps of emoji 0 at 0.0 and 0.2 in one, 0.1 in the other, and one
    # tap of emoji 1 at 0.25. Burst 0 holds two taps of emoji 0, burst 1 the third and emoji 1.
    a = _save(
        tmp_path / "a.npz",
        [(0.0, 0), (0.2, 0)],
        [[(0.15, 0), (0.30, 1)]],  # viewer 0
        [e0, e0_e1],
    )
    b = _save(
        tmp_path / "b.npz",
        [(0.1, 0), (0.25, 1)],
        [[(0.16, 0), (0.35, 1)]],  # viewer 1 (its process parsed the same bursts)
        [e0, e0_e1],
    )
    r = attribute([a, b])
    assert r["taps"] == 4 and r["viewers"] == 2
    assert r["pairs_seen"] == 8 and r["pairs_missing"] == 0
    # To every viewer: emoji 0 taps seen by both at 0.16, 0.16, 0.35; emoji 1 at 0.35.
    # Latencies 160, 60, 150 and 100 ms.
    assert r["every_p50"] == pytest.approx(125.0)
    assert r["every_p99"] == pytest.approx(159.7, abs=0.1)
    assert r["p50"] == pytest.approx(100.05, abs=0.1)


def test_a_viewer_missing_a_burst_leaves_taps_unseen(tmp_path: Path) -> None:
    e0 = [1] + [0] * (len(EMOJIS) - 1)
    f = _save(
        tmp_path / "a.npz", [(0.0, 0), (0.1, 0)], [[(0.05, 0), (0.15, 1)], [(0.06, 0)]], [e0, e0]
    )
    r = attribute([f])
    assert r["pairs_seen"] == 3 and r["pairs_missing"] == 1
    assert r["taps_not_seen_by_all"] == 1
