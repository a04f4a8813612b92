"""Cumulative per-model-version statistics: Triton's statistics extension (what
`perf_analyzer` reads for its server-side breakdown) and, fed by the same calls, the
histograms and failure reasons that /metrics exports.

Everything is updated on the event loop thread, so no locks. Each request of a batch is
charged the whole batch's compute durations, as Triton does; `batch_stats` counts
executions per batch size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from conveyor.metrics.histogram import BATCH_BUCKETS, LATENCY_BUCKETS, Histogram

FAILURE_REASONS = ("rejected", "timeout", "bad_request", "internal", "cancelled")


def _latency() -> Histogram:
    return Histogram(LATENCY_BUCKETS)


@dataclass(slots=True)
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, ns: int, n: int = 1) -> None:
        self.count += n
        self.ns += ns

    def to_json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass(slots=True)
class BatchStats:
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)


@dataclass(slots=True)
class ModelStats:
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    inference_count: int = 0  # rows (samples), summed over executions
    execution_count: int = 0  # batches run
    last_inference_ms: int = 0
    batches: dict[int, BatchStats] = field(default_factory=dict)
    histograms: bool = True  # off with --allow-metrics false
    failures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAILURE_REASONS, 0))
    request_seconds: Histogram = field(default_factory=_latency)
    queue_seconds: Histogram = field(default_factory=_latency)
    compute_input_seconds: Histogram = field(default_factory=_latency)
    compute_infer_seconds: Histogram = field(default_factory=_latency)
    compute_output_seconds: Histogram = field(default_factory=_latency)
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_BUCKETS))

    def record_request(self, ok: bool, duration_ns: int, reason: str = "") -> None:
        (self.success if ok else self.fail).add(duration_ns)
        if not ok:
            self.failures[reason or "internal"] += 1
        if self.histograms:
            self.request_seconds.observe(duration_ns / 1e9)

    def record_batch(
        self, rows: int, queue_ns: list[int], input_ns: int, infer_ns: int, output_ns: int
    ) -> None:
        """One execution of len(queue_ns) requests holding `rows` rows in all; `queue_ns`
        is each request's time in the queue."""
        requests = len(queue_ns)
        queued = queue_ns[0] if requests == 1 else sum(queue_ns)
        self.queue.add(queued, requests)
        self.compute_input.add(input_ns * requests, requests)
        self.compute_infer.add(infer_ns * requests, requests)
        self.compute_output.add(output_ns * requests, requests)
        self.inference_count += rows
        self.execution_count += 1
        self.last_inference_ms = time.time_ns() // 1_000_000
        b = self.batches.get(rows)
        if b is None:
            b = self.batches[rows] = BatchStats()
        b.compute_input.add(input_ns)
        b.compute_infer.add(infer_ns)
        b.compute_output.add(output_ns)
        if self.histograms:
            if requests == 1:
                self.queue_seconds.observe(queued / 1e9)
            else:
                self.queue_seconds.observe_all(queue_ns, 1e9)
            self.compute_input_seconds.observe(input_ns / 1e9, requests)
            self.compute_infer_seconds.observe(infer_ns / 1e9, requests)
            self.compute_output_seconds.observe(output_ns / 1e9, requests)
            self.batch_size.observe(rows)

    def to_triton(self, name: str, version: str) -> dict[str, Any]:
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {
                "success": self.success.to_json(),
                "fail": self.fail.to_json(),
                "queue": self.queue.to_json(),
                "compute_input": self.compute_input.to_json(),
                "compute_infer": self.compute_infer.to_json(),
                "compute_output": self.compute_output.to_json(),
                "cache_hit": {"count": 0, "ns": 0},
                "cache_miss": {"count": 0, "ns": 0},
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": b.compute_input.to_json(),
                    "compute_infer": b.compute_infer.to_json(),
                    "compute_output": b.compute_output.to_json(),
                }
                for size, b in sorted(self.batches.items())
            ],
        }
