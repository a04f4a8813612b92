"""A Prometheus-style histogram: fixed upper bounds, cumulative counts when rendered.

Observing is a bisect and two additions, cheap enough for every request.
"""

from __future__ import annotations

from bisect import bisect_left

# seconds: 50 µs .. 10 s, roughly x2.5 apart
LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect_left(self.bounds, value)] += n
        self.sum += value * n
        self.count += n

    def observe_all(self, values: list[int] | list[float], divisor: float = 1.0) -> None:
        """`observe(v / divisor)` for each of `values` (a batch's requests: one call)."""
        counts, bounds, total = self.counts, self.bounds, 0.0
        for v in values:
            value = v / divisor
            counts[bisect_left(bounds, value)] += 1
            total += value
        self.sum += total
        self.count += len(values)

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, cumulative count) pairs, +Inf last."""
        out, total = [], 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += c
            out.append(("+Inf" if bound == float("inf") else f"{bound:g}", total))
        return out
