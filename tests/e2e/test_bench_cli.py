"""`conveyor bench` against a running `conveyor serve`, as a user would run it. What a
run achieves in its seconds depends on the machine; the tests check what it reports
against itself and against what the server counted, not how much it got done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conveyor.bench.results import merge_histograms
from tests.e2e.utils import ServerProcess, free_port

pytestmark = pytest.mark.e2e


def successes(server: ServerProcess, model: str) -> int:
    """Requests the server answered for `model` (its statistics API)."""
    status, _, body = server.request("GET", f"/v2/models/{model}/stats")
    assert status == 200
    return sum(
        int(m["inference_stats"]["success"]["count"]) for m in json.loads(body)["model_stats"]
    )


def check_counts(result: dict[str, object]) -> None:
    """The run completed requests, and its figures agree with each other."""
    completed = result["completed"]
    assert isinstance(completed, int) and completed > 0
    latency = merge_histograms([result["histograms"]["latency_us"]])  # type: ignore[index]
    assert latency.get_total_count() == completed
    assert result["throughput_rps"] == pytest.approx(completed / result["duration_s"])  # type: ignore[operator]


@pytest.mark.parametrize(
    "mode",
    [
        ["--concurrency", "2"],
        ["--rate", "100", "--poisson"],
        ["--concurrency", "2", "--input-data", "zeros"],
    ],
)
def test_bench_v2_model(server: ServerProcess, tmp_path: Path, mode: list[str]) -> None:
    out = tmp_path / "result.json"
    before = successes(server, "simple")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "bench",
            f"http://{server.url}",
            "--model",
            "simple",
            "--batch-size",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--output",
            str(out),
            *mode,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "latency ms: p50" in proc.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == "conveyor.bench/1" and result["errors"] == {}
    check_counts(result)
    assert result["latency_ms"]["p99"] > 0 and result["target"] == "v2:simple"
    # the server answered every request the run counted (and its warm-up's)
    assert successes(server, "simple") - before >= result["completed"]


@pytest.mark.parametrize("protocol", ["v2-grpc", "tfserving", "v2-json"])
def test_bench_other_protocols(server: ServerProcess, tmp_path: Path, protocol: str) -> None:
    url = server.grpc_url if protocol == "v2-grpc" else f"http://{server.url}"
    csv = tmp_path / "rows.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "bench",
            url,
            "--protocol",
            protocol,
            "--metadata-url",
            f"http://{server.url}",
            "--model",
            "mlp",
            "--requests",
            "50",
            "--concurrency",
            "2",
            "--warmup",
            "0",
            "--csv",
            str(csv),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "50 ok" in proc.stdout
    header, row = csv.read_text().splitlines()
    assert header.startswith("Concurrency,Request Rate,Inferences/Second,Network+Server")
    cells = dict(zip(header.split(","), row.split(","), strict=True))
    assert cells["Concurrency"] == "2" and cells["Errors"] == "0"
    assert int(cells["p99 latency"]) >= int(cells["p50 latency"]) > 0
    # the server-side columns come from the statistics API, which TF Serving lacks
    assert (cells["Server Compute Infer"] != "") == (protocol != "tfserving")


def test_bench_server_breakdown_windows_and_compare(server: ServerProcess, tmp_path: Path) -> None:
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.json"
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "conveyor.cli",
                "bench",
                f"http://{server.url}",
                "--model",
                "linear",
                "--concurrency",
                "2",
                "--warmup",
                "0.2",
                "--measurement-interval",
                "300",
                "--stability-percentage",
                "50",
                "--max-windows",
                "5",
                "--metrics-url",
                f"http://127.0.0.1:{server.metrics_port}/metrics",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "server us: request" in proc.stdout and "counters moved" in proc.stdout
        outs.append(out)
    result = json.loads(outs[0].read_text())
    assert result["server"]["compute_infer_us"] > 0 and result["server"]["requests"] > 0
    assert "transmission_us" in result["server"] and result["windows"]
    prom = result["prometheus"]  # the scrape saw the same requests as the statistics API
    ok = [v for k, v in prom["counters"].items() if k.startswith("conveyor_request_success")]
    assert ok == [result["server"]["requests"]]
    infer = next(k for k in prom["histograms"] if k.startswith("conveyor_compute_infer"))
    assert prom["histograms"][infer]["count"] == result["server"]["requests"]
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "bench", "--compare", *map(str, outs)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0 and "throughput req/s" in proc.stdout


def test_several_generator_processes_merge(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "merged.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "bench",
            f"http://{server.url}",
            "--model",
            "simple",
            "--concurrency",
            "4",
            "--workers",
            "2",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["workers"] == 2 and result["pattern"]["concurrency"] == 4
    assert result["errors"] == {}
    check_counts(result)  # the workers' histograms, merged, hold every completed request
    assert result["latency_ms"]["p50"] > 0


BENCH = [sys.executable, "-m", "conveyor.cli", "bench"]


def test_cold_start_launches_times_and_stops_the_server(demo_repo: Path, tmp_path: Path) -> None:
    port = free_port()
    serve = (
        f"{sys.executable} -m conveyor.cli serve {demo_repo} --host 127.0.0.1 "
        f"--http-port {port} --grpc-port 0 --metrics-port 0 "
        "--model-control-mode explicit --load-model simple"
    )
    out = tmp_path / "cold.json"
    url = f"http://127.0.0.1:{port}"
    options = ["--cold-requests", "20", "--duration", "1", "--warmup", "0.2", "--output", str(out)]
    proc = subprocess.run(
        [*BENCH, url, "--model", "simple", "--launch", serve, *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "launched server stopped (exit code 0)" in proc.stdout
    result = json.loads(out.read_text())
    cold = result["cold_start"]
    assert 0 < cold["time_to_ready_s"] < 120
    assert cold["first_inference_ms"] > 0 and cold["first_n"]["requests"] == 20
    assert cold["steady"]["p50"] > 0 and cold["first_n_p50_over_steady_p50"] > 0
    pid = next(iter(result["hardware"]["processes"]))  # the launched server is monitored
    assert result["hardware"]["processes"][pid]["rss_mb_max"] > 10
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_cold_start_reports_a_server_that_dies(tmp_path: Path) -> None:
    port = free_port()
    launch = f"{sys.executable} -c \"print('no model here'); raise SystemExit(3)\""
    proc = subprocess.run(
        [*BENCH, f"http://127.0.0.1:{port}", "--model", "simple", "--launch", launch],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "exited with code 3 before it was ready" in proc.stderr
    assert "no model here" in proc.stderr


def test_trace_with_sizes_sends_each_request_its_rows(
    server: ServerProcess, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.txt"
    trace.write_text("".join(f"{i * 0.01:.2f} {1 + i % 3}\n" for i in range(30)))  # 1,2,3,...
    out = tmp_path / "trace.json"
    status, _, before = server.request("GET", "/v2/models/simple/stats")
    assert status == 200
    # sent within 0.3 s; the window leaves any machine ample time to answer them all
    options = ["--trace", str(trace), "--duration", "5", "--warmup", "0", "--output", str(out)]
    proc = subprocess.run(
        [*BENCH, f"http://{server.url}", "--model", "simple", *options],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["completed"] == 30 and result["items"] == 60  # 10 x (1 + 2 + 3)
    assert result["items_per_second"] == pytest.approx(60 / result["duration_s"])
    _, _, after = server.request("GET", "/v2/models/simple/stats")

    def inferences(doc: bytes) -> int:
        return sum(int(m["inference_count"]) for m in json.loads(doc)["model_stats"])

    assert inferences(after) - inferences(before) == 60  # the server saw those rows


def test_selftest_prints_the_generator_ceiling(tmp_path: Path) -> None:
    out = tmp_path / "self.json"
    proc = subprocess.run(
        [*BENCH, "--selftest", "--duration", "0.5", "--warmup", "0.1", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "generator ceiling on this machine, 32 connections" in proc.stdout
    steps = json.loads(out.read_text())["steps"]
    assert [(s["target"], s["workers"]) for s in steps] == [
        ("null", 1),
        ("v2:null", 1),
        ("v2:null", 2),
    ]
    assert all(s["completed"] > 0 and s["errors"] == {} for s in steps)


def test_several_generator_processes_with_windows(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "windows.json"
    options = ["--concurrency", "4", "--workers", "2", "--measurement-interval", "400"]
    options += ["--stability-percentage", "40", "--max-windows", "6", "--warmup", "0.2"]
    proc = subprocess.run(
        [*BENCH, f"http://{server.url}", "--model", "simple", *options, "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    assert result["workers"] == 2 and result["pattern"]["concurrency"] == 4
    assert 3 <= len(result["windows"]) <= 6 and result["stable"] in (True, False)
    assert result["duration_s"] == pytest.approx(1.2)  # the last 3 windows, merged
    window_total = sum(w["throughput_rps"] for w in result["windows"][-3:]) * 0.4
    assert result["completed"] == pytest.approx(window_total, abs=1)  # every worker counted
