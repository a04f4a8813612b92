"""Soak (issue #14): 30 minutes at about half of capacity, mixing models and both
protocols, with periodic hot reloads; RSS flat after warm-up, no failed request, p99
steady.

    python benchmarks/soak.py [--minutes 30] [--window 5] [--reload-every 60]

One `conveyor serve` (explicit model control; the demo `linear` and `mlp`). First the
capacity: `conveyor bench` closed loop on `linear` over REST for 10 s. Then, window after
window (`--window` minutes each), three `conveyor bench` processes in open loop
(Poisson arrivals, latency from each request's intended send time):
  REST `linear` at capacity/6, gRPC `linear` at capacity/12, REST `mlp` at capacity/12
  (the three Python clients share the 2 cores: the server's own CPU per window says how
  loaded it was);
while a thread reloads `linear` (`POST /v2/repository/models/linear/load`: the new
instance loads beside the old, nothing lost) every `--reload-every` seconds, and the
server's RSS (its processes together) is sampled every 5 s.
Per window: requests, errors, p99 per stream, RSS; at the end, RSS growth from the end
of the first window (targets: <= 5%, 0 errors, p99 within 2x of the first window's).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from _harness import CACHE, conveyor_server, cpu_seconds, demo_repo, rss_mb


def bench(url: str, model: str, out: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [
        sys.executable,
        "-m",
        "conveyor.cli",
        "bench",
        url,
        "--model",
        model,
        "--live",
        "off",
        "--warmup",
        "0",
        "--output",
        str(out),
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--window", type=float, default=5.0, help="minutes per window")
    p.add_argument("--reload-every", type=float, default=60.0)
    args = p.parse_args()
    repo = demo_repo()
    server = conveyor_server(
        repo, "--model-control-mode", "explicit", "--load-model", "linear", "--load-model", "mlp"
    )
    assert server.proc is not None
    http, grpc = f"http://{server.url}", server.grpc_url
    stop = threading.Event()
    reloads: list[tuple[float, int]] = []
    rss: list[tuple[float, float]] = []
    start = time.monotonic()

    def reloader() -> None:
        while not stop.wait(args.reload_every):
            req = urllib.request.Request(
                f"{http}/v2/repository/models/linear/load", data=b"{}", method="POST"
            )
            with urllib.request.urlopen(req, timeout=120) as resp:
                reloads.append((time.monotonic() - start, resp.status))

    def sampler() -> None:
        while not stop.wait(5):
            rss.append((time.monotonic() - start, rss_mb(server.proc.pid)))  # type: ignore[union-attr]

    try:
        out = CACHE / "soak-capacity.json"
        cap = bench(
            http, "linear", out, "--concurrency", "16", "--duration", "10", "--protocol", "v2-json"
        )
        cap.communicate()
        capacity = json.loads(out.read_text())["throughput_rps"]
        rates = {
            "rest-linear": capacity / 6,
            "grpc-linear": capacity / 12,
            "rest-mlp": capacity / 12,
        }
        print(
            f"capacity (REST linear, 16 clients): {capacity:.0f} req/s; soak rates "
            + ", ".join(f"{k} {v:.0f}/s" for k, v in rates.items()),
            flush=True,
        )
        threads = [threading.Thread(target=f, daemon=True) for f in (reloader, sampler)]
        for t in threads:
            t.start()
        windows = max(1, round(args.minutes / args.window))
        rows = []
        for w in range(windows):
            seconds = str(args.window * 60)
            runs = {
                name: (
                    CACHE / f"soak-{name}-{w}.json",
                    bench(
                        grpc if name.startswith("grpc") else http,
                        name.split("-")[1],
                        CACHE / f"soak-{name}-{w}.json",
                        "--rate",
                        f"{rates[name]:.0f}",
                        "--poisson",
                        "--duration",
                        seconds,
                        "--protocol",
                        "v2-grpc" if name.startswith("grpc") else "v2-json",
                        *(["--metadata-url", http] if name.startswith("grpc") else []),
                    ),
                )
                for name in rates
            }
            row: dict[str, object] = {"window": w + 1}
            cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
            for name, (path, proc) in runs.items():
                proc.communicate()
                doc = json.loads(path.read_text())
                row[name] = (
                    int(doc["completed"]),
                    sum(doc["errors"].values()),
                    doc["latency_ms"].get("p99"),
                )
            row["rss_mb"] = rss[-1][1] if rss else rss_mb(server.proc.pid)
            row["cpu"] = (cpu_seconds(server.proc.pid) - cpu0) / (time.monotonic() - t0)
            rows.append(row)
            print(
                f"window {w + 1}/{windows}: "
                + "  ".join(
                    f"{n}: {c} ok, {e} errors, p99 {p99:.2f} ms"
                    for n, (c, e, p99) in ((n, row[n]) for n in rates)  # type: ignore[misc]
                )
                + f"  RSS {row['rss_mb']:.0f} MB, server CPU {row['cpu']:.0%}; "
                + f"reloads so far {len(reloads)}",
                flush=True,
            )
    finally:
        stop.set()
        server.stop()
    first, last = rows[0]["rss_mb"], rows[-1]["rss_mb"]
    errors = sum(row[n][1] for row in rows for n in rates)  # type: ignore[index]
    print(
        f"\nRSS after the first window {first:.0f} MB, at the end {last:.0f} MB: "
        f"{(last / first - 1) * 100:+.1f}% (target within 5%)"
    )  # type: ignore[operator]
    print(
        f"failed requests: {errors} (target 0); reloads: {len(reloads)}, "
        f"all 200: {all(s == 200 for _, s in reloads)}"
    )
    for n in rates:
        p99s = [row[n][2] for row in rows]  # type: ignore[index]
        print(f"{n}: p99 per window {', '.join(f'{v:.2f}' for v in p99s)} ms")


if __name__ == "__main__":
    main()
