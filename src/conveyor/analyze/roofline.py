"""The roofline: where a model's measured throughput sits under this machine's ceilings.

A model of arithmetic intensity I (FLOP per byte moved, from `analyze`) can reach at
most min(peak FLOP/s, I x bandwidth): the compute roof right of the ridge point
(peak / bandwidth), the bandwidth roof left of it. Its achieved FLOP/s is its measured
items/s (a `conveyor bench` result) x FLOPs per item. A point reaching at least half of
its roof is labelled bound by that roof (compute-bound, bandwidth-bound); one below
half of both is "below both: overhead-bound": the time goes to what surrounds the model
(data processing, I/O, transmission, the framework), not to its arithmetic.
"""

from __future__ import annotations

from typing import Any

BOUND_SHARE = 0.5  # of the roof: at or above it, the roof is what limits


def items_per_s(result: dict[str, Any]) -> float:
    """A bench result's items/s (rows: a request of batch 8 counts 8)."""
    duration = float(result.get("duration_s") or 0)
    if not duration:
        raise ValueError("the bench result has no duration")
    return float(result.get("items") or result.get("completed") or 0) / duration


def place(analysis: dict[str, Any], machine: dict[str, Any], per_s: float) -> dict[str, Any]:
    peak = float(machine["peak_fp32_gflops"]) * 1e9
    bandwidth = float(machine["peak_bandwidth_gbs"]) * 1e9
    intensity = float(analysis["arithmetic_intensity"])
    achieved = float(analysis["per_item"]["flops"]) * per_s
    roof = min(peak, intensity * bandwidth)
    kind = "compute" if intensity * bandwidth >= peak else "bandwidth"
    share = achieved / roof if roof else 0.0
    return {
        "items_per_s": per_s,
        "intensity_flop_per_byte": intensity,
        "achieved_gflops": achieved / 1e9,
        "roof_gflops": roof / 1e9,
        "ridge_flop_per_byte": peak / bandwidth,
        "share_of_roof": share,
        "bound": f"{kind}-bound" if share >= BOUND_SHARE else "below both: overhead-bound",
    }
