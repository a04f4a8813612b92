"""One lab run: every peer serves the model (and its empty twin), is checked against the
model's own output, is measured on each workload by the same client in alternating
rounds, and is stopped; the medians over rounds go in one JSON document.

Workloads (each reproduces a seed's table):
- `images` (seed 000): N images sent at batch 10 and 32, the time for all of them, per
  peer, with p50/p99 per request, the server's CPU and memory, and its startup time;
- `rpc` (seed 004): 1 and 10 clients at batch 1 on the empty model and on the real one,
  so the table shows how much of each peer's cost is transport;
- `ramp` (seed 002): Locust's ramp, a client joining every second up to a plateau,
  answers/s and latency second by second (served peers only).

A peer that cannot be installed or started, cannot read the model's format, or answers
wrongly is reported with the reason; the run goes on with the others.
"""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conveyor.bench import runner
from conveyor.bench.patterns import ClosedLoop, FixedCount, Pattern, Ramp
from conveyor.bench.results import environment
from conveyor.lab import WORKLOADS
from conveyor.lab.inprocess import MIN_CPU_WINDOW_S
from conveyor.lab.models import LabModel
from conveyor.lab.peers import Context, InProcessPeer, Peer, Running, describe
from conveyor.lab.process import PeerError, group_members

SCHEMA = "conveyor-lab/1"


@dataclass(frozen=True)
class Cell:
    workload: str
    model: str  # "real" | "empty"
    batch: int
    clients: int
    requests: int = 0  # a fixed count (images); else `seconds`
    seconds: float = 0.0
    ramp_per_s: float = 0.0

    @property
    def key(self) -> str:
        return f"{self.workload}/{self.model}/b{self.batch}/c{self.clients}"


@dataclass
class Options:
    workloads: tuple[str, ...] = WORKLOADS
    images: int = 32000
    batches: tuple[int, ...] = (10, 32)
    images_clients: int = 1
    rpc_clients: tuple[int, ...] = (1, 10)
    seconds: float = 10.0
    warmup_s: float = 2.0
    ramp_users: int = 20
    ramp_seconds: float = 30.0
    rounds: int = 3
    tolerance: float = 1e-3


def cells(opts: Options) -> list[Cell]:
    out: list[Cell] = []
    if "images" in opts.workloads:
        for b in opts.batches:
            out.append(Cell("images", "real", b, opts.images_clients, math.ceil(opts.images / b)))
    if "rpc" in opts.workloads:
        for model in ("empty", "real"):
            for c in opts.rpc_clients:
                out.append(Cell("rpc", model, 1, c, seconds=opts.seconds))
    if "ramp" in opts.workloads:
        out.append(
            Cell("ramp", "real", 1, opts.ramp_users, seconds=opts.ramp_seconds, ramp_per_s=1.0)
        )
    return out


@dataclass
class PeerState:
    peer: Peer
    status: str = "ok"  # ok | skipped | failed | wrong
    reason: str = ""
    check: dict[str, Any] = field(default_factory=dict)
    startup_s: list[float] = field(default_factory=list)
    left_behind: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class Peak:
    """The largest resident memory of a server's tree, sampled twice a second."""

    def __init__(self, sample: Any) -> None:
        self.sample = sample
        self.peak = float(sample())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.peak = max(self.peak, float(self.sample()))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, float(self.sample()))
        return self.peak


def _pattern(cell: Cell) -> Pattern:
    if cell.requests:
        return FixedCount(cell.requests, cell.clients)
    if cell.ramp_per_s:
        return Ramp(cell.ramp_per_s, cell.clients)
    return ClosedLoop(cell.clients)


