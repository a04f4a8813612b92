"""`conveyor bench`: parsed flags -> target + pattern -> run -> summary and JSON."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from conveyor.bench import coldstart
from conveyor.bench.compare import compare
from conveyor.bench.inputs import model_inputs
from conveyor.bench.live import LiveView
from conveyor.bench.monitor import Monitor
from conveyor.bench.patterns import (
    Burst,
    ClosedLoop,
    ConstantRate,
    FixedCount,
    Pattern,
    Poisson,
    Ramp,
    TraceReplay,
)
from conveyor.bench.results import SCHEMA, pack, run_context, steps_of, sweep_table
from conveyor.bench.runner import EarlyStop, Stability, run, stream_windows
from conveyor.bench.server_stats import PrometheusProbe, StatsProbe
from conveyor.bench.sweep import Slo, bisect_max, parse_bounds, parse_values
from conveyor.bench.targets import (
    CallableTarget,
    GrpcV2Target,
    HttpTarget,
    NullTarget,
    SizedTarget,
    Target,
    tfserving_body,
    v2_body,
)
from conveyor.bench.workers import run_workers, run_workers_windows

T = TypeVar("T")


def _metadata(args: argparse.Namespace) -> dict[str, Any]:
    base = (args.metadata_url or args.url).rstrip("/")
    if not base.startswith("http"):
        base = "http://" + base
    path = f"/v2/models/{args.model}" + (
        f"/versions/{args.model_version}" if args.model_version else ""
    )
    try:
        with urllib.request.urlopen(base + path, timeout=10) as resp:
            doc: dict[str, Any] = json.load(resp)
    except (OSError, ValueError) as exc:
        raise SystemExit(
            f"conveyor bench: cannot read model metadata at {base + path}: {exc}"
        ) from None
    return doc


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    if not args.model:
        raise SystemExit(f"--model is needed for --protocol {args.protocol}")
    shapes = {s.split(":")[0]: [int(d) for d in s.split(":")[1].split(",")] for s in args.shape}
    files = {}
    for spec in args.input:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"--input {spec!r}: expected NAME=PATH")
        files[name] = Path(path)
    try:
        return model_inputs(
            _metadata(args), args.batch_size, shapes, args.seed, args.input_data, files
        )
    except ValueError as exc:
        raise SystemExit(f"conveyor bench: {exc}") from None


def _target(args: argparse.Namespace) -> Target:
    if args.url.startswith("null://"):
        return NullTarget(args.null_delay_ms / 1000)
    if args.url.startswith("python://"):
        return CallableTarget(args.url.removeprefix("python://"), _inputs(args))
    headers = {k.strip(): v.strip() for k, v in (h.split(":", 1) for h in args.header)}
    if args.protocol == "http":
        body = args.body_file.read_bytes() if args.body_file else b""
        return HttpTarget(args.url, body, headers, args.method)
    if args.protocol == "torchserve":
        return _torchserve(args, headers)
    inputs = _inputs(args)
    if args.protocol == "v2-grpc":
        return GrpcV2Target(
            args.url.removeprefix("grpc://"), args.model, inputs, args.model_version
        )
    base = args.url.rstrip("/")
    if args.protocol == "tfserving":
        version = f"/versions/{args.model_version}" if args.model_version else ""
        target = HttpTarget(
            f"{base}/v1/models/{args.model}{version}:predict",
            tfserving_body(inputs),
            {"content-type": "application/json", **headers},
        )
        target.name = f"tfserving:{args.model}"
        return target
    version = f"/versions/{args.model_version}" if args.model_version else ""
    body, extra = v2_body(inputs, binary=args.protocol == "v2-binary")
    target = HttpTarget(f"{base}/v2/models/{args.model}{version}/infer", body, {**extra, **headers})
    target.name = f"v2:{args.model}"
    return target


def _sized(args: argparse.Namespace) -> Target:
    """A trace with sizes: one request body per batch size, built from the model's inputs."""
    if args.url.startswith("null://") or args.protocol == "http" or args.body_file:
        raise SystemExit(
            "a trace with sizes needs a target built from model inputs (V2, TF Serving, "
            "python://), not a fixed body"
        )

    def make(size: int) -> Target:
        step = argparse.Namespace(**vars(args))
        step.batch_size = size
        return _target(step)

    return SizedTarget(make, args.batch_size)


