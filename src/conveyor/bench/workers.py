"""Several generator processes for one load (`--workers N`), when one core is not
enough: each runs 1/N of the load (clients or rate), and their results merge exactly
(HdrHistograms add; counts and errors sum)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from conveyor.bench.results import (
    Recorder,
    encode_histogram,
    merge_histograms,
    summary_ms,
    to_json,
    unpack,
)
from conveyor.bench.runner import Stability, agree, generator_warnings, window_stats


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
    merged["timeline"] = merge_timelines([p.get("timeline", []) for p in parts])
    merged["throughput_rps"] = sum(p["throughput_rps"] for p in parts)
    errors: dict[str, int] = {}
    for p in parts:
        for kind, n in p["errors"].items():
            errors[kind] = errors.get(kind, 0) + n
    merged["errors"] = errors
    merged["client_cpu"] = sum(p.get("client_cpu", 0.0) for p in parts)
    merged["warnings"] = sorted({w for p in parts for w in p.get("warnings", [])})
    merged["histograms"] = {}
    for key, hist in (
        ("latency_ms", "latency_us"),
        ("service_ms", "service_us"),
        ("schedule_lag_ms", "schedule_lag_us"),
    ):
        h = merge_histograms([p["histograms"][hist] for p in parts])
        merged[key] = summary_ms(h)
        merged["histograms"][hist] = encode_histogram(h)  # every worker's, not the first's
    merged["windows"] = []
    merged["stable"] = None
    merged.pop("server", None)  # each worker saw every worker's requests: not additive
    return merged


def run_workers_windows(argv: list[str], workers: int, stability: Stability) -> dict[str, Any]:
    """`--workers N` with measurement windows: the workers start together, each streams
    its windows; window k of all workers is merged and judged here, and the workers are
    stopped once 3 merged windows agree (or at `max_windows`)."""
    start = time.time() + 3.0  # time for every worker to start and connect
    procs = []
    for k in range(workers):
        cmd = [sys.executable, "-m", "conveyor.cli", "bench", *_split_args(argv, workers, k)]
        cmd += ["--window-stream", "--start-at", f"{start:.3f}", "--live", "off"]
        if "--seed" not in argv:
            cmd += ["--seed", str(k)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    lines: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()

    def read(k: int, p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if line.startswith("{"):
                lines.put((k, json.loads(line)))
        lines.put((k, None))

    for k, p in enumerate(procs):
        threading.Thread(target=read, args=(k, p), daemon=True).start()
    by_window: dict[int, list[dict[str, Any]]] = {}
    merged: list[Recorder] = []
    windows: list[dict[str, float]] = []
    cpus: list[float] = []
    stable, ended, first = False, 0, None
    try:
        while ended < workers and len(merged) < stability.max_windows:
            k, doc = lines.get(timeout=stability.window_s * 4 + 60)
            if doc is None:
                ended += 1
                continue
            first = first or doc
            parts = by_window.setdefault(doc["window"], [])
            parts.append(doc)
            if len(parts) < workers or doc["window"] != len(merged):
                continue
            rec = Recorder()
            for part in parts:
                rec.merge(unpack(part["recorder"]))
            merged.append(rec)
            cpus.append(sum(part["cpu"] for part in parts))
            windows.append(window_stats(rec, stability.window_s, stability.percentile))
            if agree(windows, stability):
                stable = True
                break
    finally:
        for p in procs:  # the workers we started, by PID
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait(10)
    if not merged or first is None:
        raise SystemExit("the generator processes produced no window")
    rec = Recorder()
    for window in merged[-3:]:
        rec.merge(window)
    pattern = dict(first["pattern"])
    result = to_json(rec, first["target"], pattern, stability.window_s * len(merged[-3:]))
    shares = [_split_args(argv, workers, k) for k in range(workers)]
    for key, flag in (("concurrency", "--concurrency"), ("rate", "--rate")):
        if key in pattern:
            total = sum(float(a[a.index(flag) + 1]) for a in shares if flag in a)
            result["pattern"][key] = int(total) if key == "concurrency" else total
    result["workers"] = workers
    result["client_cpu"] = round(sum(cpus[-3:]) / len(cpus[-3:]), 3)
    result["windows"] = windows
    result["stable"] = stable
    result["warnings"] = generator_warnings(result)
    if not stable:
        result["warnings"].append(
            f"unstable: no 3 consecutive windows agreed within ±{stability.tolerance:.0%} "
            f"in {len(windows)} windows; the figures are the last 3 windows'"
        )
    return result


def merge_timelines(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Second by second over the workers (they start together: their seconds line up)."""
    seconds: dict[float, dict[str, Any]] = {}
    for part in parts:
        for row in part:
            into = seconds.setdefault(
                row["t_s"], {"t_s": row["t_s"], "completed": 0, "errors": 0, "sum": 0.0, "max": 0.0}
            )
            into["completed"] += row["completed"]
            into["errors"] += row["errors"]
            into["sum"] += (row["mean_ms"] or 0) * row["completed"]
            into["max"] = max(into["max"], row["max_ms"] or 0)
    out = []
    for t in sorted(seconds):
        row = seconds[t]
        n = row["completed"]
        out.append(
            {
                "t_s": t,
                "completed": n,
                "errors": row["errors"],
                "mean_ms": round(row["sum"] / n, 3) if n else None,
                "max_ms": row["max"] if n else None,
            }
        )
    return out
