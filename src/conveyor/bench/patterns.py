"""Load patterns: a closed loop of N clients, or an open-loop schedule of intended send
times (constant rate, Poisson arrivals). Schedules are seeded, so a run repeats."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClosedLoop:
    """N clients, each sending its next request when the previous one is answered."""

    concurrency: int


@dataclass(frozen=True)
class ConstantRate:
    """Open loop: one request every 1/rate seconds, whatever the answers do."""

    rate: float

    def offsets(self, duration_s: float) -> Iterator[float]:
        n = int(duration_s * self.rate)
        for i in range(n):
            yield i / self.rate


@dataclass(frozen=True)
class Poisson:
    """Open loop: exponentially distributed gaps with mean 1/rate (Poisson arrivals)."""

    rate: float
    seed: int = 0

    def offsets(self, duration_s: float) -> Iterator[float]:
        rng = np.random.default_rng(self.seed)
        t = 0.0
        while True:
            t += float(rng.exponential(1.0 / self.rate))
            if t >= duration_s:
                return
            yield t


Pattern = ClosedLoop | ConstantRate | Poisson