def _torchserve(args: argparse.Namespace, headers: dict[str, str]) -> Target:
    """TorchServe's inference API: POST /predictions/{model}[/{version}], the body a file
    (an image, say: what its default handlers take) or the inputs as JSON."""
    if not args.model:
        raise SystemExit("--model is needed for --protocol torchserve")
    version = f"/{args.model_version}" if args.model_version else ""
    url = f"{args.url.rstrip('/')}/predictions/{args.model}{version}"
    if args.body_file:
        body = args.body_file.read_bytes()
    elif args.metadata_url:
        inputs = _inputs(args)
        doc = {n: a.tolist() for n, a in inputs.items()}
        body = json.dumps(doc if len(doc) > 1 else next(iter(doc.values()))).encode()
        headers = {"content-type": "application/json", **headers}
    else:
        raise SystemExit("--protocol torchserve needs --body-file, or --metadata-url for inputs")
    target = HttpTarget(url, body, headers)
    target.name = f"torchserve:{args.model}"
    return target


def _pattern(args: argparse.Namespace) -> Pattern:
    if args.trace:
        return TraceReplay.from_file(str(args.trace), args.trace_speed)
    if args.burst:
        size, every = args.burst.split(":")
        return Burst(int(size), float(every))
    if args.rate:
        return Poisson(args.rate, args.seed) if args.poisson else ConstantRate(args.rate)
    if args.ramp:
        per_s, clients = args.ramp.split(":")
        return Ramp(float(per_s), int(clients))
    if args.requests:
        return FixedCount(args.requests, args.concurrency)
    return ClosedLoop(args.concurrency)


CSV_COLUMNS = [
    "Concurrency",
    "Request Rate",
    "Inferences/Second",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
    "Avg latency",
    "Errors",
]
SERVER_COLUMNS = {
    "Network+Server Send/Recv": "transmission_us",
    "Server Queue": "queue_us",
    "Server Compute Input": "compute_input_us",
    "Server Compute Infer": "compute_infer_us",
    "Server Compute Output": "compute_output_us",
}


