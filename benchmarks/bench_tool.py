"""`conveyor bench` measured against itself and against perf_analyzer (issue #5):

1. Generator ceiling: `conveyor bench` (1 and 2 generator processes) and perf_analyzer
   against the same null V2 servers at 32 connections, HTTP (benchmarks/null_http.py)
   and gRPC (benchmarks/null_grpc.py), rounds alternating, medians; and `conveyor bench`
   against `null://` (no I/O at all). On 2 cores the generators share the machine with
   the null server, so the cheaper client leaves the server more CPU: the ratio is the
   generators' relative cost, the absolute figures are this machine's.
2. Agreement: the same fixed closed-loop load (the `simple` model, binary tensors, 4
   clients) measured by `conveyor bench` and by perf_analyzer, rounds alternating:
   p50 ratio (target within 10%) and throughput ratio (target within 5%).

    python benchmarks/bench_tool.py [--seconds 6] [--rounds 2] [--only ceiling|agreement]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from _harness import ROOT, Process, conveyor_server, demo_repo, median, perf_analyzer_cmd

PIN: list[str] = []  # a taskset prefix for the generators (--pin)


def bench(*args: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        subprocess.run(
            [*PIN, sys.executable, "-m", "conveyor.cli", "bench", *args, "--output", str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        result: dict[str, object] = json.loads(out.read_text())
        return result


def perf_analyzer(
    url: str, seconds: float, model: str = "simple", conc: str = "4", protocol: str = "http"
) -> tuple[float, float]:
    window_ms = int(seconds * 1000 / 3)
    out = subprocess.run(
        [*PIN, *perf_analyzer_cmd(model, url, protocol, conc, window_ms, "--percentile", "50")],
        capture_output=True,
        text=True,
        check=False,
        timeout=seconds * 10 + 60,  # it has been seen to hang (growing memory): bound it
    ).stdout
    pattern = rf"Concurrency: {conc}, throughput: ([\d.]+) infer/sec, (?:p50 )?latency (\d+)"
    m = re.search(pattern, out)
    if not m:
        raise RuntimeError(out[-800:])
    return float(m.group(1)), int(m.group(2)) / 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=6)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--only", choices=["ceiling", "agreement"], help="run one part")
    p.add_argument(
        "--pin",
        action="store_true",
        help="agreement: the server on CPU 0, the generators on CPU 1 (taskset), so that "
        "neither generator's own CPU use slows the server it measures",
    )
    args = p.parse_args()
    secs = str(args.seconds)

    if args.only != "agreement":
        ceiling(args, secs)
    if args.only != "ceiling":
        agreement(args, secs)


def ceiling(args: argparse.Namespace, secs: str) -> None:
    print("generator ceiling (req/s):")
    r = bench("null://", "--concurrency", "32", "--duration", secs, "--warmup", "1")
    print(f"  null:// (no I/O), 1 process       {r['throughput_rps']:10.0f}")
    nulls = [
        Process(
            [sys.executable, str(ROOT / "benchmarks" / "null_http.py"), "--port", "8400"],
            "http://127.0.0.1:8400/",
            own_session=False,
        ),
        Process(
            [sys.executable, str(ROOT / "benchmarks" / "null_grpc.py"), "--port", "8401"],
            None,
            port=8401,
            own_session=False,
        ),
    ]
    try:
        for proto, url in (("http", "http://127.0.0.1:8400"), ("grpc", "127.0.0.1:8401")):
            rates: dict[str, list[float]] = {"bench x1": [], "bench x2": [], "perf_analyzer": []}
            for _ in range(args.rounds):
                for workers in ("1", "2"):
                    extra = ["--protocol", "v2-grpc"] if proto == "grpc" else []
                    r = bench(
                        url,
                        *extra,
                        "--metadata-url",
                        "http://127.0.0.1:8400",
                        "--model",
                        "null",
                        "--concurrency",
                        "32",
                        "--workers",
                        workers,
                        "--duration",
                        secs,
                        "--warmup",
                        "1",
                    )
                    rates[f"bench x{workers}"].append(float(r["throughput_rps"]))  # type: ignore[arg-type]
                rates["perf_analyzer"].append(
                    perf_analyzer(url.removeprefix("http://"), args.seconds, "null", "32", proto)[0]
                )
            line = "  ".join(f"{k} {median(v):.0f}" for k, v in rates.items())
            best = max(median(rates["bench x1"]), median(rates["bench x2"]))
            ratio = best / median(rates["perf_analyzer"])
            print(f"  null V2 {proto:<4} c=32: {line}  (best bench / perf_analyzer x{ratio:.2f})")
    finally:
        for null in nulls:
            null.stop()


def agreement(args: argparse.Namespace, secs: str) -> None:
    server = conveyor_server(
        demo_repo(), "--model-control-mode", "explicit", "--load-model", "simple"
    )
    if args.pin and server.proc is not None:
        subprocess.run(["taskset", "-a", "-p", "-c", "0", str(server.proc.pid)], check=True)
        PIN[:] = ["taskset", "-c", "1"]
        print("  (server pinned to CPU 0, generators to CPU 1)")
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
