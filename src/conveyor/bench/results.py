"""Results: HdrHistograms of latency (µs, 3 significant digits), errors by kind with
samples, and a versioned JSON form in which the histograms stay mergeable.

Schema (version 1):
  {"schema": "conveyor.bench/1", "target": str, "pattern": {...},
   "duration_s": float, "completed": int, "items": int (rows answered; a trace with
   sizes gives each request its own), "errors": {kind: count},
   "error_samples": {kind: [str]}, "throughput_rps": float,
   "latency_ms": {"p50", "p90", "p95", "p99", "p99.9", "max", "mean"},
   "service_ms": {...}, "schedule_lag_ms": {...},
   "histograms": {"latency_us"|"service_us"|"schedule_lag_us": base64 HdrHistogram}}
Open-loop latency is measured from each request's intended send time (no coordinated
omission); service time from its actual send; schedule lag is actual - intended.
"""

from __future__ import annotations

import base64
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

SCHEMA = "conveyor.bench/1"
MAX_US = 3_600_000_000  # one hour
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, MAX_US, 3)


def encode_histogram(h: HdrHistogram) -> str:
    """A histogram as base64 text ("" when empty); `merge_histograms` reads it back."""
    return base64.b64encode(h.encode()).decode() if h.get_total_count() else ""


def summary_ms(h: HdrHistogram) -> dict[str, float]:
    if h.get_total_count() == 0:
        return {}
    out = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
    out["max"] = h.get_max_value() / 1000
    out["mean"] = h.get_mean_value() / 1000
    return out


@dataclass
class Recorder:
    latency: HdrHistogram = field(default_factory=new_histogram)
    service: HdrHistogram = field(default_factory=new_histogram)
    lag: HdrHistogram = field(default_factory=new_histogram)
    errors: Counter[str] = field(default_factory=Counter)
    samples: dict[str, list[str]] = field(default_factory=dict)
    completed: int = 0
    items: int = 0  # rows answered, where requests carry different batch sizes
    # per second of the run's clock: [answers, errors, latency sum (ms), latency max (ms)]
    timeline: dict[int, list[float]] = field(default_factory=dict)

    def _second(self, at: float) -> list[float]:
        second = self.timeline.get(int(at))
        if second is None:
            second = self.timeline[int(at)] = [0, 0, 0.0, 0.0]
        return second

    def ok(self, intended: float, sent: float, done: float, items: int = 1) -> None:
        self.completed += 1
        self.items += items
        second = self._second(done)
        ms = (done - intended) * 1000
        second[0] += 1
        second[2] += ms
        second[3] = max(second[3], ms)
        self.latency.record_value(max(1, int((done - intended) * 1e6)))
        self.service.record_value(max(1, int((done - sent) * 1e6)))
        self.lag.record_value(max(1, int((sent - intended) * 1e6)))

    def merge(self, other: Recorder) -> None:
        self.latency.add(other.latency)
        self.service.add(other.service)
        self.lag.add(other.lag)
        self.errors.update(other.errors)
        for kind, kept in other.samples.items():
            self.samples.setdefault(kind, []).extend(kept[: 3 - len(self.samples[kind])])
        self.completed += other.completed
        self.items += other.items
        for at, (n, errors, total, worst) in other.timeline.items():
            second = self._second(at)
            second[0] += n
            second[1] += errors
            second[2] += total
            second[3] = max(second[3], worst)

    def error(self, kind: str, detail: str, at: float | None = None) -> None:
        if at is not None:
            self._second(at)[1] += 1
        self.errors[kind] += 1
        kept = self.samples.setdefault(kind, [])
        if len(kept) < 3 and detail:
            kept.append(detail)


def pack(rec: Recorder) -> dict[str, Any]:
    """A recorder as JSON, to cross a process boundary; `unpack` restores it exactly."""
    return {
        "completed": rec.completed,
        "items": rec.items,
        "errors": dict(rec.errors),
        "samples": rec.samples,
        "timeline": {str(k): v for k, v in rec.timeline.items()},
        "histograms": [
            encode_histogram(rec.latency),
            encode_histogram(rec.service),
            encode_histogram(rec.lag),
        ],
    }


