"""`conveyor bench` measured against itself and against perf_analyzer (issue #5):

1. Generator ceiling: `conveyor bench` against a null HTTP server
   (benchmarks/null_http.py) at 32 connections with 1 and 2 generator processes, and
   against `null://` (no I/O at all).
2. Agreement: the same fixed closed-loop load (the `simple` model, binary tensors, 4
   clients) measured by `conveyor bench` and by perf_analyzer, rounds alternating:
   p50 ratio (target within 10%) and throughput ratio (target within 5%).

    python benchmarks/bench_tool.py [--seconds 6] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, Process, conveyor_server, demo_repo, median


def bench(*args: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run(
            [sys.executable, "-m", "conveyor.cli", "bench", *args, "--output", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, object] = json.loads(out.read_text())
        return result


def perf_analyzer(url: str, seconds: float) -> tuple[float, float]:
    out = subprocess.run(
        [
            str(ROOT / "scripts" / "perf_analyzer.sh"),
            "-m",
            "simple",
            "-u",
            url,
            "--concurrency-range",
            "4",
            "-p",
            str(int(seconds * 1000 / 3)),
            "--max-trials",
            "3",
            "--stability-percentage",
            "999",
            "--percentile",
            "50",
        ],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    m = re.search(r"Concurrency: 4, throughput: ([\d.]+) infer/sec, (?:p50 )?latency (\d+)", out)
    if not m:
        raise RuntimeError(out[-800:])
    return float(m.group(1)), int(m.group(2)) / 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    secs = str(args.seconds)

    print("generator ceiling (req/s):")
    r = bench("null://", "--concurrency", "32", "--duration", secs, "--warmup", "1")
    print(f"  null:// (no I/O), 1 process       {r['throughput_rps']:10.0f}")
    null = Process(
        [sys.executable, str(ROOT / "benchmarks" / "null_http.py"), "--port", "8400"],
        "http://127.0.0.1:8400/",
    )
    try:
        for workers in ("1", "2"):
            r = bench(
                "http://127.0.0.1:8400/",
                "--protocol",
                "http",
                "--concurrency",
                "32",
                "--workers",
                workers,
                "--duration",
                secs,
                "--warmup",
                "1",
            )
            print(
                f"  null HTTP server, {workers} process(es)  {r['throughput_rps']:10.0f}  "
                f"(client CPU {r['client_cpu']:.2f} cores)"
            )
    finally:
        null.stop()

    server = conveyor_server(
        demo_repo(), "--model-control-mode", "explicit", "--load-model", "simple"
    )
    ours: list[tuple[float, float]] = []
    theirs: list[tuple[float, float]] = []
    try:
        for _ in range(args.rounds):
            r = bench(
                f"http://{server.url}",
                "--model",
                "simple",
                "--concurrency",
                "4",
                "--duration",
                secs,
                "--warmup",
                "1",
            )
            ours.append((float(r["throughput_rps"]), float(r["latency_ms"]["p50"])))  # type: ignore[index]
            theirs.append(perf_analyzer(server.url, args.seconds))
            print(
                f"  round: conveyor bench {ours[-1][0]:.0f} req/s p50 {ours[-1][1]:.3f} ms; "
                f"perf_analyzer {theirs[-1][0]:.0f} req/s p50 {theirs[-1][1]:.3f} ms"
            )
    finally:
        server.stop()
    t = median([o[0] for o in ours]) / median([x[0] for x in theirs])
    l50 = median([o[1] for o in ours]) / median([x[1] for x in theirs])
    print(f"conveyor bench / perf_analyzer on the same load: throughput x{t:.3f}, p50 x{l50:.3f}")


if __name__ == "__main__":
    main()
