"""/metrics on the metrics port, parsed with prometheus_client's own parser: the counters
and histograms agree with what the test sent."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

GOOD = orjson.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [2, 16], "datatype": "INT32", "data": list(range(32))},
            {"name": "INPUT1", "shape": [2, 16], "datatype": "INT32", "data": [1] * 32},
        ]
    }
)
BAD = orjson.dumps(
    {
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "FP32", "data": [1.0] * 16},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [1] * 16},
        ]
    }
)


@pytest.fixture(scope="module")
def fresh(demo_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        demo_repo,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=tmp_path_factory.mktemp("logs"),
    ).start()
    yield proc
    assert proc.stop() == 0


def scrape(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def test_counters_and_histograms_match_what_was_sent(fresh: ServerProcess) -> None:
    start = time.monotonic()
    for _ in range(7):
        assert fresh.request("POST", "/v2/models/simple/infer", GOOD)[0] == 200
    for _ in range(3):
        assert fresh.request("POST", "/v2/models/simple/infer", BAD)[0] == 400
    sent_s = time.monotonic() - start  # the 10 requests, one after the other, as sent
    m = scrape(fresh)

    def get(name: str, **labels: str) -> float:
        return m[(name, tuple(sorted(labels.items())))]

    v = {"model": "simple", "version": "1"}
    assert get("conveyor_request_success_total", **v) == 7
    assert get("conveyor_request_failure_total", **v, reason="bad_request") == 3
    assert get("conveyor_request_failure_total", **v, reason="timeout") == 0
    assert get("conveyor_inference_count_total", **v) == 14  # 7 requests x 2 rows
    assert get("conveyor_execution_count_total", **v) == 7
    assert get("conveyor_request_duration_seconds_count", **v) == 10
    assert get("conveyor_request_duration_seconds_bucket", **v, le="+Inf") == 10
    # in seconds: each request's time in the server lies within the client's wait for it
    assert 0 < get("conveyor_request_duration_seconds_sum", **v) <= sent_s
    assert get("conveyor_compute_infer_duration_seconds_count", **v) == 7
    assert get("conveyor_queue_duration_seconds_count", **v) == 7
    assert get("conveyor_batch_size_bucket", **v, le="2") == 7
    assert get("conveyor_batch_size_sum", **v) == 14
    assert get("conveyor_pending_requests", **v, priority="1") == 0
    assert get("conveyor_instances", **v) == 1
    assert get("conveyor_model_load_seconds", **v) > 0
    assert get("conveyor_server_ready") == 1
    assert get("process_resident_memory_bytes") > 10_000_000
    assert get("process_cpu_seconds_total") > 0
    assert not any(name.startswith("conveyor_gpu") for name, _ in m)  # no GPU here
    # the statistics API is fed by the same counters
    stats = orjson.loads(fresh.request("GET", "/v2/models/simple/stats")[2])["model_stats"][0]
    assert stats["inference_stats"]["success"]["count"] == 7
    assert stats["inference_stats"]["fail"]["count"] == 3


def test_metrics_can_be_turned_off(demo_repo: Path, tmp_path: Path) -> None:
    proc = ServerProcess(
        demo_repo,
        "--allow-metrics",
        "false",
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=tmp_path,
    ).start()
    try:
        assert proc.metrics_port == 0
        assert proc.request("POST", "/v2/models/simple/infer", GOOD)[0] == 200
    finally:
        assert proc.stop() == 0
