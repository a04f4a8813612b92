"""Prometheus text parsing and window deltas, model filter included."""

from __future__ import annotations

from conveyor.bench.server_stats import PrometheusProbe, parse_prometheus

BEFORE = """# HELP x_requests_total Requests.
# TYPE x_requests_total counter
x_requests_total{model="a",version="1"} 10
x_requests_total{model="b",version="1"} 5
# TYPE x_latency_seconds histogram
x_latency_seconds_bucket{model="a",le="0.1"} 8
x_latency_seconds_sum{model="a"} 0.5
x_latency_seconds_count{model="a"} 10
# TYPE x_pending gauge
x_pending{model="a"} 3
process_cpu_seconds_total 1.5
"""
AFTER = BEFORE.replace("} 10\n", "} 30\n").replace("} 0.5", "} 2.5")
AFTER = AFTER.replace('x_pending{model="a"} 3', 'x_pending{model="a"} 7')
AFTER = AFTER.replace("process_cpu_seconds_total 1.5", "process_cpu_seconds_total 2.0")


def test_parse() -> None:
    types, samples = parse_prometheus(BEFORE)
    assert types["x_requests_total"] == "counter" and types["x_latency_seconds"] == "histogram"
    assert samples[("x_requests_total", '{model="b",version="1"}')] == 5


def test_deltas_and_model_filter() -> None:
    probe = PrometheusProbe("http://x/metrics", model="a")
    out = probe.delta(parse_prometheus(BEFORE), parse_prometheus(AFTER))
    assert out["counters"] == {
        'x_requests_total{model="a",version="1"}': 20,
        "process_cpu_seconds_total": 0.5,
    }
    h = out["histograms"]['x_latency_seconds{model="a"}']
    assert h["count"] == 20 and h["sum"] == 2.0 and h["mean"] == 0.1
    assert out["gauges"]['x_pending{model="a"}'] == 7
    assert probe.delta(None, parse_prometheus(AFTER))["error"] == "could not scrape"


def test_breakdown_per_request_and_how_busy_each_step_was() -> None:
    """Per-request means from count/ns deltas; `busy` from each execution's compute
    (batch_stats) over the window, so a saturated stage reads ~1.0 and an idle one less."""
    from conveyor.bench.server_stats import FIELDS, StatsProbe

    def totals(n: int, busy_ms: int) -> dict[str, object]:
        t: dict[str, object] = {f: [n, n * 2_000_000] for f in FIELDS}
        t["busy_ns"] = busy_ms * 1_000_000
        return t

    at0, at1 = {"at_ns": 0}, {"at_ns": 1_000_000_000}  # as the probe stamps each snapshot
    before = {
        **totals(0, 0),
        **at0,
        "steps": {"p:decode": totals(0, 0) | at0, "m": totals(0, 0) | at0},
    }
    after = {
        **totals(10, 0),
        **at1,
        "steps": {"p:decode": totals(10, 990) | at1, "m": totals(10, 400) | at1},
    }
    out = StatsProbe.breakdown(before, after, client_mean_ms=2.5)
    assert out["request_us"] == 2000.0 and out["transmission_us"] == 500.0
    assert out["steps"]["p:decode"]["busy"] == 0.99 and out["steps"]["m"]["busy"] == 0.4
    assert out["steps"]["m"]["compute_infer_us"] == 2000.0
