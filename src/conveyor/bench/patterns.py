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


@dataclass(frozen=True)
class Burst:
    """Open loop: `size` requests at once, every `every` seconds."""

    size: int
    every: float

    def offsets(self, duration_s: float) -> Iterator[float]:
        t = 0.0
        while t < duration_s:
            for _ in range(self.size):
                yield t
            t += self.every


@dataclass(frozen=True)
class TraceReplay:
    """Open loop: the send times of a trace (seconds, first = 0), `speed` times faster."""

    times: tuple[float, ...]
    speed: float = 1.0

    @classmethod
    def from_file(cls, path: str, speed: float = 1.0) -> TraceReplay:
        """One timestamp (seconds) per line, optionally followed by other fields."""
        with open(path) as f:
            times = [
                float(line.split()[0].rstrip(","))
                for line in f
                if line.strip() and not line.startswith("#")
            ]
        if not times:
            raise ValueError(f"trace {path} has no timestamps")
        first = min(times)
        return cls(tuple(sorted(t - first for t in times)), speed)

    def offsets(self, duration_s: float) -> Iterator[float]:
        for t in self.times:
            offset = t / self.speed
            if offset >= duration_s:
                return
            yield offset


@dataclass(frozen=True)
class Ramp:
    """Closed loop whose clients join `per_second` at a time up to `clients` (Locust's
    spawn rate)."""

    per_second: float
    clients: int


@dataclass(frozen=True)
class FixedCount:
    """Closed loop of `concurrency` clients that stops after `requests` requests."""

    requests: int
    concurrency: int = 1


Pattern = ClosedLoop | ConstantRate | Poisson | Burst | TraceReplay | Ramp | FixedCount
OPEN_LOOP = (ConstantRate, Poisson, Burst, TraceReplay)
