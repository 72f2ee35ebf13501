"""Latency percentiles as the benchmarks report them: one way of taking them (numpy's
linear interpolation, in milliseconds from seconds), so a p99 in one benchmark's figures
means what it means in another's. Not a benchmark itself; the benchmarks import it
with their own folder on `sys.path`."""

from __future__ import annotations

import numpy as np


def pct(seconds: list[float], points: tuple[int, ...] = (50, 90, 99), digits: int = 3) -> dict[str, float]:
    """`p<point>_ms` for each of `points` and `max_ms` of `seconds`, rounded to `digits`
    (the benchmarks keep the precision their figures have always been read at)."""
    ms = np.asarray(seconds) * 1000.0
    return {
        **{f"p{point}_ms": round(float(np.percentile(ms, point)), digits) for point in points},
        "max_ms": round(float(ms.max()), digits),
    }