def _csv(path: Any, result: dict[str, Any], args: argparse.Namespace) -> None:
    """perf_analyzer's columns, by its names (µs): the leading ones, the server-side
    breakdown where the target has a statistics API (empty otherwise), the latencies."""
    lat, server = result["latency_ms"], result.get("server") or {}
    row = [
        str(args.concurrency if not args.rate else ""),
        str(args.rate or ""),
        f"{result['items_per_second']:.2f}",
        *(str(int(server[k])) if k in server else "" for k in SERVER_COLUMNS.values()),
        *(str(int(lat.get(p, 0) * 1000)) for p in ("p50", "p90", "p95", "p99", "mean")),
        str(sum(result["errors"].values())),
    ]
    new = not path.exists()
    with path.open("a") as f:
        if new:
            f.write(",".join(CSV_COLUMNS) + "\n")
        f.write(",".join(row) + "\n")


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
    server = result.get("server")
    if server:
        print(
            "server us: "
            + "  ".join(
                f"{k.removesuffix('_us')} {v:g}" for k, v in server.items() if k.endswith("_us")
            )
        )
        for name, step in (server.get("steps") or {}).items():  # an ensemble's steps
            print(
                f"  step {name} us: "
                + "  ".join(
                    f"{k.removesuffix('_us')} {v:g}" for k, v in step.items() if k.endswith("_us")
                )
                + (f"  busy {step['busy']:.0%}" if "busy" in step else "")
            )
    prom = result.get("prometheus")
    if prom and "error" not in prom:
        means = []
        for key, h in list(prom["histograms"].items())[:6]:
            family = key.split("{")[0]
            if family.endswith("_seconds"):
                means.append(f"{family} {h['mean'] * 1e3:.4g} ms")
            else:
                means.append(f"{family} {h['mean']:.4g}")
        print(
            f"prometheus ({prom['url']}): {len(prom['counters'])} counters moved"
            + (f"; means: {', '.join(means)}" if means else "")
        )
    elif prom:
        print(f"prometheus ({prom['url']}): {prom['error']}")
    hw = result.get("hardware")
    if hw:
        parts = [f"system CPU {hw['system']['cpu_percent']:g}% ({hw['system']['cpus']} cores)"]
        for pid, p in hw["processes"].items():
            parts.append(
                f"pid {pid} ({p['name']}) CPU {p['cpu_percent']:g}%, RSS max {p['rss_mb_max']} MB"
            )
        for g in hw["gpus"]:
            parts.append(
                f"GPU{g['index']} {g['util_percent_mean']}% util, {g['memory_used_mb_max']} MB, "
                f"{g['power_w_mean']} W"
            )
        print("hardware: " + "; ".join(parts))
        e = hw["energy"]
        if e.get("per_request_j") is not None:
            print(
                f"energy ({e['basis']}): {e['per_request_j'] * 1000:.4g} mJ/request, carbon "
                f"{e['carbon_per_request_mg']:.3g} mg/request at {e['grid_g_per_kwh']:g} "
                f"gCO2e/kWh [{e['how']}]"
            )
    if result.get("windows"):
        state = "stable" if result["stable"] else "UNSTABLE"
        print(f"{len(result['windows'])} windows, {state}")
    tails = result.get("early_stopping") or {}
    rule = tails.get("rule")
    shown = [f"p{rule['percentile'] * 100:g}"] if rule else ["p99"]
    for key in shown:
        entry = tails.get(key)
        if not entry:
            continue
        if entry["estimate_ms"] is None:
            text = f"no estimate: {entry['samples']} samples, {entry['min_samples']} needed"
        else:
            text = (
                f"{entry['estimate_ms']:.3f} ms at 99% confidence (empirical "
                f"{entry['empirical_ms']:.3f} ms, {entry['samples']} samples)"
            )
        verdict = "" if not rule else (" - met" if rule["met"] else " - NOT met")
        print(f"early stopping {key}: {text}{verdict}")
    for kind, count in result["errors"].items():
        print(f"  {count} x {kind}: {result['error_samples'].get(kind, [''])[0][:120]}")


def _probe(args: argparse.Namespace) -> StatsProbe | None:
    if args.protocol not in ("v2-binary", "v2-json", "v2-grpc") or not args.model:
        return None
    if args.url.startswith(("null://", "python://")):
        return None
    base = args.metadata_url or args.url
    if not base.startswith("http"):
        return None
    return StatsProbe(base, args.model, args.model_version)


def main(args: argparse.Namespace) -> int:
    if args.compare:
        a, b = (json.loads(p.read_text()) for p in args.compare)
        print("\n".join(compare(a, b)))
        return 0
    if args.window_stream:
        return _stream(args)
    if args.selftest:
        return _selftest(args)
    if args.table:
        rows = [step for path in args.table for step in steps_of(json.loads(path.read_text()))]
        print("\n".join(sweep_table(rows, with_target=True)))
        return 0
    if not args.url:
        raise SystemExit("a target URL is needed (or --compare A.json B.json, --table ...)")
    if args.launch:
        return _with_launch(args)
    return _bench(args)


