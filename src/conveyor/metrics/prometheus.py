"""/metrics in Prometheus' text format, rendered at scrape time from the per-version
statistics (the same counters as Triton's statistics API), the schedulers' queues, the
process, and the GPUs when NVML is there.

Every metric is documented in the README ("Metrics").
"""

from __future__ import annotations

import logging
import os
import resource
import time
from typing import Any

from conveyor.dataplane import DataPlane
from conveyor.metrics.histogram import Histogram
from conveyor.metrics.stats import FAILURE_REASONS

log = logging.getLogger("conveyor.metrics")

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _labels(**kv: str) -> str:
    inner = ",".join(
        f'{k}="{v.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for k, v in kv.items()
    )
    return "{" + inner + "}"


class _Out:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: str, value: float) -> None:
        self.lines.append(
            f"{name}{labels} {value:g}" if isinstance(value, float) else f"{name}{labels} {value}"
        )

    def histogram(self, name: str, base: dict[str, str], h: Histogram) -> None:
        for le, count in h.cumulative():
            self.sample(f"{name}_bucket", _labels(**base, le=le), count)
        self.sample(f"{name}_sum", _labels(**base), float(h.sum))
        self.sample(f"{name}_count", _labels(**base), h.count)


HISTOGRAMS = (
    (
        "conveyor_request_duration_seconds",
        "request_seconds",
        "Time from a request reaching the data plane to its answer.",
    ),
    (
        "conveyor_queue_duration_seconds",
        "queue_seconds",
        "Time a request waited in its model's queue.",
    ),
    (
        "conveyor_compute_input_duration_seconds",
        "compute_input_seconds",
        "Time gathering a request's batch inputs (charged to each request of the batch).",
    ),
    (
        "conveyor_compute_infer_duration_seconds",
        "compute_infer_seconds",
        "Time the runtime took for a request's batch (charged to each request of the batch).",
    ),
    (
        "conveyor_compute_output_duration_seconds",
        "compute_output_seconds",
        "Time splitting a request's batch outputs (charged to each request of the batch).",
    ),
)


