"""MLPerf LoadGen's early stopping: the samples a percentile needs, an estimate that
bounds the percentile from above, and the stopping rule in the runner (on a loop whose
clock the test drives)."""

from __future__ import annotations

import math

from conveyor.bench import early_stopping
from conveyor.bench.patterns import ClosedLoop
from conveyor.bench.results import new_histogram
from conveyor.bench.runner import EarlyStop, run
from conveyor.bench.targets import NullTarget
from tests.virtual_time import virtual


def test_samples_needed() -> None:
    assert early_stopping.min_samples(0.9) == 44
    assert early_stopping.min_samples(0.99) == 459
    assert early_stopping.min_samples(0.999) == 4603
    assert early_stopping.overlatency_allowed(458, 0.99) == -1
    assert early_stopping.overlatency_allowed(459, 0.99) == 0


def test_allowed_overlatency_is_the_binomial_lower_bound() -> None:
    # 10,000 samples at p99: 100 expected above; the 1% lower tail of Binomial(1e4, 0.01)
    t = early_stopping.overlatency_allowed(10_000, 0.99)

    def cdf(k: int) -> float:
        return sum(math.comb(10_000, i) * 0.01**i * 0.99 ** (10_000 - i) for i in range(k + 1))

    assert cdf(t) <= 0.01 < cdf(t + 1)
    assert 70 < t < 85


def test_the_estimate_bounds_the_percentile_from_above() -> None:
    h = new_histogram()
    for i in range(1, 1001):  # 1..1000 µs, one each
        h.record_value(i)
    entry = early_stopping.estimate(h, 0.99)
    allowed = early_stopping.overlatency_allowed(1000, 0.99)
    assert entry["overlatency_allowed"] == allowed == 2
    assert entry["empirical_ms"] == 0.99
    assert entry["estimate_ms"] == 0.998  # the (1000 - 2)-th smallest
    assert not early_stopping.met(entry, 0.005) and early_stopping.met(entry, 0.01)
    few = new_histogram()
    few.record_value(5)
    assert early_stopping.estimate(few, 0.99)["estimate_ms"] is None


@virtual
async def test_the_run_stops_once_the_estimate_is_met() -> None:
    # 2 clients x 1 ms: 2,000 samples per 1 s window, a constant latency: met in window 1
    result = await run(NullTarget(0.001), ClosedLoop(2), duration_s=30, early=EarlyStop())
    assert result["early_stopping"]["rule"]["met"] is True
    assert result["duration_s"] == 1.0
    assert result["early_stopping"]["p99"]["samples"] == result["completed"]
    assert not any("early stopping" in w for w in result["warnings"])


@virtual
async def test_a_run_too_short_for_the_percentile_says_so() -> None:
    # 0.2 s of 1 client x 1 ms: ~200 samples, p99 needs 459
    result = await run(NullTarget(0.001), ClosedLoop(1), duration_s=0.2, early=EarlyStop())
    assert result["early_stopping"]["rule"]["met"] is False
    assert result["early_stopping"]["p99"]["estimate_ms"] is None
    assert any("at least 459 needed" in w for w in result["warnings"])


@virtual
async def test_every_result_carries_the_estimates() -> None:
    result = await run(NullTarget(0.001), ClosedLoop(1), duration_s=1.0)
    assert set(result["early_stopping"]) == {"p90", "p99", "p99.9"}
    assert result["early_stopping"]["p99.9"]["estimate_ms"] is None  # 1,000 < 4,603
    assert result["early_stopping"]["p90"]["estimate_ms"] is not None