def _bench(args: argparse.Namespace, cold: dict[str, Any] | None = None) -> int:
    try:
        if args.slo:
            return _search(args, cold)
        steps = _steps(args)
    except ValueError as exc:
        raise SystemExit(f"conveyor bench: {exc}") from None
    if len(steps) == 1:
        result = _measure(steps[0])
        _finish(result, steps[0])
        if cold is not None:
            result["cold_start"] = coldstart.report(steady=result, **cold)
            _print_cold(result["cold_start"])
        _write(result, args)
        return _exit_code([result])
    if args.workers > 1:
        raise SystemExit("--workers with a sweep is not supported yet: run one step at a time")
    results = []
    for step in steps:
        print(f"--- {_label(step)}")
        results.append(_measure(step))
        _finish(results[-1], step)
    print()
    print("\n".join(sweep_table(results)))
    doc = _document(args, results)
    if cold is not None:
        doc["cold_start"] = coldstart.report(steady=results[0], **cold)
        _print_cold(doc["cold_start"])
    _write(doc, args)
    return _exit_code(results)


def _ready_url(args: argparse.Namespace) -> str:
    if args.ready_url:
        return str(args.ready_url)
    base = (args.metadata_url or args.url or "").rstrip("/")
    if args.protocol == "torchserve" and base.startswith("http"):
        return f"{args.url.rstrip('/')}/ping"
    if args.protocol == "tfserving" and base.startswith("http"):
        return f"{base}/v1/models/{args.model}"
    if args.protocol.startswith("v2") and base.startswith("http"):
        return f"{base}/v2/health/ready"
    raise SystemExit("--launch needs --ready-url here (a URL that answers 200 once ready)")


def _with_launch(args: argparse.Namespace) -> int:
    """Cold start: launch, time to ready, first inference and first N requests, then the
    steady-state measurement asked for; the launched server is stopped at the end."""
    if args.workers > 1:
        raise SystemExit("--launch with --workers is not supported yet")
    launched = coldstart.Launched(args.launch, _ready_url(args), args.launch_timeout)
    try:
        try:
            ready_s = launched.start()
        except RuntimeError as exc:
            raise SystemExit(f"conveyor bench: {exc}") from None
        print(f"cold start: ready in {ready_s:.3f} s (pid {launched.pid})")
        args.monitor_pid = [*args.monitor_pid, launched.pid]
        first = _measure(_fixed(args, 1))
        first_n = _measure(_fixed(args, args.cold_requests))
        cold = {"time_to_ready_s": ready_s, "first": first, "first_n": first_n}
        return _bench(args, cold)
    finally:
        code = launched.stop()
        print(f"launched server stopped (exit code {code}); its output: {launched.log_path}")


def _fixed(args: argparse.Namespace, requests: int) -> argparse.Namespace:
    step = _steps(args)[0]
    step.requests, step.concurrency, step.rate = requests, 1, None
    step.warmup, step.measurement_interval, step.monitor_pid = 0.0, None, []
    return step


def _print_cold(c: dict[str, Any]) -> None:
    first_n, steady = c["first_n"], c["steady"]
    print(
        f"cold start: ready {c['time_to_ready_s']:.3f} s, first inference "
        f"{c['first_inference_ms']:.3f} ms; first {first_n.get('requests')} requests p50 "
        f"{first_n.get('p50', 0):.3f} ms p99 {first_n.get('p99', 0):.3f} ms vs steady p50 "
        f"{steady.get('p50', 0):.3f} ms (x{c.get('first_n_p50_over_steady_p50', 0):g})"
    )


