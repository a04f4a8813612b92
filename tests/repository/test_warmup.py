"""Warm-up runs on every instance before the version is ready; a failing warm-up fails
the load with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conveyor.repository.manager import READY, ModelRepository
from tests.fakes import FakeBackend, write_model


def test_warmup_runs_on_every_instance_before_ready(tmp_path: Path) -> None:
    config = """
backend: fake
max_batch_size: 8
instance_group: [{count: 2}]
model_warmup:
  - {name: zeros, batch_size: 4, count: 3}
  - name: from_file
    batch_size: 2
    inputs: {x: {data_type: TYPE_FP32, dims: [4], input_data_file: x.raw}}
"""
    model = write_model(tmp_path, "m", config)
    (model / "warmup").mkdir()
    (model / "warmup" / "x.raw").write_bytes(np.ones((2, 4), np.float32).tobytes())
    backend = FakeBackend()
    repo = ModelRepository(tmp_path, {"fake": backend})
    repo.load()
    assert repo.models["m"].state == READY
    # 2 instances x (3 zero batches of 4 + 1 file batch of 2)
    assert sorted(backend.batches) == sorted([4, 4, 4, 2] * 2)
    assert repo.get("m").warmup_seconds > 0
    repo.close()


def test_failing_warmup_fails_the_load(tmp_path: Path) -> None:
    config = """
backend: fake
max_batch_size: 8
model_warmup: [{name: bad, batch_size: 1, inputs: {x: {random_data: true, dims: [4]}}}]
"""
    write_model(tmp_path, "m", config)
    backend = FakeBackend()
    backend.poison = 0.0  # the fake fails any batch holding a 0.0: random data has none
    repo = ModelRepository(tmp_path, {"fake": backend})
    repo.load()
    assert repo.models["m"].state == READY
    write_model(tmp_path, "z", config.replace("random_data: true", "zero_data: true"))
    repo.load(["z"])
    assert "warm-up 'bad' failed: poisoned input" in repo.models["z"].reason
    assert "unknown inputs" in _reason(tmp_path, "inputs: {nope: {}}")
    repo.close()


def _reason(tmp_path: Path, inputs: str) -> str:
    write_model(
        tmp_path, "q", f"backend: fake\nmax_batch_size: 8\nmodel_warmup: [{{name: w, {inputs}}}]"
    )
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load(["q"])
    return repo.models["q"].reason
