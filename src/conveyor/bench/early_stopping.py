"""MLPerf LoadGen's early stopping for tail latencies: how many samples a percentile
needs before its estimate can be trusted, and an estimate that is an upper confidence
bound on the true percentile.

With n samples, the p-th percentile's latency L is exceeded by a fraction (1 - p) of
requests. Having seen t samples above some latency, the chance that at most t of n
exceed it when the true rate is (1 - p) is the binomial CDF B(t; n, 1 - p). The largest
t with B(t; n, 1 - p) <= 1 - confidence is how many samples may lie above the reported
value: the estimate is the (n - t)-th smallest latency, at or above the empirical
percentile, and the true percentile lies below it with that confidence. With fewer than
log(1 - confidence) / log(p) samples no t qualifies, and no estimate is given (at 99%
confidence: 44 samples for p90, 459 for p99, 4,603 for p99.9).
"""

from __future__ import annotations

import math
from typing import Any

from hdrh.histogram import HdrHistogram


def min_samples(percentile: float, confidence: float = 0.99) -> int:
    """The fewest samples for which an estimate exists (percentile as 0.99)."""
    return math.ceil(math.log(1 - confidence) / math.log(percentile))


def overlatency_allowed(n: int, percentile: float, confidence: float = 0.99) -> int:
    """The most samples that may lie above the estimate; -1 when n is too small."""
    q = 1 - percentile
    if n <= 0:
        return -1
    alpha = math.log(1 - confidence)
    log_pmf = n * math.log(percentile)  # k = 0
    log_cdf = log_pmf
    if log_cdf > alpha:
        return -1
    t = 0
    for k in range(n):
        log_pmf += math.log(n - k) - math.log(k + 1) + math.log(q) - math.log(percentile)
        log_cdf = max(log_cdf, log_pmf) + math.log1p(math.exp(-abs(log_cdf - log_pmf)))
        if log_cdf > alpha:
            return t
        t = k + 1
    return t


def estimate(
    latency_us: HdrHistogram, percentile: float, confidence: float = 0.99
) -> dict[str, Any]:
    """The early-stopping estimate of one percentile from a latency histogram (µs)."""
    n = latency_us.get_total_count()
    t = overlatency_allowed(n, percentile, confidence)
    out: dict[str, Any] = {
        "percentile": percentile * 100,
        "confidence": confidence,
        "samples": n,
        "min_samples": min_samples(percentile, confidence),
        "empirical_ms": latency_us.get_value_at_percentile(percentile * 100) / 1000 if n else None,
    }
    if t < 0:
        out.update(estimate_ms=None, overlatency_allowed=None)
    else:
        rank = (n - t) / n * 100
        out.update(
            estimate_ms=latency_us.get_value_at_percentile(rank) / 1000, overlatency_allowed=t
        )
    return out


def met(entry: dict[str, Any], tolerance: float) -> bool:
    """The estimate exists and lies within `tolerance` of the empirical percentile."""
    est, emp = entry.get("estimate_ms"), entry.get("empirical_ms")
    return est is not None and emp is not None and est <= emp * (1 + tolerance) + 1e-3
