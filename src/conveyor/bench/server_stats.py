"""Server-side breakdown from a target's Triton-style statistics API (Conveyor, Triton):
the deltas of `/v2/models/{m}/stats` over the measured time, per request, and the
transmission time = client latency - server request time."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

FIELDS = ("success", "queue", "compute_input", "compute_infer", "compute_output")


class StatsProbe:
    def __init__(self, base_url: str, model: str, version: str = "") -> None:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/stats"
        self.url = base_url.rstrip("/") + path

    def _fetch(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url, timeout=10) as resp:
            doc: dict[str, Any] = json.load(resp)
        totals = {f: [0, 0] for f in FIELDS}
        for model in doc.get("model_stats", []):
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
    ) -> dict[str, float]:
        if before is None or after is None:
            return {}
        out = {}
        for f in FIELDS:
            count = after[f][0] - before[f][0]
            ns = after[f][1] - before[f][1]
            key = "request_us" if f == "success" else f"{f}_us"
            out[key] = round(ns / count / 1000, 1) if count else 0.0
        out["requests"] = float(after["success"][0] - before["success"][0])
        if client_mean_ms is not None and out["requests"]:
            out["transmission_us"] = round(client_mean_ms * 1000 - out["request_us"], 1)
        return out
