"""OpenVINO backend: IR and ONNX read by OpenVINO; hint, streams and threads from the
config with Triton's names; fp32 unless asked; a static batch made dynamic; instances
share one compiled model; broken files and a missing extra are clear errors."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conveyor.demo import frameworks
from conveyor.repository.config import ConfigError, ModelConfig, parse_config
from conveyor.runtimes.openvino import OpenVinoBackend, compile_properties

NET = frameworks.small_cnn()


def _config(**raw: object) -> ModelConfig:
    return parse_config({"backend": "openvino", **raw}, "m")


def _params(**values: str) -> dict[str, dict[str, str]]:
    return {k: {"string_value": v} for k, v in values.items()}


def _version(tmp_path: Path, framework_models: Path, *names: str) -> Path:
    version = tmp_path / "1"
    version.mkdir()
    for name in names:
        shutil.copy(framework_models / name, version / name)
    return version


def test_properties_from_the_config() -> None:
    assert compile_properties(_config()) == {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
    }
    props = compile_properties(
        _config(parameters=_params(PERFORMANCE_HINT="throughput", NUM_STREAMS="2"))
    )
    assert props["PERFORMANCE_HINT"] == "THROUGHPUT" and props["NUM_STREAMS"] == "2"
    older = compile_properties(
        _config(parameters=_params(CPU_THREADS_NUM="1", ENFORCE_BF16="YES", CPU_BIND_THREAD="NO"))
    )
    assert older["INFERENCE_NUM_THREADS"] == "1" and older["INFERENCE_PRECISION_HINT"] == "bf16"
    assert older["ENABLE_CPU_PINNING"] == "NO"
    with pytest.raises(ConfigError, match="PERFORMANCE_HINT 'FAST' is not"):
        compile_properties(_config(parameters=_params(PERFORMANCE_HINT="fast")))


def test_ir_and_onnx_agree_with_the_reference(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models, "model.xml", "model.bin", "model.onnx")
    x = NET.sample(3)
    ir = OpenVinoBackend().load(_config(), version, 0)
    assert [(t.name, t.datatype, t.shape) for t in ir.inputs] == [("x", "FP32", (-1, 3, 32, 32))]
    onnx = OpenVinoBackend().load(_config(default_model_filename="model.onnx"), version, 0)
    for runtime in (ir, onnx):
        out = runtime.infer({"x": x}, ["logits"])["logits"]
        np.testing.assert_allclose(out, frameworks.reference(NET, x), atol=1e-4)


def test_streams_and_instances(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models, "model.xml", "model.bin")
    config = _config(
        instance_group=[{"count": 2}],
        parameters=_params(PERFORMANCE_HINT="THROUGHPUT", NUM_STREAMS="2"),
    )
    backend = OpenVinoBackend()
    first, second = backend.load(config, version, 0), backend.load(config, version, 1)
    compiled = first._compiled  # type: ignore[attr-defined]
    assert compiled is second._compiled  # type: ignore[attr-defined]
    assert int(compiled.get_property("NUM_STREAMS")) == 2
    assert str(compiled.get_property("PERFORMANCE_HINT")).endswith("THROUGHPUT")


def test_a_static_batch_is_made_dynamic(tmp_path: Path) -> None:
    import openvino as ov

    static = frameworks.small_cnn()
    frameworks.build_onnx(static, tmp_path / "src.onnx")
    model = ov.Core().read_model(str(tmp_path / "src.onnx"))
    model.reshape({"x": [1, 3, 32, 32]})
    (tmp_path / "1").mkdir()
    ov.save_model(model, str(tmp_path / "1" / "model.xml"))
    runtime = OpenVinoBackend().load(_config(max_batch_size=4), tmp_path / "1", 0)
    assert runtime.inputs[0].shape == (-1, 3, 32, 32)
    assert runtime.infer({"x": NET.sample(4)}, ["logits"])["logits"].shape == (4, 10)
    kept = OpenVinoBackend().load(
        _config(parameters=_params(SKIP_OV_DYNAMIC_BATCHSIZE="YES")), tmp_path / "1", 0
    )
    assert kept.inputs[0].shape == (1, 3, 32, 32)


def test_broken_files_are_clear_errors(framework_models: Path, tmp_path: Path) -> None:
    version = tmp_path / "1"
    version.mkdir()
    (version / "model.xml").write_text("<net><broken")
    (version / "model.bin").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"OpenVINO cannot read model\.xml"):
        OpenVinoBackend().load(_config(), version, 0)
    shutil.copy(framework_models / "model.xml", version / "model.xml")
    (version / "model.bin").unlink()
    with pytest.raises(ConfigError, match=r"model.bin \(the IR's weights\) is missing"):
        OpenVinoBackend().load(_config(), version, 0)


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.xml").write_text("")
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(ConfigError, match=r"pip install 'conveyor\[openvino\]'"):
        OpenVinoBackend().load(_config(), tmp_path / "1", 0)
