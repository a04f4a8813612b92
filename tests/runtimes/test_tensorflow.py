"""TensorFlow backend: a Keras 3 export serves as it is; signatures by name; the config
is completed from the signature and checked against it; a broken SavedModel or a
missing extra is a clear per-model error; nothing in a SavedModel may link outside."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from conveyor.demo import frameworks
from conveyor.repository.autocomplete import complete
from conveyor.repository.config import ConfigError, ModelConfig, parse_config
from conveyor.runtimes.tensorflow import TensorFlowBackend

NET = frameworks.small_cnn()


def _config(**raw: object) -> ModelConfig:
    return parse_config({"platform": "tensorflow_savedmodel", **raw}, "m")


def _version(tmp_path: Path, framework_models: Path) -> Path:
    version = tmp_path / "1"
    shutil.copytree(framework_models / "model.savedmodel", version / "model.savedmodel")
    return version


def build_two_signatures(path: Path) -> None:
    """A SavedModel with `serving_default` (y = 2x) and `plus_one` (z = x + 1)."""
    import tensorflow as tf

    class Module(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def double(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": x * 2}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def plus_one(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"z": x + 1}

    module = Module()
    signatures = {"serving_default": module.double, "plus_one": module.plus_one}
    tf.saved_model.save(module, str(path), signatures=signatures)


def test_keras_export_serves_and_completes_the_config(
    framework_models: Path, tmp_path: Path
) -> None:
    version = _version(tmp_path, framework_models)
    config = _config()
    runtime = TensorFlowBackend().load(config, version, 0)
    assert [(t.name, t.datatype, t.shape) for t in runtime.inputs] == [
        ("x", "FP32", (-1, 3, 32, 32))
    ]
    assert [t.name for t in runtime.outputs] == ["output_0"]
    complete(config, runtime.inputs, runtime.outputs)
    assert config.max_batch_size == 8 and config.inputs[0].dims == [3, 32, 32]
    x = NET.sample(3)
    out = runtime.infer({"x": x}, ["output_0"])["output_0"]
    np.testing.assert_allclose(out, frameworks.reference(NET, x), atol=1e-4)


def test_a_config_that_contradicts_the_signature_is_refused(
    framework_models: Path, tmp_path: Path
) -> None:
    version = _version(tmp_path, framework_models)
    config = _config(input=[{"name": "x", "data_type": "TYPE_INT32", "dims": [3, 32, 32]}])
    runtime = TensorFlowBackend().load(config, version, 0)
    with pytest.raises(ConfigError, match="config says INT32, the model has FP32"):
        complete(config, runtime.inputs, runtime.outputs)


def test_signatures_by_name(tmp_path: Path) -> None:
    build_two_signatures(tmp_path / "1" / "model.savedmodel")
    default = TensorFlowBackend().load(_config(), tmp_path / "1", 0)
    assert default.signature == "serving_default"  # type: ignore[attr-defined]
    assert sorted(default.signatures) == ["plus_one", "serving_default"]  # type: ignore[attr-defined]
    x = np.ones((2, 4), np.float32)
    np.testing.assert_array_equal(default.infer({"x": x}, ["y"])["y"], x * 2)
    other = TensorFlowBackend().load(
        _config(parameters={"TF_SIGNATURE_DEF": {"string_value": "plus_one"}}), tmp_path / "1", 0
    )
    np.testing.assert_array_equal(other.infer({"x": x}, ["z"])["z"], x + 1)
    with pytest.raises(ConfigError, match=r"no signature 'nope' \(it has \['plus_one'"):
        TensorFlowBackend().load(
            _config(parameters={"TF_SIGNATURE_DEF": {"string_value": "nope"}}), tmp_path / "1", 0
        )


def test_a_broken_savedmodel_is_a_clear_error(tmp_path: Path) -> None:
    saved = tmp_path / "1" / "model.savedmodel"
    saved.mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x00garbage")
    with pytest.raises(ConfigError, match=r"TensorFlow cannot load model\.savedmodel"):
        TensorFlowBackend().load(_config(), tmp_path / "1", 0)
    (saved / "saved_model.pb").unlink()
    with pytest.raises(FileNotFoundError, match="not a SavedModel directory"):
        TensorFlowBackend().load(_config(), tmp_path / "1", 0)


def test_a_link_out_of_the_savedmodel_is_refused(framework_models: Path, tmp_path: Path) -> None:
    version = _version(tmp_path, framework_models)
    outside = tmp_path / "secret"
    outside.write_text("not yours")
    os.symlink(outside, version / "model.savedmodel" / "assets" / "leak")
    with pytest.raises(ConfigError, match="leaves the model repository"):
        TensorFlowBackend().load(_config(), version, 0)


def test_a_missing_extra_names_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    saved = tmp_path / "1" / "model.savedmodel"
    saved.mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ConfigError, match=r"pip install 'conveyor\[tensorflow\]'"):
        TensorFlowBackend().load(_config(), tmp_path / "1", 0)