def unpack(doc: dict[str, Any]) -> Recorder:
    rec = Recorder(completed=int(doc["completed"]), items=int(doc.get("items", 0)))
    for h, encoded in zip((rec.latency, rec.service, rec.lag), doc["histograms"], strict=True):
        if encoded:
            h.decode_and_add(base64.b64decode(encoded))
    rec.errors.update(doc["errors"])
    rec.samples = {k: list(v) for k, v in doc["samples"].items()}
    rec.timeline = {int(k): list(v) for k, v in doc.get("timeline", {}).items()}
    return rec


def timeline_json(rec: Recorder) -> list[dict[str, float | None]]:
    """The run second by second (from its first answer or error): answers, errors, mean
    and max latency."""
    if not rec.timeline:
        return []
    first = min(rec.timeline)
    return [
        {
            "t_s": at - first,
            "completed": int(n),
            "errors": int(errors),
            "mean_ms": round(total / n, 3) if n else None,
            "max_ms": round(worst, 3) if n else None,
        }
        for at, (n, errors, total, worst) in sorted(rec.timeline.items())
    ]


def to_json(
    rec: Recorder, target: str, pattern: dict[str, Any], duration_s: float
) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "target": target,
        "pattern": pattern,
        "duration_s": duration_s,
        "completed": rec.completed,
        "items": rec.items,
        "errors": dict(rec.errors),
        "error_samples": rec.samples,
        "throughput_rps": rec.completed / duration_s if duration_s else 0.0,
        "latency_ms": summary_ms(rec.latency),
        "service_ms": summary_ms(rec.service),
        "schedule_lag_ms": summary_ms(rec.lag),
        "timeline": timeline_json(rec),
        "histograms": {
            "latency_us": encode_histogram(rec.latency),
            "service_us": encode_histogram(rec.service),
            "schedule_lag_us": encode_histogram(rec.lag),
        },
    }


def merge_histograms(encoded: list[str]) -> HdrHistogram:
    """Merge histograms from several results (e.g. several generator processes)."""
    h = new_histogram()
    for e in encoded:
        if e:
            h.decode_and_add(base64.b64decode(e))
    return h


def environment() -> dict[str, Any]:
    """Where the generator ran: enough to tell two results' machines apart."""
    import os
    import platform
    import socket

    from conveyor import __version__

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "conveyor": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "hostname": socket.gethostname(),
    }


def run_context(options: dict[str, Any]) -> dict[str, Any]:
    """The run's configuration (every option, JSON-safe) and its environment."""
    config = {
        k: v if isinstance(v, int | float | str | bool | type(None) | list) else str(v)
        for k, v in options.items()
    }
    return {"config": config, "environment": environment()}


def sweep_table(results: list[dict[str, Any]], with_target: bool = False) -> list[str]:
    """The classic table: one row per step (framework x batch size x load), with the
    measured time, requests/s and items/s side by side."""
    lead = f"{'target':<22} " if with_target else ""
    head = (
        f"{lead}{'batch':>5} {'conc':>5} {'rate/s':>8} {'time s':>7} {'req/s':>9} "
        f"{'items/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6}  stable"
    )
    rows = [head]
    for r in results:
        pattern, lat = r.get("pattern", {}), r.get("latency_ms", {})
        stable = {True: "yes", False: "NO", None: "-"}[r.get("stable")]
        rate = pattern.get("rate")
        target = f"{str(r.get('target', '?'))[:22]:<22} " if with_target else ""
        rows.append(
            f"{target}{r.get('batch_size', 1):>5} {pattern.get('concurrency', '-'):>5} "
            f"{rate if rate is not None else '-':>8} {r.get('duration_s', 0):>7.2f} "
            f"{r['throughput_rps']:>9.1f} "
            f"{r.get('items_per_second', r['throughput_rps']):>9.1f} "
            f"{lat.get('p50', 0):>8.3f} {lat.get('p90', 0):>8.3f} {lat.get('p99', 0):>8.3f} "
            f"{sum(r['errors'].values()):>6}  {stable}"
        )
    return rows


def steps_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The measured steps of a results document: a sweep's or search's steps, or the
    single result itself."""
    steps = doc.get("steps")
    return list(steps) if isinstance(steps, list) else [doc]