def _selftest(args: argparse.Namespace) -> int:
    """The generator's own ceiling here: against `null://` (no I/O), and against a null
    V2 server on loopback (conveyor.bench.null_server, in its own process) with 1 and 2
    generator processes. What a real target gets can only be lower."""
    import subprocess

    from conveyor.cli import _parser

    conc = args.concurrency if args.concurrency != "1" else "32"
    common = ["--concurrency", conc, "--duration", str(args.duration)]
    common += ["--warmup", str(args.warmup), "--live", "off"]

    def measure(*argv: str) -> dict[str, Any]:
        ns = _parser().parse_args(["bench", *argv, *common])
        ns.argv = ["bench", *argv, *common]
        step = _steps(ns)[0]
        result = _measure(step)
        _finish(result, step)
        return result

    results = [measure("null://") | {"workers": 1}]
    server = subprocess.Popen(
        [sys.executable, "-m", "conveyor.bench.null_server", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith("listening "):
            raise SystemExit("conveyor bench --selftest: the null server did not start")
        url = f"http://127.0.0.1:{line.split()[1]}"
        for workers in ("1", "2"):
            result = measure(url, "--model", "null", "--workers", workers)
            results.append(result | {"workers": int(workers)})
    finally:
        server.terminate()  # the null server we started, by its PID
        server.wait(10)
    print(f"\ngenerator ceiling on this machine, {conc} connections:")
    for r in results:
        lag = r["schedule_lag_ms"].get("p99", 0.0)
        print(
            f"  {r['target']:<10} {r['workers']} process(es) {r['throughput_rps']:>10.0f} req/s"
            f"  client CPU {r['client_cpu']:.2f}  lag p99 {lag:.3f} ms"
        )
    _write(_document(args, results), args)
    return 0


def _steps(args: argparse.Namespace) -> list[argparse.Namespace]:
    """One namespace per step: batch sizes x concurrencies (or rates), scalars each."""
    batches = parse_values(args.batch_size, integer=True)
    if args.rate:
        loads = [("rate", v) for v in parse_values(args.rate, integer=False)]
    else:
        loads = [("concurrency", v) for v in parse_values(args.concurrency, integer=True)]
    steps = []
    for batch in batches:
        for key, value in loads:
            step = argparse.Namespace(**vars(args))
            step.batch_size = int(batch)
            step.concurrency = int(value) if key == "concurrency" else 1
            step.rate = value if key == "rate" else None
            steps.append(step)
    return steps


def _label(step: argparse.Namespace) -> str:
    load = f"rate {step.rate:g}/s" if step.rate else f"concurrency {step.concurrency}"
    return f"batch {step.batch_size}, {load}"


def _measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.workers > 1:
        argv = args.argv[args.argv.index("bench") + 1 :]
        if args.measurement_interval:
            return run_workers_windows(argv, args.workers, _stability(args))
        return run_workers(argv, args.workers)
    stability = _stability(args) if args.measurement_interval else None
    early = _early(args.early_stopping) if args.early_stopping else None
    if early is not None and (stability is not None or args.workers > 1):
        raise SystemExit(
            "conveyor bench: --early-stopping is a stopping rule of its own: not with "
            "--measurement-interval or --workers"
        )
    try:
        monitor = Monitor(args.monitor_pid, 0.5, args.grid_intensity, args.cpu_watts_per_core)
    except ValueError as exc:
        raise SystemExit(f"conveyor bench: {exc}") from None
    pattern = _pattern(args)
    target = _target(args)
    if isinstance(pattern, TraceReplay) and pattern.sizes:
        target = _sized(args)
    show = args.live == "on" or (args.live == "auto" and sys.stderr.isatty())
    with LiveView(target.name) if show else contextlib.nullcontext() as live:
        return _run_loop(
            run(
                target,
                pattern,
                args.duration,
                args.warmup,
                args.max_in_flight,
                stability,
                _probe(args),
                monitor,
                PrometheusProbe(args.metrics_url, args.model or "") if args.metrics_url else None,
                live,
                early,
            )
        )


def _early(text: str) -> EarlyStop:
    spec, _, tolerance = text.partition(":")
    try:
        percentile = float(spec.removeprefix("p")) / 100
        tol = float(tolerance.removesuffix("%")) / 100 if tolerance else 0.05
    except ValueError:
        raise SystemExit(f"conveyor bench: --early-stopping {text!r}: expected pXX[:TOL]") from None
    if not 0 < percentile < 1 or tol < 0:
        raise SystemExit(f"conveyor bench: --early-stopping {text!r}: expected pXX[:TOL]")
    return EarlyStop(percentile=percentile, tolerance=tol)


def _stability(args: argparse.Namespace) -> Stability:
    return Stability(
        args.measurement_interval / 1000,
        args.stability_percentage / 100,
        args.max_windows,
        float(args.stability_latency.removeprefix("p")),
    )


def _stream(args: argparse.Namespace) -> int:
    """A worker of `--workers N` with windows: one JSON line per window on stdout."""
    import time

    step = _steps(args)[0]
    target, pattern = _target(step), _pattern(step)
    spec = {"kind": type(pattern).__name__, **vars(pattern)}

    def emit(index: int, rec: Any, cpu: float) -> None:
        line = {"window": index, "cpu": cpu, "target": target.name, "pattern": spec}
        print(json.dumps(line | {"recorder": pack(rec)}), flush=True)

    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))  # all workers start together
    stability = _stability(args)
    _run_loop(
        stream_windows(
            target,
            pattern,
            stability.window_s,
            stability.max_windows,
            args.warmup,
            args.max_in_flight,
            emit,
        )
    )
    return 0


