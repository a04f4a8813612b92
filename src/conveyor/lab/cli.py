"""`conveyor lab`: flags, the run, the table on the terminal, the JSON and HTML files."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_PEERS = "conveyor,triton,torchserve,mlserver,fastapi,falcon,inprocess"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers separated by commas, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def default_cache() -> Path:
    env = os.environ.get("CONVEYOR_LAB_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "conveyor" / "lab"


def add_parser(sub: Any) -> None:
    from conveyor.lab import BUILT_IN, WORKLOADS

    p = sub.add_parser(
        "lab",
        help="one model on several serving systems, side by side, on this machine",
        description="Serve MODEL on each peer with an equivalent configuration (the "
        "largest batch, the batching window, instances, threads), check that every peer "
        "returns the model's outputs for the same inputs, measure each with the same "
        "client in alternating rounds (medians), stop each, and write one JSON document "
        "(and, with --html, the report). Peers that need installing get their own "
        "virtualenv under --cache, created once from the package registries with pinned "
        "versions. A peer that cannot be installed or started, cannot read the model, or "
        "answers wrongly is reported with the reason and the run goes on.",
        epilog="Peers: conveyor (= conveyor-ort, conveyor-openvino, conveyor-torch, "
        "conveyor-tf: each runtime that can load the model), triton (Triton 2.51 from "
        "nvidia-pytriton, python backend running ONNX Runtime), torchserve (0.12, needs "
        "Java 17), mlserver (1.7.1, a custom ONNX Runtime runtime), fastapi (FastAPI + "
        "orjson, V2 JSON), falcon (Falcon + msgpack under gunicorn, seed 000's "
        "self-hosted server), inprocess (= inprocess-ort, inprocess-torch, inprocess-tf: "
        "the framework called directly). --peer NAME=PROTOCOL+URL adds a server you run "
        "(TF Serving: tfserving+http://HOST:8501); protocols: v2-binary, v2-json, "
        "tfserving, torchserve-npy, msgpack. Workloads: images (seed 000: --images at "
        "each --batches, time for all), rpc (seed 004: --rpc-clients on an empty model "
        "and the real one, batch 1), ramp (seed 002: a user joining per second up to "
        "--ramp-users, --ramp-seconds).",
    )
    p.add_argument(
        "model",
        help=f"a built-in model ({', '.join(BUILT_IN)}: fixed-seed weights in every "
        "format) or an .onnx file (peers that need another format are skipped)",
    )
    p.add_argument(
        "--peers", default=DEFAULT_PEERS, help=f"comma-separated (default {DEFAULT_PEERS})"
    )
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="NAME=PROTOCOL+URL",
        help="a server you run, driven at its address (repeatable)",
    )
    p.add_argument("--peer-model", help="the model's name on the --peer servers (default MODEL's)")
    p.add_argument("--workloads", default=",".join(WORKLOADS), help="images,rpc,ramp (default all)")
    p.add_argument(
        "--images", type=int, default=32000, help="images per batch size (default 32000)"
    )
    p.add_argument("--batches", type=_ints, default=(10, 32), help="default 10,32")
    p.add_argument(
        "--images-clients",
        type=int,
        default=1,
        help="requests in flight for the images workload (default 1)",
    )
    p.add_argument("--rpc-clients", type=_ints, default=(1, 10), help="default 1,10")
    p.add_argument("--seconds", type=float, default=10.0, help="per rpc cell (default 10)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds before each rpc cell")
    p.add_argument("--ramp-users", type=int, default=20, help="the ramp's plateau (default 20)")
    p.add_argument("--ramp-seconds", type=float, default=30.0, help="default 30")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--max-batch", type=int, default=32, help="every batcher's largest batch")
    p.add_argument("--batch-delay-us", type=int, default=2000, help="every batching window")
    p.add_argument("--instances", type=int, default=1, help="model instances per peer")
    p.add_argument(
        "--threads",
        type=int,
        default=max(1, os.cpu_count() or 1),
        help="threads per instance (default: the CPUs)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest |output - reference| allowed, relative to the largest "
        "output above 1 (default 1e-3)",
    )
    p.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="virtualenvs and built models (default $CONVEYOR_LAB_CACHE or ~/.cache/conveyor/lab)",
    )
    p.add_argument("--output", type=Path, default=Path("lab.json"), help="default lab.json")
    p.add_argument("--html", type=Path, help="also write the report (needs conveyor[report])")


def run(args: argparse.Namespace) -> int:
    from conveyor.lab import WORKLOADS
    from conveyor.lab.models import resolve
    from conveyor.lab.peers import PEERS, Context, Peer, Settings, expand, parse_external
    from conveyor.lab.run import Lab, Options

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    workloads = tuple(w for w in args.workloads.split(",") if w)
    bad = [w for w in workloads if w not in WORKLOADS]
    try:
        if bad:
            raise ValueError(f"unknown workload {bad[0]!r}: one of {', '.join(WORKLOADS)}")
        names = expand([n for n in args.peers.split(",") if n])
        peers: list[Peer] = [PEERS[n]() for n in names]
        peers += [parse_external(text, args.peer_model) for text in args.peer]
        if not peers:
            raise ValueError("no peers: give --peers or --peer")
        cache = args.cache or default_cache()
        say(f"building {args.model} under {cache}")
        real, empty = resolve(args.model, cache)
    except ValueError as exc:
        print(f"conveyor lab: {exc}", file=sys.stderr)
        return 2
    settings = Settings(args.max_batch, args.batch_delay_us, args.instances, args.threads)
    opts = Options(
        workloads=workloads,
        images=args.images,
        batches=args.batches,
        images_clients=args.images_clients,
        rpc_clients=args.rpc_clients,
        seconds=args.seconds,
        warmup_s=args.warmup,
        ramp_users=args.ramp_users,
        ramp_seconds=args.ramp_seconds,
        rounds=args.rounds,
        tolerance=args.tolerance,
    )

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through every peer's stop

    signal.signal(signal.SIGTERM, stop)
    try:
        with tempfile.TemporaryDirectory(prefix="conveyor-lab-") as workdir:
            ctx = Context(cache, Path(workdir), settings, say)
            doc = Lab(ctx, real, empty, peers, opts).run()
    except KeyboardInterrupt:
        print("conveyor lab: interrupted; the peers it started are stopped", file=sys.stderr)
        return 130
    args.output.write_text(json.dumps(doc, indent=1))
    print_tables(doc)
    print(f"wrote {args.output}")
    if args.html:
        from conveyor.report.lab import build_lab

        try:
            args.html.write_text(build_lab(doc))
        except RuntimeError as exc:
            print(f"conveyor lab: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.html}")
    left = [pid for p in doc["peers"] for pid in p["left_behind"]]
    if left:
        print(f"conveyor lab: processes left behind: {left}", file=sys.stderr)
        return 1
    return 0


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _table(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    if not rows:
        return
    print(f"\n{title}")
    cells = [[_fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def print_tables(doc: dict[str, Any]) -> None:
    _table(
        "peers",
        doc["peers"],
        ["name", "kind", "protocol", "status", "startup_s", "version", "reason"],
    )
    t = doc["tables"]
    _table(
        "images (seed 000): the time for all images, per batch size",
        t["images"],
        [
            "peer",
            "batch",
            "images",
            "seconds",
            "images_per_s",
            "p50_ms",
            "p99_ms",
            "server_cpu_cores",
            "server_rss_mb",
            "spread",
            "vs_best_served",
            "vs_conveyor",
            "errors",
        ],
    )
    _table(
        "rpc (seed 004): empty model vs the model, batch 1",
        t["rpc"],
        [
            "peer",
            "clients",
            "empty_rps",
            "empty_p50_ms",
            "model_rps",
            "model_p50_ms",
            "model_p99_ms",
            "transport_share",
            "vs_best_served",
            "errors",
        ],
    )
    _table(
        "ramp (seed 002): a user a second up to the plateau",
        t["ramp"],
        ["peer", "users", "seconds", "requests_per_s", "p50_ms", "p99_ms", "errors"],
    )
