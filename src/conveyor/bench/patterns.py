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
    """Open loop: the send times of a trace (seconds, first = 0), `speed` times faster;
    with `sizes`, each request carries that many rows (its batch size)."""

    times: tuple[float, ...]
    speed: float = 1.0
    sizes: tuple[int, ...] = ()

    @classmethod
    def from_file(cls, path: str, speed: float = 1.0) -> TraceReplay:
        """One request per line: a timestamp (seconds), optionally its size (rows) as the
        second field; `#` lines are comments. Either every line has a size or none."""
        rows = []
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                fields = line.replace(",", " ").split()
                try:
                    size = int(fields[1]) if len(fields) > 1 else None
                    rows.append((float(fields[0]), size))
                except ValueError:
                    raise ValueError(f"trace {path} line {n}: expected 'SECONDS [SIZE]'") from None
                if size is not None and size < 1:
                    raise ValueError(f"trace {path} line {n}: size must be >= 1")
        if not rows:
            raise ValueError(f"trace {path} has no timestamps")
        with_size = [r for r in rows if r[1] is not None]
        if with_size and len(with_size) != len(rows):
            raise ValueError(f"trace {path}: some lines have a size and some do not")
        rows.sort(key=lambda r: r[0])
        first = rows[0][0]
        sizes = tuple(int(r[1]) for r in rows) if with_size else ()  # type: ignore[arg-type]
        return cls(tuple(t - first for t, _ in rows), speed, sizes)

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
