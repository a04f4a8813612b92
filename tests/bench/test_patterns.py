"""Schedules: constant spacing, and Poisson gaps that pass a Kolmogorov-Smirnov test."""

from __future__ import annotations

import numpy as np

from conveyor.bench.patterns import ConstantRate, Poisson


def test_constant_rate_schedule() -> None:
    offsets = list(ConstantRate(50).offsets(2.0))
    assert len(offsets) == 100
    assert np.allclose(np.diff(offsets), 0.02)


def test_poisson_gaps_are_exponential() -> None:
    rate = 200.0
    offsets = np.array(list(Poisson(rate, seed=3).offsets(50.0)))
    gaps = np.diff(offsets)
    n = len(gaps)
    assert abs(n / 50.0 - rate) < 0.05 * rate
    assert abs(gaps.mean() - 1 / rate) < 0.05 / rate
    assert abs(gaps.std() / gaps.mean() - 1) < 0.1  # exponential: CV = 1
    # KS test against Exp(rate) at the 1% level: D < 1.63 / sqrt(n)
    x = np.sort(gaps)
    cdf = 1 - np.exp(-rate * x)
    d = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert d < 1.63 / np.sqrt(n)


def test_poisson_is_repeatable() -> None:
    assert list(Poisson(100, seed=1).offsets(1)) == list(Poisson(100, seed=1).offsets(1))
    assert list(Poisson(100, seed=1).offsets(1)) != list(Poisson(100, seed=2).offsets(1))


def test_burst_schedule() -> None:
    from conveyor.bench.patterns import Burst

    offsets = list(Burst(5, 0.25).offsets(1.0))
    assert offsets == [t for t in (0.0, 0.25, 0.5, 0.75) for _ in range(5)]


def test_trace_from_file(tmp_path: object) -> None:
    from pathlib import Path

    from conveyor.bench.patterns import TraceReplay

    path = Path(str(tmp_path)) / "trace.txt"
    path.write_text("# t size\n100.0 3\n100.5 1\n101.0 2\n")
    trace = TraceReplay.from_file(str(path), speed=2.0)
    assert trace.times == (0.0, 0.5, 1.0)
    assert list(trace.offsets(10)) == [0.0, 0.25, 0.5]
    assert trace.sizes == (3, 1, 2)


def test_trace_sizes_follow_their_times_and_must_be_complete(tmp_path: object) -> None:
    from pathlib import Path

    import pytest

    from conveyor.bench.patterns import TraceReplay

    path = Path(str(tmp_path)) / "trace.csv"
    path.write_text("2.0,4\n1.0,1\n")  # out of order, comma-separated
    trace = TraceReplay.from_file(str(path))
    assert (trace.times, trace.sizes) == ((0.0, 1.0), (1, 4))
    path.write_text("0 1\n1\n")
    with pytest.raises(ValueError, match="some lines have a size"):
        TraceReplay.from_file(str(path))
    path.write_text("0 0\n")
    with pytest.raises(ValueError, match="size must be >= 1"):
        TraceReplay.from_file(str(path))
    path.write_text("0\n1\n")
    assert TraceReplay.from_file(str(path)).sizes == ()
