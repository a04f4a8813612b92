"""Server-side breakdown: from a target's Triton-style statistics API (Conveyor, Triton),
the deltas of `/v2/models/{m}/stats` over the measured time, per request, and the
transmission time = client latency - server request time; from any Prometheus
`/metrics` endpoint, counter and histogram deltas over the same time.

For an ensemble (its `/config` says `platform: ensemble`), each step's model is probed
too, as perf_analyzer does for composing models: the breakdown's `steps` gives every
step's request, queue and compute times, so a pipeline's pre-processing, inference and
post-processing show separately beside the transmission. A native pipeline's function
steps are there too, under the names Conveyor's statistics give them (`pipeline:function`).
`busy` is the time the model (or step) spent executing over the measured window, each
execution once (from `batch_stats`): 1.0 is one instance busy throughout, so a stage
that saturates the CPU and a stage that idles part of the time tell themselves apart."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from typing import Any

FIELDS = ("success", "queue", "compute_input", "compute_infer", "compute_output")


class StatsProbe:
    def __init__(self, base_url: str, model: str, version: str = "") -> None:
        self.base = base_url.rstrip("/")
        self.model_path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        self.url = self.base + self.model_path + "/stats"
        self.name = model
        self.steps: list[str] | None = None  # an ensemble's step models, once known
        self.functions: set[str] = set()  # those of them that are function steps

    def _steps(self) -> list[str]:
        if self.steps is None:
            self.steps = []
            try:
                with urllib.request.urlopen(self.base + self.model_path + "/config") as resp:
                    config = json.load(resp)
            except (OSError, ValueError):
                return self.steps
            if config.get("platform") == "ensemble":
                steps = (config.get("ensemble_scheduling") or {}).get("step") or []
                self.steps = [str(s["model_name"]) for s in steps if s.get("model_name")]
            elif config.get("platform") == "pipeline":
                # model steps by their names; function steps as Conveyor reports them,
                # `pipeline:function`, in the statistics of all models
                for s in (config.get("pipeline") or {}).get("steps") or []:
                    if s.get("model"):
                        self.steps.append(str(s["model"]))
                    elif s.get("function"):
                        name = f"{self.name}:{str(s['function']).rpartition(':')[2]}"
                        self.steps.append(name)
                        self.functions.add(name)
        return self.steps

    def _fetch(self) -> dict[str, Any]:
        at = time.perf_counter_ns()
        totals = self._totals(self.url)
        totals["at_ns"] = at
        steps = self._steps()
        if steps:
            every = self._get(f"{self.base}/v2/models/stats") if self.functions else {}
            totals["steps"] = {
                name: (
                    self._sum(every, name)
                    if name in self.functions
                    else self._totals(f"{self.base}/v2/models/{name}/stats")
                )
                | {"at_ns": at}
                for name in steps
            }
        return totals

    @staticmethod
    def _get(url: str) -> dict[str, Any]:
        with urllib.request.urlopen(url, timeout=10) as resp:
            doc: dict[str, Any] = json.load(resp)
        return doc

    @classmethod
    def _totals(cls, url: str) -> dict[str, Any]:
        return cls._sum(cls._get(url))

    @staticmethod
    def _sum(doc: dict[str, Any], only: str = "") -> dict[str, Any]:
        totals: dict[str, Any] = {f: [0, 0] for f in FIELDS}
        totals["busy_ns"] = 0
        for model in doc.get("model_stats", []):
            if only and model.get("name") != only:
                continue
            for batch in model.get("batch_stats", []):  # each execution counted once
                for f in ("compute_input", "compute_infer", "compute_output"):
                    totals["busy_ns"] += int(batch.get(f, {}).get("ns", 0))
            stats = model.get("inference_stats", {})
            for f in FIELDS:
                totals[f][0] += int(stats.get(f, {}).get("count", 0))
                totals[f][1] += int(stats.get(f, {}).get("ns", 0))
        return totals

    async def snapshot(self) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self._fetch)
        except (OSError, ValueError):
            return None  # no statistics there: no breakdown, not an error

    @staticmethod
    def breakdown(
        before: dict[str, Any] | None, after: dict[str, Any] | None, client_mean_ms: float | None
    ) -> dict[str, Any]:
        if before is None or after is None:
            return {}
        out: dict[str, Any] = {}
        for f in FIELDS:
            count = after[f][0] - before[f][0]
            ns = after[f][1] - before[f][1]
            key = "request_us" if f == "success" else f"{f}_us"
            out[key] = round(ns / count / 1000, 1) if count else 0.0
        out["requests"] = float(after["success"][0] - before["success"][0])
        if client_mean_ms is not None and out["requests"]:
            out["transmission_us"] = round(client_mean_ms * 1000 - out["request_us"], 1)
        window_ns = after.get("at_ns", 0) - before.get("at_ns", 0)
        if window_ns > 0 and "busy_ns" in after:
            # executions' compute time / the window: 1.0 = one instance busy throughout
            out["busy"] = round((after["busy_ns"] - before.get("busy_ns", 0)) / window_ns, 3)
        steps_before, steps_after = before.get("steps") or {}, after.get("steps") or {}
        if steps_after:
            out["steps"] = {
                name: StatsProbe.breakdown(steps_before.get(name), totals, None)
                for name, totals in steps_after.items()
            }
        return out


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
    """Prometheus text format -> ({family: type}, {(sample name, labels): value})."""
    types: dict[str, str] = {}
    samples: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m:
            try:
                samples[(m.group(1), m.group(2) or "")] = float(m.group(3))
            except ValueError:
                continue
    return types, samples


class PrometheusProbe:
    """Scrapes a `/metrics` endpoint (Conveyor's, Triton's `nv_*`, any exporter's) before
    and after the measured time. Counters and histogram sums/counts become deltas, with
    each histogram's mean over the window; gauges keep their last value. With `model`,
    only series without a model label or with that model are kept."""

    def __init__(self, url: str, model: str = "") -> None:
        self.url = url
        self.model = model

    def _fetch(self) -> tuple[dict[str, str], dict[tuple[str, str], float]]:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            return parse_prometheus(resp.read().decode(errors="replace"))

    async def snapshot(self) -> tuple[dict[str, str], dict[tuple[str, str], float]] | None:
        try:
            return await asyncio.to_thread(self._fetch)
        except (OSError, ValueError):
            return None

    def _keep(self, labels: str) -> bool:
        if not self.model:
            return True
        found = dict(_LABEL.findall(labels))
        name = found.get("model", found.get("model_name"))
        return name is None or name == self.model

    def delta(
        self,
        before: tuple[dict[str, str], dict[tuple[str, str], float]] | None,
        after: tuple[dict[str, str], dict[tuple[str, str], float]] | None,
    ) -> dict[str, Any]:
        if before is None or after is None:
            return {"url": self.url, "error": "could not scrape"}
        types, end = after
        start = before[1]
        counters: dict[str, float] = {}
        gauges: dict[str, float] = {}
        histograms: dict[str, dict[str, float]] = {}
        for (name, labels), value in end.items():
            if not self._keep(labels):
                continue
            family = re.sub(r"_(bucket|sum|count|total)$", "", name)
            kind = types.get(name) or types.get(family) or "untyped"
            key = name + labels
            if kind == "histogram" or kind == "summary":
                if name.endswith("_sum") or name.endswith("_count"):
                    field = "sum" if name.endswith("_sum") else "count"
                    h = histograms.setdefault(family + labels, {})
                    h[field] = value - start.get((name, labels), 0.0)
            elif kind == "counter" or name.endswith("_total"):
                counters[key] = value - start.get((name, labels), 0.0)
            else:
                gauges[key] = value
        for h in histograms.values():
            if h.get("count"):
                h["mean"] = h.get("sum", 0.0) / h["count"]
        return {
            "url": self.url,
            "counters": {k: v for k, v in counters.items() if v},
            "histograms": {k: v for k, v in histograms.items() if v.get("count")},
            "gauges": gauges,
        }
