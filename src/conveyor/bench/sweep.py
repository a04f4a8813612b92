"""Sweeps and SLO search: which steps to run, and the search's bisection.

A sweep is the classic table: every batch size x every concurrency (or rate) in the
lists given, one full measurement per step. A search finds the highest concurrency or
rate whose latency percentile stays under an SLO, by bisection between two bounds; each
probe is a full measurement (warm-up included), so the answer carries its own figures.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def parse_values(text: str, integer: bool) -> list[float]:
    """`4`, `1,2,4,8`, or perf_analyzer's range form `start:end[:step]` (step 1 by
    default; both ends included)."""
    conv: Callable[[str], float] = int if integer else float
    try:
        if ":" in text:
            parts = [conv(p) for p in text.split(":")]
            if (
                len(parts) not in (2, 3)
                or parts[0] > parts[1]
                or (len(parts) == 3 and parts[2] <= 0)
            ):
                raise ValueError
            start, end = parts[0], parts[1]
            step = parts[2] if len(parts) == 3 else 1
            out, v = [], start
            while v <= end + 1e-9:
                out.append(v)
                v += step
            return out
        values = [conv(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ValueError(
            f"{text!r}: expected a number, a list (1,2,4) or a range (start:end[:step])"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"{text!r}: values must be positive")
    return values


def parse_bounds(text: str, integer: bool) -> tuple[float, float]:
    """The search's `low:high`."""
    conv: Callable[[str], float] = int if integer else float
    try:
        low, high = (conv(p) for p in text.split(":"))
    except ValueError:
        raise ValueError(f"{text!r}: a search needs bounds low:high") from None
    if not 0 < low < high:
        raise ValueError(f"{text!r}: bounds must satisfy 0 < low < high")
    return low, high


@dataclass(frozen=True)
class Slo:
    """`p99<=20` (ms): the latency percentile must stay at or under the limit, and at
    most `max_error_ratio` of the requests may fail."""

    percentile: str
    limit_ms: float
    max_error_ratio: float = 0.0

    @classmethod
    def parse(cls, text: str, max_error_ratio: float = 0.0) -> Slo:
        m = re.fullmatch(r"\s*(p\d+(?:\.\d+)?|max|mean)\s*<=?\s*([\d.]+)\s*(ms)?\s*", text)
        if not m:
            raise ValueError(f"{text!r}: an SLO looks like p99<=20 (milliseconds)")
        return cls(m.group(1), float(m.group(2)), max_error_ratio)

    def check(self, result: dict[str, Any]) -> tuple[bool, str]:
        errors = sum(result["errors"].values())
        total = errors + result["completed"]
        if not result["completed"]:
            return False, "no request completed"
        ratio = errors / total
        if ratio > self.max_error_ratio:
            return False, f"{ratio:.1%} of requests failed"
        value = result["latency_ms"].get(self.percentile)
        if value is None:
            return False, f"no {self.percentile} in the result"
        verdict = "meets" if value <= self.limit_ms else "misses"
        return value <= self.limit_ms, (
            f"{self.percentile} {value:.3f} ms {verdict} {self.limit_ms:g} ms"
        )


def bisect_max(
    low: float,
    high: float,
    passes: Callable[[float], bool],
    integer: bool,
    precision: float = 0.05,
) -> float | None:
    """The highest value in [low, high] that passes, assuming passing is monotone (more
    load never helps latency): None when even `low` fails. Integers are exact; real
    values stop when the interval is within `precision` of its lower end."""
    if not passes(low):
        return None
    if passes(high):
        return high
    good, bad = low, high
    while (bad - good > 1) if integer else (bad - good > precision * good):
        mid: float = (good + bad) // 2 if integer else (good + bad) / 2
        if passes(mid):
            good = mid
        else:
            bad = mid
    return good
