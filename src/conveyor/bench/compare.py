"""`conveyor bench --compare A.json B.json`: deltas, and a verdict only where the
difference is larger than the run-to-run noise seen inside the runs (the spread of
their measurement windows; runs without windows get no verdict)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Getter = Callable[[dict[str, Any]], float]


def _throughput(r: dict[str, Any]) -> float:
    return float(r["throughput_rps"])


def _p99(r: dict[str, Any]) -> float:
    return float(r["latency_ms"].get("p99", 0.0))


METRICS: tuple[tuple[str, str, Getter, bool], ...] = (
    # (label, window key, result getter, higher is better)
    ("throughput req/s", "throughput_rps", _throughput, True),
    ("p99 latency ms", "p99_ms", _p99, False),
)


def _spread(result: dict[str, Any], key: str) -> float | None:
    values = [w[key] for w in result.get("windows", [])[-3:]]
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    return (max(values) - min(values)) / mean if mean else None


def compare(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    lines = []
    for label, key, get, higher_better in METRICS:
        va, vb = get(a), get(b)
        if not va:
            continue
        delta = (vb - va) / va
        noises = [s for s in (_spread(a, key), _spread(b, key)) if s is not None]
        if len(noises) < 2:
            verdict = "no verdict: run with --stability-percentage to measure the noise"
        elif abs(delta) <= max(noises):
            verdict = f"within noise (±{max(noises):.1%})"
        else:
            better = (delta > 0) == higher_better
            verdict = f"B is {'better' if better else 'worse'} (noise ±{max(noises):.1%})"
        lines.append(f"{label:<18} A {va:10.3f}  B {vb:10.3f}  {delta:+7.1%}  {verdict}")
    return lines
