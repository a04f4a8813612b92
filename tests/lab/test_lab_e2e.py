"""`conveyor lab` end to end, as a user runs it: the tiny model on Conveyor, the
hand-made FastAPI server (its own virtualenv, installed from the registry on first use)
and ONNX Runtime in-process, plus two servers given by address — one that answers with
the wrong weights, one that is not there. Short rounds; the JSON is checked, not speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.e2e.utils import ServerProcess

pytestmark = pytest.mark.e2e


def _save_onnx(path: Path, node: onnx.NodeProto, width: int, *inits: onnx.TensorProto) -> None:
    """One node from `x` [batch, width] to `y` [batch, width], FP32."""
    graph = helper.make_graph(
        [node],
        "lab-test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", width])],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))


def _wrong_tiny(repo: Path) -> None:
    """A model called `tiny` with other weights: it answers, but not what tiny computes."""
    w = numpy_helper.from_array(np.full((256, 256), 0.01, np.float32), "W")
    _save_onnx(
        repo / "tiny" / "1" / "model.onnx", helper.make_node("MatMul", ["x", "W"], ["y"]), 256, w
    )


def _lab(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor.cli", "lab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # a warm cache may be given (CONVEYOR_LAB_CACHE) to rerun this test quickly
    given = os.environ.get("CONVEYOR_LAB_CACHE")
    return Path(given) if given else tmp_path_factory.mktemp("lab-cache")


def test_small_lab(tmp_path: Path, cache: Path) -> None:
    repo = tmp_path / "wrong-repo"
    _wrong_tiny(repo)
    wrong = ServerProcess(repo, log_dir=tmp_path).start()
    try:
        done = _lab(
            "tiny",
            "--peers",
            "conveyor-ort,fastapi,inprocess-ort",
            "--peer",
            f"wrong=v2-binary+http://{wrong.url}",
            "--peer",
            "gone=v2-json+http://127.0.0.1:9",
            "--images",
            "640",
            "--batches",
            "10,32",
            "--rpc-clients",
            "1,4",
            "--seconds",
            "1",
            "--warmup",
            "0.2",
            "--ramp-users",
            "2",
            "--ramp-seconds",
            "2",
            "--rounds",
            "2",
            "--threads",
            "1",
            "--cache",
            str(cache),
            "--output",
            str(tmp_path / "lab.json"),
            "--html",
            str(tmp_path / "lab.html"),
            cwd=tmp_path,
        )
    finally:
        wrong.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads((tmp_path / "lab.json").read_text())
    assert doc["kind"] == "lab" and doc["model"]["name"] == "tiny"
    peers = {p["name"]: p for p in doc["peers"]}
    for name in ("conveyor-ort", "fastapi", "inprocess-ort"):
        assert peers[name]["status"] == "ok", peers[name]
        assert peers[name]["check"]["real"]["ok"] and peers[name]["check"]["empty"]["ok"]
        assert peers[name]["check"]["real"]["max_abs_diff"] <= 1e-4
        assert peers[name]["startup_s"] > 0
    assert peers["fastapi"]["version"].startswith("fastapi 0.165.0")
    assert peers["wrong"]["status"] == "wrong"
    assert "answers the real model wrongly: max |output - reference|" in peers["wrong"]["reason"]
    assert peers["gone"]["status"] == "failed" and "inference failed" in peers["gone"]["reason"]

    # every correct peer measured in every cell, in both rounds, without errors
    served = ("conveyor-ort", "fastapi")
    rows = {(r["peer"], r["key"]): r for r in doc["results"]}
    keys = {r["key"] for r in doc["results"]}
    assert keys == {
        "images/real/b10/c1",
        "images/real/b32/c1",
        "rpc/empty/b1/c1",
        "rpc/empty/b1/c4",
        "rpc/real/b1/c1",
        "rpc/real/b1/c4",
        "ramp/real/b1/c2",
    }
    for key in keys:
        for peer in (*served, *(() if key.startswith("ramp") else ("inprocess-ort",))):
            row = rows[(peer, key)]
            assert len(row["rounds"]) == 2 and row["errors"] == 0, row
            assert row["items_per_s"] > 0 and row["vs_best_served"] is not None
            assert row["vs_conveyor"] is not None
    assert not any(p == "inprocess-ort" and k.startswith("ramp") for p, k in rows)
    assert not any(p in ("wrong", "gone") for p, _ in rows)
    images = [r for r in doc["tables"]["images"] if r["peer"] == "conveyor-ort"]
    assert [r["images"] for r in images] == [640, 640]  # 64 x 10, 20 x 32
    for batch in (10, 32):
        ratios = [
            r["vs_best_served"]
            for r in doc["tables"]["images"]
            if r["batch"] == batch and r["peer"] in served
        ]
        assert max(ratios) == 1.0
    assert all(r["transport_share"] is not None for r in doc["tables"]["rpc"])
    assert len(doc["tables"]["ramp"]) == 2 and doc["tables"]["ramp"][0]["timeline"]

    # nothing left running: every server the lab started (2 rounds each) is gone
    for name in served:
        assert len(peers[name]["pids"]) == 2 and peers[name]["left_behind"] == []
        for pid in peers[name]["pids"]:
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"

    page = (tmp_path / "lab.html").read_text()
    for anchor in ("lab-peers", "lab-images-table", "lab-rpc-table", "lab-ramp-table", "<svg"):
        assert anchor in page
    assert "answers the real model wrongly" in page
    assert "images (seed 000)" in done.stdout


def test_a_peer_that_cannot_read_the_model_is_skipped(tmp_path: Path, cache: Path) -> None:
    _save_onnx(tmp_path / "relu.onnx", helper.make_node("Relu", ["x"], ["y"]), 8)
    done = _lab(
        str(tmp_path / "relu.onnx"),
        "--peers",
        "conveyor-torch,inprocess-ort",
        "--workloads",
        "images",
        "--images",
        "64",
        "--batches",
        "8",
        "--rounds",
        "1",
        "--cache",
        str(cache),
        "--output",
        str(tmp_path / "lab.json"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    peers = {p["name"]: p for p in json.loads((tmp_path / "lab.json").read_text())["peers"]}
    assert peers["conveyor-torch"]["status"] == "skipped"
    assert (
        "needs the model as torchscript: the model was given as ONNX"
        in (peers["conveyor-torch"]["reason"])
    )
    assert peers["inprocess-ort"]["status"] == "ok"


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    done = _lab("tiny", "--peers", "tensorrt", "--cache", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "unknown peer 'tensorrt'" in done.stderr
    done = _lab("tiny", "--peer", "x=grpc+http://h:1", "--cache", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "protocol 'grpc' is not one of" in done.stderr
    done = _lab("nothing.onnx", "--cache", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "unknown model 'nothing.onnx'" in done.stderr


def test_stopping_the_lab_stops_its_peers(tmp_path: Path, cache: Path) -> None:
    """SIGTERM to `conveyor lab` mid-measurement: the server it started goes too."""
    import signal
    import time

    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor.cli",
            "lab",
            "tiny",
            "--peers",
            "conveyor-ort",
            "--workloads",
            "rpc",
            "--seconds",
            "120",
            "--rounds",
            "1",
            "--cache",
            str(cache),
            "--output",
            str(tmp_path / "lab.json"),
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert lab.stderr is not None
        for line in lab.stderr:  # measuring once it names a cell
            if "conveyor-ort rpc/" in line:
                break
        servers = [p for p in psutil.Process(lab.pid).children(recursive=True)]
        assert any("serve" in " ".join(p.cmdline()) for p in servers)
        lab.send_signal(signal.SIGTERM)
        assert lab.wait(60) == 130
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
        if lab.stderr is not None:
            lab.stderr.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        p.is_running() and p.status() != "zombie" for p in servers
    ):
        time.sleep(0.1)
    assert not any(p.is_running() and p.status() != "zombie" for p in servers)
