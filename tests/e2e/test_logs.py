"""JSON logs, the access log (no payloads), and the log level changed at run time."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

BODY = orjson.dumps(
    {
        "id": "req-42",
        "inputs": [
            {"name": "INPUT0", "shape": [1, 16], "datatype": "INT32", "data": [7] * 16},
            {"name": "INPUT1", "shape": [1, 16], "datatype": "INT32", "data": [3] * 16},
        ],
    }
)


def test_json_access_log_and_runtime_level(demo_repo: Path, tmp_path: Path) -> None:
    proc = ServerProcess(
        demo_repo,
        "--log-format",
        "json",
        "--access-log",
        "true",
        "--model-control-mode",
        "explicit",
        "--load-model",
        "simple",
        log_dir=tmp_path,
    ).start()
    try:
        assert proc.request("POST", "/v2/models/simple/infer", BODY)[0] == 200
        bad = BODY.replace(b'"INT32","data":[7', b'"FP32","data":[7')
        assert proc.request("POST", "/v2/models/simple/infer", bad)[0] == 400
        settings = orjson.loads(proc.request("GET", "/v2/logging")[2])
        assert settings == {"log_level": "info", "access_log": True}
        status, _, body = proc.request(
            "POST", "/v2/logging", orjson.dumps({"log_level": "warning"})
        )
        assert status == 200 and orjson.loads(body)["log_level"] == "warning"
        assert proc.request("POST", "/v2/models/simple/infer", BODY)[0] == 200  # not logged
        status, _, body = proc.request("POST", "/v2/logging", orjson.dumps({"log_level": "x"}))
        assert status == 400
    finally:
        assert proc.stop() == 0
    lines = [orjson.loads(line) for line in proc.log().splitlines() if line.startswith("{")]
    access = [r for r in lines if r["logger"] == "conveyor.access"]
    assert [(r["request_id"], r["status"]) for r in access] == [("req-42", 200), ("req-42", 400)]
    assert all(
        r["model"] == "simple" and r["version"] == "1" and r["latency_ms"] > 0 for r in access
    )
    assert "[7" not in proc.log() and "data" not in proc.log()  # no payloads
    assert any(r["message"] == "server ready" for r in lines)
