"""Several generator processes for one load (`--workers N`), when one core is not
enough: each runs 1/N of the load (clients or rate), and their results merge exactly
(HdrHistograms add; counts and errors sum)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from conveyor.bench.results import merge_histograms, summary_ms


def _split_args(argv: list[str], workers: int, index: int) -> list[str]:
    """The worker's own command line: its share of --concurrency/--rate, one worker."""
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--workers", "--output", "--csv"):
            i += 2
            continue
        if arg in ("--concurrency", "--rate") and i + 1 < len(argv):
            total = float(argv[i + 1])
            share = total / workers
            value = (
                str(int(total) // workers + (1 if index < int(total) % workers else 0))
                if arg == "--concurrency"
                else f"{share:g}"
            )
            out += [arg, value]
            i += 2
            continue
        if arg == "--seed" and i + 1 < len(argv):
            out += [arg, str(int(argv[i + 1]) + index)]  # distinct Poisson streams
            i += 2
            continue
        out.append(arg)
        i += 1
    return out


def run_workers(argv: list[str], workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        procs, paths = [], []
        for k in range(workers):
            path = Path(tmp) / f"w{k}.json"
            cmd = [
                sys.executable,
                "-m",
                "conveyor.cli",
                "bench",
                *_split_args(argv, workers, k),
                "--output",
                str(path),
            ]
            if "--seed" not in argv:
                cmd += ["--seed", str(k)]
            procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL))
            paths.append(path)
        for p in procs:
            p.wait()
        parts = [json.loads(p.read_text()) for p in paths if p.exists()]
    if not parts:
        raise SystemExit("no generator process produced a result")
    return merge_results(parts)


def merge_results(parts: list[dict[str, Any]]) -> dict[str, Any]:
    merged = dict(parts[0])
    merged["workers"] = len(parts)
    pattern = dict(parts[0]["pattern"])
    for key in ("concurrency", "rate", "clients"):
        if key in pattern:
            pattern[key] = sum(p["pattern"][key] for p in parts)
    merged["pattern"] = pattern
    merged["completed"] = sum(p["completed"] for p in parts)
    merged["items"] = sum(p.get("items", p["completed"]) for p in parts)
    merged["throughput_rps"] = sum(p["throughput_rps"] for p in parts)
    errors: dict[str, int] = {}
    for p in parts:
        for kind, n in p["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    merged["errors"] = errors
    merged["client_cpu"] = sum(p.get("client_cpu", 0.0) for p in parts)
    merged["warnings"] = sorted({w for p in parts for w in p.get("warnings", [])})
    for key, hist in (
        ("latency_ms", "latency_us"),
        ("service_ms", "service_us"),
        ("schedule_lag_ms", "schedule_lag_us"),
    ):
        h = merge_histograms([p["histograms"][hist] for p in parts])
        merged[key] = summary_ms(h)
    merged["windows"] = []
    merged["stable"] = None
    merged.pop("server", None)  # each worker saw every worker's requests: not additive
    return merged
