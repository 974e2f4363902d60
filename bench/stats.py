"""Summaries of latency samples: nearest-rank percentiles, with lost tickets counted as infinite.

Owns the one definition of a percentile the benchmark uses, so every figure in the report and in
docs/benchmarks.md means the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: the smallest sample with at least p % of samples at or below it."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass(frozen=True)
class LatencySummary:
    """Milliseconds. A ticket that never printed counts as infinitely late (and as `lost`)."""

    samples: int
    lost: int
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: Sequence[float]) -> LatencySummary:
        values = sorted(s * 1000 for s in seconds)
        finite = [v for v in values if math.isfinite(v)]
        return cls(
            samples=len(values),
            lost=len(values) - len(finite),
            min_ms=values[0] if values else math.nan,
            p50_ms=percentile(values, 50),
            p90_ms=percentile(values, 90),
            p99_ms=percentile(values, 99),
            max_ms=values[-1] if values else math.nan,
            mean_ms=sum(finite) / len(finite) if finite else math.nan,
        )
