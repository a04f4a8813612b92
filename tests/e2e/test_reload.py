"""Hot reload with nothing lost: a new version copied in under load (poll mode), reloads
through the API under load (explicit mode), a corrupt version, and memory that comes back
after repeated load/unload cycles."""

from __future__ import annotations

import http.client
import shutil
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e

BODY = orjson.dumps(
    {"inputs": [{"name": "features", "shape": [1, 64], "datatype": "FP32", "data": [0.25] * 64}]}
)


class Load:
    """Closed-loop requests on one keep-alive connection until stopped."""

    def __init__(self, server: ServerProcess, path: str = "/v2/models/mlp/infer") -> None:
        self.server, self.path = server, path
        self.outcomes: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        while not self._stop.is_set():
            conn.request("POST", self.path, BODY)
            resp = conn.getresponse()
            body = resp.read()
            version = orjson.loads(body).get("model_version", "") if resp.status == 200 else ""
            self.outcomes.append((resp.status, version))
        conn.close()

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def failures(self) -> list[tuple[int, str]]:
        return [o for o in self.outcomes if o[0] != 200]


def wait_for(cond: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise TimeoutError("condition not met in time")


def slow_copy(src: Path, dst: Path, seconds: float = 1.5, chunks: int = 30) -> None:
    """Write `dst` bit by bit: many writes per poll interval, as a real copy does."""
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with dst.open("wb") as f:
        step = len(data) // chunks + 1
        for i in range(0, len(data), step):
            f.write(data[i : i + step])
            f.flush()
            time.sleep(seconds / chunks)


@pytest.fixture
def poll_repo(demo_repo: Path, tmp_path: Path) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path / "repo"
    (root / "mlp" / "1").mkdir(parents=True)
    shutil.copy(demo_repo / "mlp" / "1" / "model.onnx", root / "mlp" / "1" / "model.onnx")
    proc = ServerProcess(
        root, "--model-control-mode", "poll", "--repository-poll-secs", "0.3", log_dir=tmp_path
    ).start()
    yield proc, root
    assert proc.stop() == 0


def test_new_version_copied_in_under_load(
    poll_repo: tuple[ServerProcess, Path], demo_repo: Path
) -> None:
    proc, root = poll_repo
    with Load(proc) as load:
        wait_for(lambda: len(load.outcomes) > 20)
        # copied in over 1.5 s, across several polls: must not be picked up half-written
        slow_copy(demo_repo / "mlp" / "1" / "model.onnx", root / "mlp" / "2" / "model.onnx")
        wait_for(lambda: load.outcomes and load.outcomes[-1][1] == "2")
        n = len(load.outcomes)
        wait_for(lambda: len(load.outcomes) > n + 20)
    assert load.failures() == []
    versions = [v for _, v in load.outcomes]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and set(versions[switch:]) == {"2"}
    assert "failed to load" not in proc.log()

    # a corrupt version: the old one keeps serving, the index says why
    (root / "mlp" / "3").mkdir()
    (root / "mlp" / "3" / "model.onnx").write_bytes(b"not a model")
    wait_for(lambda: "reload failed" in proc.log() or "failed to load" in proc.log())
    index = orjson.loads(proc.request("POST", "/v2/repository/index")[2])
    row = next(r for r in index if r["name"] == "mlp")
    assert row["state"] == "READY" and row["version"] == "2"
    assert "cannot load" in row["reason"]
    status, _, body = proc.request("POST", "/v2/models/mlp/infer", BODY)
    assert status == 200 and orjson.loads(body)["model_version"] == "2"

    # a model removed from the repository is unloaded
    shutil.rmtree(root / "mlp")
    wait_for(lambda: proc.request("POST", "/v2/models/mlp/infer", BODY)[0] != 200)


@pytest.fixture
def explicit(demo_repo: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        demo_repo,
        "--model-control-mode",
        "explicit",
        "--load-model",
        "mlp",
        "--load-model",
        "resnet",
        log_dir=tmp_path,
    ).start()
    yield proc
    assert proc.stop() == 0


def test_reload_through_the_api_under_load(explicit: ServerProcess) -> None:
    with Load(explicit) as load:
        for _ in range(5):
            n = len(load.outcomes)
            assert explicit.request("POST", "/v2/repository/models/mlp/load")[0] == 200
            wait_for(lambda n=n: len(load.outcomes) > n + 5)
    assert load.failures() == []
    assert len(load.outcomes) > 25


def rss(server: ServerProcess) -> float:
    url = f"http://127.0.0.1:{server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("process_resident_memory_bytes "):
                return float(line.split()[1])
    raise AssertionError("no process_resident_memory_bytes")


@pytest.mark.slow
def test_memory_comes_back_after_load_unload_cycles(explicit: ServerProcess) -> None:
    """20 unload/load cycles of the ResNet (2 instances, ~47 MB of weights each): memory
    must plateau, not grow by a model's worth per cycle."""
    seen = Counter()
    samples = []
    for cycle in range(20):
        assert explicit.request("POST", "/v2/repository/models/resnet/unload")[0] == 200
        assert explicit.request("POST", "/v2/repository/models/resnet/load")[0] == 200
        seen[explicit.request("GET", "/v2/models/resnet/ready")[0]] += 1
        if cycle in (4, 19):
            samples.append(rss(explicit))
    assert seen == {200: 20}
    growth = samples[1] - samples[0]
    assert growth < 100e6, f"RSS grew {growth / 1e6:.0f} MB over 15 load/unload cycles"
