"""Percentiles and medians as the benchmarks report them.

Why not ``statistics.quantiles``: a benchmark's summary must print even when a run measured
nothing (NaN, not an exception), and one interpolation rule keeps every script's p50/p95/p99
comparable with the others and with earlier runs.
"""

from __future__ import annotations

import math
import statistics


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def median(values: list[float]) -> float:
    """The median of the values that are not NaN; NaN when none is."""
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")
