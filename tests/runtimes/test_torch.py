"""PyTorch backend: TorchScript needs its tensors in the config and maps them by
Triton's conventions; an ExportedProgram completes the config itself; threads are set in
the instance's thread; a broken file or a missing extra is a clear per-model error."""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from conveyor.demo import frameworks
from conveyor.repository.config import ConfigError, ModelConfig, parse_config
from conveyor.runtimes.torch import TorchBackend

NET = frameworks.small_cnn()


def _config(**raw: object) -> ModelConfig:
    return parse_config({"backend": "pytorch", "max_batch_size": 8, **raw}, "cnn")


TENSORS = {
    "input": [{"name": "INPUT__0", "data_type": "TYPE_FP32", "dims": [3, 32, 32]}],
    "output": [{"name": "OUTPUT__0", "data_type": "TYPE_FP32", "dims": [10]}],
}


def _version(tmp_path: Path, models: Path, filename: str) -> Path:
    version = tmp_path / "1"
    version.mkdir()
    shutil.copy(models / filename, version / filename)
    return version


def test_torchscript_runs_with_triton_names(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models, "model.pt")
    runtime = TorchBackend().load(_config(**TENSORS), version, 0)
    x = NET.sample(3)
    out = runtime.infer({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    np.testing.assert_allclose(out, frameworks.reference(NET, x), atol=1e-4)
    runtime.close()


def test_torchscript_without_tensors_in_the_config_says_what_to_declare(
    framework_models: Path, tmp_path: Path
) -> None:
    version = _version(tmp_path, framework_models, "model.pt")
    with pytest.raises(ConfigError, match="must declare every input and output"):
        TorchBackend().load(_config(), version, 0)
    wrong = {**TENSORS, "input": [*TENSORS["input"], {**TENSORS["input"][0], "name": "B__1"}]}
    with pytest.raises(ConfigError, match="forward takes 1 inputs"):
        TorchBackend().load(_config(**wrong), version, 0)


def test_exported_program_declares_its_tensors(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models, "model.pt2")
    config = _config(default_model_filename="model.pt2")
    runtime = TorchBackend().load(config, version, 0)
    assert [(t.name, t.datatype, t.shape) for t in runtime.inputs] == [
        ("x", "FP32", (-1, 3, 32, 32))
    ]
    assert [(t.name, t.datatype, t.shape) for t in runtime.outputs] == [
        ("OUTPUT__0", "FP32", (-1, 10))
    ]
    # the config may rename them (Triton's NAME__<index>)
    renamed_config = _config(default_model_filename="model.pt2", **TENSORS)
    renamed = TorchBackend().load(renamed_config, version, 0)
    x = NET.sample(2)
    out = renamed.infer({"INPUT__0": x}, ["OUTPUT__0"])["OUTPUT__0"]
    np.testing.assert_allclose(out, frameworks.reference(NET, x), atol=1e-4)


def test_read_only_and_strided_inputs_are_accepted(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models, "model.pt2")
    runtime = TorchBackend().load(_config(default_model_filename="model.pt2"), version, 0)
    x = np.ascontiguousarray(NET.sample(2))
    x.flags.writeable = False  # as a tensor decoded straight from a request body is
    out = runtime.infer({"x": x}, ["OUTPUT__0"])["OUTPUT__0"]
    np.testing.assert_allclose(out, frameworks.reference(NET, x), atol=1e-4)


def test_intra_op_threads_are_set_in_the_instance_thread(
    framework_models: Path, tmp_path: Path
) -> None:
    import torch

    version = _version(tmp_path, framework_models, "model.pt2")
    threads = {"INTRA_OP_THREAD_COUNT": {"string_value": "1"}}
    config = _config(default_model_filename="model.pt2", parameters=threads)
    assert TorchBackend().threads(config) == 1
    runtime = TorchBackend().load(config, version, 0)
    seen: list[int] = []

    def instance_thread() -> None:
        runtime.infer({"x": NET.sample(1)}, ["OUTPUT__0"])
        seen.append(torch.get_num_threads())

    thread = threading.Thread(target=instance_thread)
    thread.start()
    thread.join()
    assert seen == [1]


def test_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.pt").write_bytes(b"not a zip archive")
    with pytest.raises(ConfigError, match=r"model\.pt is not a TorchScript model"):
        TorchBackend().load(_config(**TENSORS), version, 0)
    (version / "model.pt2").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ConfigError, match=r"model\.pt2 is not a torch\.export program"):
        TorchBackend().load(_config(default_model_filename="model.pt2"), version, 0)


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.pt").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'conveyor\[torch\]'"):
        TorchBackend().load(_config(**TENSORS), version, 0)