def _summary(result: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """What the tables need of one bench result."""
    lat = result.get("latency_ms") or {}
    elapsed = float(result["duration_s"])
    row = {
        "completed": result["completed"],
        "errors": sum(result["errors"].values()),
        "error_samples": result.get("error_samples", {}),
        "seconds": round(elapsed, 3),
        "requests_per_s": round(result["completed"] / elapsed, 2) if elapsed else 0.0,
        "items_per_s": round(result["completed"] * cell.batch / elapsed, 2) if elapsed else 0.0,
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "mean_ms": lat.get("mean"),
        "server_cpu_cores": result.get("server_cpu_cores"),
        "server_rss_mb": result.get("server_rss_mb"),
    }
    if cell.workload == "ramp":
        row["timeline"] = result.get("timeline", [])
    return row


def _served_cell(running: Running, model: LabModel, cell: Cell, opts: Options) -> dict[str, Any]:
    x = model.sample(cell.batch)
    pattern = _pattern(cell)
    warm = FixedCount(max(2, cell.clients), cell.clients)
    asyncio.run(runner.run(running.target(model, x), warm, 0))  # connections, first batches
    if cell.seconds and cell.workload != "ramp" and opts.warmup_s:
        asyncio.run(runner.run(running.target(model, x), ClosedLoop(cell.clients), opts.warmup_s))
    server = running.server
    cpu0 = server.cpu_seconds() if server else 0.0
    peak = Peak(server.rss_mb) if server else None
    t0 = time.perf_counter()
    result = asyncio.run(runner.run(running.target(model, x), pattern, cell.seconds))
    wall = time.perf_counter() - t0
    if server is not None and peak is not None:
        cpu = server.cpu_seconds() - cpu0
        result["server_cpu_cores"] = round(cpu / wall, 3) if wall >= MIN_CPU_WINDOW_S else None
        result["server_rss_mb"] = round(peak.stop(), 1)
    return _summary(result, cell)


def _check(out: np.ndarray, ref: np.ndarray, tolerance: float) -> dict[str, Any]:
    if out.shape != ref.shape:
        return {
            "ok": False,
            "detail": f"output shape {list(out.shape)}, expected {list(ref.shape)}",
        }
    diff = float(np.abs(out.astype(np.float64) - ref).max()) if ref.size else 0.0
    bound = tolerance * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    return {"ok": diff <= bound, "max_abs_diff": diff, "bound": bound}


class Lab:
    def __init__(
        self,
        ctx: Context,
        real: LabModel,
        empty: LabModel,
        peers: list[Peer],
        opts: Options,
    ) -> None:
        self.ctx = ctx
        self.real = real
        self.empty = empty
        self.opts = opts
        self.states = [PeerState(p) for p in peers]
        self.cells = cells(opts)
        self.check_x = real.sample(2, seed=7)
        self.reference = {"real": real.reference(self.check_x)}
        self.reference["empty"] = self.check_x.reshape(2, -1)[:, : empty.output_size]

    def model(self, role: str) -> LabModel:
        return self.real if role == "real" else self.empty

    def _verify(self, state: PeerState, outputs: dict[str, np.ndarray]) -> None:
        for role, out in outputs.items():
            result = _check(out, self.reference[role], self.opts.tolerance)
            state.check[role] = result
            if not result["ok"]:
                state.status = "wrong"
                what = result.get("detail") or (
                    f"max |output - reference| = {result['max_abs_diff']:.3g} "
                    f"> {result['bound']:.3g}"
                )
                state.reason = f"answers the {role} model wrongly: {what}"

    def _prepare(self, state: PeerState) -> None:
        peer = state.peer
        try:
            for model in (self.real, self.empty):
                peer.fmt(model)
            peer.install(self.ctx)
        except PeerError as exc:
            state.status, state.reason = "skipped", str(exc)

    def _run_served(self, state: PeerState, first: bool) -> None:
        peer = state.peer
        running = peer.start(self.ctx, [self.real, self.empty])
        if running.server is not None:
            state.pids.append(running.server.pid)
            state.startup_s.append(running.server.startup_s)
        try:
            for role in ("real", "empty") if first else ():
                self._verify(state, {role: running.infer(self.model(role), self.check_x)})
                if state.status != "ok":
                    return
            for cell in self.cells:
                self.ctx.say(f"    {peer.name} {cell.key}")
                row = _served_cell(running, self.model(cell.model), cell, self.opts)
                state.rows.setdefault(cell.key, []).append(row)
        finally:
            state.left_behind += running.stop()

    def _run_inprocess(self, state: PeerState, first: bool) -> None:
        peer = state.peer
        assert isinstance(peer, InProcessPeer)
        todo = [c for c in self.cells if c.workload != "ramp"]
        for role in ("real", "empty"):
            model = self.model(role)
            mine = [c for c in todo if c.model == role]
            if not mine and not first:
                continue  # checked in the first round; nothing to measure on it
            with tempfile.TemporaryDirectory() as tmp:
                check_in, check_out = Path(tmp) / "in.npy", Path(tmp) / "out.npy"
                np.save(check_in, self.check_x)
                job = {
                    "item_shape": list(model.item_shape),
                    "check": str(check_in) if first else "",
                    "check_out": str(check_out),
                    "cells": [
                        {"batch": c.batch, "clients": c.clients, "requests": c.requests}
                        if c.requests
                        else {
                            "batch": c.batch,
                            "clients": c.clients,
                            "seconds": c.seconds,
                            "warmup_s": self.opts.warmup_s,
                        }
                        for c in mine
                    ],
                }
                self.ctx.say(f"    {peer.name} {role}: {len(mine)} cells")
                proc = subprocess.run(
                    peer.command(model, self.ctx.settings.threads),
                    input=json.dumps(job),
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    last = " | ".join(proc.stderr.strip().splitlines()[-4:])
                    raise PeerError(f"exited with {proc.returncode}: {last}")
                doc = json.loads(proc.stdout)
                if first:
                    self._verify(state, {role: np.load(check_out)})
                    if state.status != "ok":
                        return
            if role == "real":
                state.startup_s.append(float(doc["startup_s"]))
            for cell, result in zip(mine, doc["cells"], strict=True):
                state.rows.setdefault(cell.key, []).append(_summary(result, cell))

    def run(self) -> dict[str, Any]:
        t0 = time.time()
        for state in self.states:
            self._prepare(state)
            if state.status != "ok":
                self.ctx.say(f"  {state.peer.name}: skipped: {state.reason}")
        for r in range(self.opts.rounds):
            active = [s for s in self.states if s.status == "ok"]
            order = active if r % 2 == 0 else active[::-1]  # alternating rounds
            self.ctx.say(
                f"round {r + 1}/{self.opts.rounds}: {', '.join(s.peer.name for s in order)}"
            )
            for state in order:
                try:
                    if isinstance(state.peer, InProcessPeer):
                        self._run_inprocess(state, first=r == 0)
                    else:
                        self._run_served(state, first=r == 0)
                except PeerError as exc:
                    state.status, state.reason = "failed", str(exc)
                if state.status != "ok":
                    self.ctx.say(f"  {state.peer.name}: {state.status}: {state.reason}")
        return self.document(time.time() - t0)

    def document(self, elapsed: float) -> dict[str, Any]:
        peers = []
        for s in self.states:
            alive = [p for pid in s.pids for p in group_members(pid)]
            peers.append(
                {
                    **describe(s.peer),
                    "status": s.status,
                    "reason": s.reason,
                    "check": s.check,
                    "startup_s": _median(s.startup_s),
                    "pids": s.pids,
                    "left_behind": sorted(set(s.left_behind + alive)),
                }
            )
        results = []
        for s in self.states:
            for cell in self.cells:
                rounds = s.rows.get(cell.key)
                if not rounds:
                    continue
                results.append(
                    {
                        "peer": s.peer.name,
                        "kind": s.peer.kind,
                        **asdict(cell),
                        "key": cell.key,
                        **_medians(rounds),
                        "rounds": rounds,
                    }
                )
        _ratios(results)
        return {
            "schema": SCHEMA,
            "kind": "lab",
            "model": {
                "name": self.real.name,
                "item_shape": list(self.real.item_shape),
                "output_size": self.real.output_size,
                "formats": sorted(self.real.files),
            },
            "settings": asdict(self.ctx.settings),
            "options": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.opts).items()
            },
            "environment": environment(),
            "elapsed_s": round(elapsed, 1),
            "peers": peers,
            "results": results,
            "tables": tables(results, peers),
        }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


