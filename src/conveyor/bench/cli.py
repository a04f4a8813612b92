"""`conveyor bench`: parsed flags -> target + pattern -> run -> summary and JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import urllib.request
from typing import Any

from conveyor.bench.patterns import ClosedLoop, ConstantRate, Pattern, Poisson
from conveyor.bench.runner import run
from conveyor.bench.targets import HttpTarget, NullTarget, Target, v2_body, v2_inputs


def _target(args: argparse.Namespace) -> Target:
    if args.url.startswith("null://"):
        return NullTarget(args.null_delay_ms / 1000)
    headers = dict(h.split(":", 1) for h in args.header)
    if args.protocol == "http":
        body = args.body_file.read_bytes() if args.body_file else b""
        return HttpTarget(args.url, body, {k.strip(): v.strip() for k, v in headers.items()})
    if not args.model:
        raise SystemExit("--model is needed for the V2 protocols")
    base = args.url.rstrip("/")
    path = f"/v2/models/{args.model}" + (
        f"/versions/{args.model_version}" if args.model_version else ""
    )
    with urllib.request.urlopen(base + path, timeout=10) as resp:
        metadata = json.load(resp)
    shapes = {s.split(":")[0]: [int(d) for d in s.split(":")[1].split(",")] for s in args.shape}
    inputs = v2_inputs(metadata, args.batch_size, shapes, args.seed)
    body, extra = v2_body(inputs, binary=args.protocol == "v2-binary")
    target = HttpTarget(base + path + "/infer", body, {**extra, **headers})
    target.name = f"v2:{args.model}"
    return target


def _pattern(args: argparse.Namespace) -> Pattern:
    if args.rate:
        return Poisson(args.rate, args.seed) if args.poisson else ConstantRate(args.rate)
    return ClosedLoop(args.concurrency)


def _print(result: dict[str, Any]) -> None:
    lat = result["latency_ms"]
    print(
        f"{result['target']} {result['pattern']}: {result['completed']} ok in "
        f"{result['duration_s']:g}s = {result['throughput_rps']:.1f} req/s, "
        f"errors {sum(result['errors'].values())}"
    )
    if lat:
        print("latency ms: " + "  ".join(f"{k} {v:.3f}" for k, v in lat.items()))
        lag = result["schedule_lag_ms"]
        print(f"schedule lag ms: p99 {lag.get('p99', 0):.3f}  max {lag.get('max', 0):.3f}")
    for kind, count in result["errors"].items():
        print(f"  {count} x {kind}: {result['error_samples'].get(kind, [''])[0][:120]}")


def main(args: argparse.Namespace) -> int:
    target = _target(args)
    result = asyncio.run(
        run(target, _pattern(args), args.duration, args.warmup, args.max_in_flight)
    )
    _print(result)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1))
    return 0 if not result["errors"] else 1 if result["completed"] == 0 else 0
