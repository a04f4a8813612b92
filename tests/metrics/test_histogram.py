"""Histograms and the per-model statistics that feed them."""

from __future__ import annotations

from conveyor.metrics.histogram import LATENCY_BUCKETS, Histogram
from conveyor.metrics.stats import ModelStats


def test_a_value_on_a_bound_falls_in_that_bucket() -> None:
    h = Histogram((1.0, 2.0))
    for v in (0.5, 1.0, 1.5, 2.0, 3.0):
        h.observe(v)
    assert h.cumulative() == [("1", 2), ("2", 4), ("+Inf", 5)]
    assert (h.count, h.sum) == (5, 8.0)


def test_observing_a_batch_at_once_is_observing_each() -> None:
    ns = [0, 50_000, 99_999, 100_000, 100_001, 2_500_000, 10**11]
    one, each = Histogram(LATENCY_BUCKETS), Histogram(LATENCY_BUCKETS)
    one.observe_all(ns, 1e9)
    for v in ns:
        each.observe(v / 1e9)
    assert one.counts == each.counts and one.count == each.count
    assert abs(one.sum - each.sum) < 1e-12


def test_a_batch_charges_each_of_its_requests() -> None:
    stats = ModelStats()
    stats.record_batch(
        rows=5, queue_ns=[1_000, 2_000, 3_000], input_ns=10, infer_ns=20, output_ns=30
    )
    assert (stats.queue.count, stats.queue.ns) == (3, 6_000)
    assert (stats.compute_infer.count, stats.compute_infer.ns) == (3, 60)
    assert (stats.inference_count, stats.execution_count) == (5, 1)
    assert stats.queue_seconds.count == 3 and stats.compute_infer_seconds.count == 3
    assert stats.batch_size.count == 1
    stats.record_request(True, 5_000)
    stats.record_request(False, 7_000, "timeout")
    assert (stats.success.count, stats.success.ns, stats.fail.count) == (1, 5_000, 1)
    assert stats.failures["timeout"] == 1 and stats.request_seconds.count == 2