class GpuMonitor:
    """NVML readings, when the library and a GPU are there; otherwise nothing at all."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []

    def start(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            self._nvml = pynvml
            log.info("NVML: %d GPU(s) monitored", count)
        except Exception as exc:  # no library, no driver or no GPU: no GPU metrics
            log.info("no GPU metrics (%s)", type(exc).__name__)

    def render(self, out: _Out) -> None:
        if self._nvml is None or not self._handles:
            return
        nv = self._nvml
        rows = []
        for i, h in enumerate(self._handles):
            try:
                util = nv.nvmlDeviceGetUtilizationRates(h)
                mem = nv.nvmlDeviceGetMemoryInfo(h)
                power = nv.nvmlDeviceGetPowerUsage(h) / 1000.0
                energy = nv.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
            except Exception:  # a GPU that cannot be read now is skipped, not fatal
                continue
            rows.append((str(i), util.gpu / 100.0, mem.used, mem.total, power, energy))
        for name, kind, idx, help_text in (
            ("conveyor_gpu_utilization_ratio", "gauge", 1, "GPU busy fraction (NVML)."),
            ("conveyor_gpu_memory_used_bytes", "gauge", 2, "GPU memory in use."),
            ("conveyor_gpu_memory_total_bytes", "gauge", 3, "GPU memory size."),
            ("conveyor_gpu_power_watts", "gauge", 4, "GPU power draw."),
            (
                "conveyor_gpu_energy_joules_total",
                "counter",
                5,
                "GPU energy since the driver loaded.",
            ),
        ):
            out.family(name, kind, help_text)
            for row in rows:
                out.sample(name, _labels(gpu=row[0]), float(row[idx]))


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def render(dataplane: DataPlane, gpus: GpuMonitor | None = None) -> bytes:
    out = _Out()
    versions = [
        (name, mv)
        for name, entry in sorted(dataplane.repository.models.items())
        for _, mv in sorted(entry.versions.items())
    ]
    versions += [(mv.name, mv) for mv in dataplane.function_steps()]  # pipeline:function

    def per_version(metric: str, kind: str, help_text: str, value: Any) -> None:
        out.family(metric, kind, help_text)
        for name, mv in versions:
            out.sample(metric, _labels(model=name, version=mv.version_str), value(mv))

    per_version(
        "conveyor_request_success_total",
        "counter",
        "Requests answered.",
        lambda mv: mv.scheduler.stats.success.count,
    )
    out.family(
        "conveyor_request_failure_total",
        "counter",
        "Requests failed, by reason: " + ", ".join(FAILURE_REASONS) + ".",
    )
    for name, mv in versions:
        for reason in FAILURE_REASONS:
            out.sample(
                "conveyor_request_failure_total",
                _labels(model=name, version=mv.version_str, reason=reason),
                mv.scheduler.stats.failures[reason],
            )
    per_version(
        "conveyor_inference_count_total",
        "counter",
        "Inferences (batch rows) computed.",
        lambda mv: mv.scheduler.stats.inference_count,
    )
    per_version(
        "conveyor_execution_count_total",
        "counter",
        "Batches executed; inference_count / execution_count = mean batch size.",
        lambda mv: mv.scheduler.stats.execution_count,
    )
    for metric, attr, help_text in HISTOGRAMS:
        out.family(metric, "histogram", help_text)
        for name, mv in versions:
            out.histogram(
                metric,
                {"model": name, "version": mv.version_str},
                getattr(mv.scheduler.stats, attr),
            )
    out.family("conveyor_batch_size", "histogram", "Rows per executed batch.")
    for name, mv in versions:
        out.histogram(
            "conveyor_batch_size",
            {"model": name, "version": mv.version_str},
            mv.scheduler.stats.batch_size,
        )
    out.family(
        "conveyor_pending_requests",
        "gauge",
        "Requests waiting in the queue, by priority level (1 = highest).",
    )
    for name, mv in versions:
        for level, count in enumerate(mv.scheduler.queue.pending(), 1):
            out.sample(
                "conveyor_pending_requests",
                _labels(model=name, version=mv.version_str, priority=str(level)),
                count,
            )
    per_version(
        "conveyor_instances", "gauge", "Model instances.", lambda mv: mv.scheduler.instance_count
    )
    per_version(
        "conveyor_instances_busy",
        "gauge",
        "Instances executing a batch now.",
        lambda mv: mv.scheduler.in_flight,
    )
    per_version(
        "conveyor_model_load_seconds",
        "gauge",
        "Time the version took to load, warm-up included.",
        lambda mv: float(mv.load_seconds),
    )
    per_version(
        "conveyor_model_warmup_seconds",
        "gauge",
        "Time its warm-up took.",
        lambda mv: float(mv.warmup_seconds),
    )
    out.family("conveyor_server_ready", "gauge", "1 when /v2/health/ready answers 200.")
    out.sample("conveyor_server_ready", "", int(dataplane.ready))
    t = os.times()
    out.family("process_cpu_seconds_total", "counter", "CPU time of the server process.")
    out.sample("process_cpu_seconds_total", "", float(t.user + t.system))
    out.family("process_resident_memory_bytes", "gauge", "Resident memory of the process.")
    out.sample("process_resident_memory_bytes", "", _rss_bytes())
    out.family("process_start_time_seconds", "gauge", "Start time, seconds since the epoch.")
    out.sample("process_start_time_seconds", "", float(_START))
    if gpus is not None:
        gpus.render(out)
    for backend in dataplane.repository.backends.values():
        text = backend.render_metrics()  # e.g. Python models' custom metrics, restarts
        if text:
            out.lines.append(text.rstrip("\n"))
    out.lines.append("")
    return "\n".join(out.lines).encode()


_START = time.time()