def _search(args: argparse.Namespace, cold: dict[str, Any] | None = None) -> int:
    """Bisection for the highest concurrency (or rate) that meets the SLO."""
    if args.workers > 1:
        raise SystemExit("--workers with --slo is not supported yet")
    slo = Slo.parse(args.slo, args.slo_max_errors / 100)
    over = "rate" if args.rate else "concurrency"
    integer = over == "concurrency"
    low, high = parse_bounds(args.rate or args.concurrency, integer)
    probes: list[dict[str, Any]] = []

    def passes(value: float) -> bool:
        step = argparse.Namespace(**vars(args))
        step.batch_size = int(parse_values(args.batch_size, integer=True)[0])
        step.concurrency = int(value) if integer else 1
        step.rate = None if integer else value
        print(f"--- probe {_label(step)}")
        result = _measure(step)
        _finish(result, step)
        ok, why = slo.check(result)
        print(f"SLO {args.slo}: {'pass' if ok else 'FAIL'} ({why})")
        probes.append(result | {"slo_pass": ok, "slo_reason": why, over: value})
        return ok

    best = bisect_max(low, high, passes, integer, args.search_precision / 100)
    print()
    print("\n".join(sweep_table(probes)))
    if best is None:
        print(f"\nno {over} in [{low:g}, {high:g}] meets {args.slo}: even {low:g} misses it")
    else:
        edge = " (the upper bound: raise it to search further)" if best == high else ""
        print(f"\nhighest {over} meeting {args.slo}: {best:g}{edge}")
    doc = _document(args, probes)
    doc["search"] = {"over": over, "slo": args.slo, "low": low, "high": high, "best": best}
    if cold is not None:
        doc["cold_start"] = coldstart.report(steady=probes[0], **cold)
        _print_cold(doc["cold_start"])
    _write(doc, args)
    return 0 if best is not None else 1


def _document(args: argparse.Namespace, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": SCHEMA, "kind": "steps", **run_context(vars(args)), "steps": steps}


def _exit_code(results: list[dict[str, Any]]) -> int:
    return 1 if any(r["errors"] and not r["completed"] for r in results) else 0


def _finish(result: dict[str, Any], args: argparse.Namespace) -> None:
    result["batch_size"] = args.batch_size
    if result["pattern"].get("sizes"):  # a trace gave each request its own size
        result["items_per_second"] = result["items"] / result["duration_s"]
    else:
        result["items_per_second"] = result["throughput_rps"] * args.batch_size
    energy = result.get("hardware", {}).get("energy", {})
    if energy.get("per_request_j") is not None:
        per_item = result["items_per_second"] / max(result["throughput_rps"], 1e-12)
        energy["per_item_j"] = energy["per_request_j"] / per_item
        energy["carbon_per_item_mg"] = energy["carbon_per_request_mg"] / per_item
    result.update(run_context(vars(args)))
    _print(result)
    for warning in result["warnings"]:
        print(f"warning: {warning}")
    if args.csv:
        _csv(args.csv, result, args)


def _write(doc: dict[str, Any], args: argparse.Namespace) -> None:
    if args.output:
        args.output.write_text(json.dumps(doc, indent=1))


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """uvloop where installed: a leaner client loop measures the server more closely."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)