METRICS = (
    "seconds",
    "requests_per_s",
    "items_per_s",
    "p50_ms",
    "p99_ms",
    "mean_ms",
    "server_cpu_cores",
    "server_rss_mb",
)


def _medians(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in METRICS:
        values = [r[key] for r in rounds if r.get(key) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    out["errors"] = sum(r["errors"] for r in rounds)
    # how far apart the rounds were: a difference between peers smaller than this is noise
    rates = [r["items_per_s"] for r in rounds if r.get("items_per_s")]
    out["spread"] = (
        round((max(rates) - min(rates)) / statistics.median(rates), 3) if len(rates) > 1 else None
    )
    if rounds and "timeline" in rounds[-1]:
        out["timeline"] = rounds[len(rounds) // 2]["timeline"]
    return out


def _ratios(results: list[dict[str, Any]]) -> None:
    """Each row's throughput ÷ the best served peer's and ÷ the best Conveyor's, in the
    same cell."""
    by_cell: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        by_cell.setdefault(row["key"], []).append(row)
    for rows in by_cell.values():
        served = [r["items_per_s"] for r in rows if r["kind"] != "in-process" and r["items_per_s"]]
        ours = [
            r["items_per_s"] for r in rows if r["peer"].startswith("conveyor-") and r["items_per_s"]
        ]
        for r in rows:
            v = r["items_per_s"] or 0.0
            r["vs_best_served"] = round(v / max(served), 3) if served else None
            r["vs_conveyor"] = round(v / max(ours), 3) if ours else None


def tables(results: list[dict[str, Any]], peers: list[dict[str, Any]]) -> dict[str, Any]:
    """The seeds' tables, row per peer."""
    startup = {p["name"]: p["startup_s"] for p in peers}
    images = [
        {
            "peer": r["peer"],
            "batch": r["batch"],
            "images": r["requests"] * r["batch"],
            "seconds": r["seconds"],
            "images_per_s": r["items_per_s"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "server_cpu_cores": r["server_cpu_cores"],
            "server_rss_mb": r["server_rss_mb"],
            "spread": r.get("spread"),
            "startup_s": startup.get(r["peer"]),
            "vs_best_served": r["vs_best_served"],
            "vs_conveyor": r["vs_conveyor"],
            "errors": r["errors"],
        }
        for r in results
        if r["workload"] == "images"
    ]
    rpc = []
    for r in results:
        if r["workload"] != "rpc" or r["model"] != "real":
            continue
        empty = next(
            (
                e
                for e in results
                if e["workload"] == "rpc"
                and e["model"] == "empty"
                and e["peer"] == r["peer"]
                and e["clients"] == r["clients"]
            ),
            None,
        )
        share = None
        if empty and empty["mean_ms"] and r["mean_ms"]:
            share = round(min(1.0, empty["mean_ms"] / r["mean_ms"]), 3)
        rpc.append(
            {
                "peer": r["peer"],
                "clients": r["clients"],
                "empty_rps": empty["requests_per_s"] if empty else None,
                "empty_p50_ms": empty["p50_ms"] if empty else None,
                "model_rps": r["requests_per_s"],
                "model_p50_ms": r["p50_ms"],
                "model_p99_ms": r["p99_ms"],
                "transport_share": share,
                "vs_best_served": r["vs_best_served"],
                "errors": r["errors"] + (empty["errors"] if empty else 0),
            }
        )
    ramp = [
        {
            "peer": r["peer"],
            "users": r["clients"],
            "seconds": r["seconds"],
            "requests_per_s": r["requests_per_s"],
            "p50_ms": r["p50_ms"],
            "p99_ms": r["p99_ms"],
            "timeline": r.get("timeline", []),
            "errors": r["errors"],
        }
        for r in results
        if r["workload"] == "ramp"
    ]
    return {"images": images, "rpc": rpc, "ramp": ramp}
