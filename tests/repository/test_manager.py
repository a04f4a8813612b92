"""Loading a repository: completion from the ONNX file, contradictions and broken files
reported per model while the others load, version policies."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.demo import models
from conveyor.errors import ModelLoadError, ModelNotFoundError, NotFoundError, UnavailableError
from conveyor.repository.manager import READY, UNAVAILABLE, ModelRepository
from conveyor.runtimes.onnx import OnnxBackend
from tests.fakes import FakeBackend, write_model


def onnx_repo(root: Path) -> ModelRepository:
    return ModelRepository(root, {"onnxruntime": OnnxBackend()})


def test_missing_config_is_completed_from_the_onnx_file(tmp_path: Path) -> None:
    models.build_mlp(tmp_path / "mlp" / "1" / "model.onnx")
    repo = onnx_repo(tmp_path)
    repo.load()
    c = repo.get("mlp").config
    assert c.max_batch_size == 8 and c.dynamic_batching is not None
    assert [(t.name, t.datatype, t.dims) for t in c.inputs] == [("features", "FP32", [64])]
    assert [(t.name, t.datatype, t.dims) for t in c.outputs] == [("probabilities", "FP32", [10])]
    repo.close()


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        (
            "max_batch_size: 4\ninput: [{name: x, data_type: TYPE_INT64, dims: [256]}]",
            "config says INT64, the model has FP32",
        ),
        (
            "max_batch_size: 4\ninput: [{name: x, data_type: TYPE_FP32, dims: [128]}]",
            "do not match the model's shape",
        ),
        ("max_batch_size: 0\ninput: [{name: x, data_type: TYPE_FP32, dims: [256]}]", "rank 1"),
        (
            "max_batch_size: 4\ninput: [{name: nope, data_type: TYPE_FP32, dims: [256]}]",
            "input 'nope' is not in the model",
        ),
        ("max_batch_size: 4\noutput: [{name: y, data_type: TYPE_FP32, dims: [256, 1]}]", "rank"),
        ("backend: tensorflow", "backend 'tensorflow' is not available"),
        ("max_batch_size: [", "not valid"),
        ("version_policy: {specific: {versions: [7]}}", "not on disk"),
    ],
)
def test_contradicting_config_fails_that_model_only(
    tmp_path: Path, config: str, reason: str
) -> None:
    models.build_linear(tmp_path / "bad" / "1" / "model.onnx")
    (tmp_path / "bad" / "config.yaml").write_text(config)
    models.build_mlp(tmp_path / "good" / "1" / "model.onnx")
    repo = onnx_repo(tmp_path)
    repo.load()
    assert repo.models["good"].state == READY
    bad = repo.models["bad"]
    assert bad.state == UNAVAILABLE
    assert reason in bad.reason
    with pytest.raises(UnavailableError, match="not ready"):
        repo.get("bad")
    repo.close()


def test_broken_model_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"this is not onnx")
    (tmp_path / "empty" / "1").mkdir(parents=True)
    models.build_simple(tmp_path / "simple" / "1" / "model.onnx")
    repo = onnx_repo(tmp_path)
    repo.load()
    assert repo.models["simple"].state == READY
    assert "cannot load" in repo.models["broken"].reason
    assert "model.onnx is missing" in repo.models["empty"].reason
    repo.close()


def test_fixed_batch_dim_model_cannot_batch(tmp_path: Path) -> None:
    models.build_resnet(tmp_path / "r" / "1" / "model.onnx", blocks=(1,), classes=4, image=32)
    repo = onnx_repo(tmp_path)
    repo.load()
    assert repo.get("r").config.max_batch_size == 8  # batch dim is symbolic: batchable
    repo.close()


@pytest.mark.parametrize(
    ("policy", "loaded"),
    [
        ("", [3]),
        ("version_policy: {latest: {num_versions: 2}}", [2, 3]),
        ("version_policy: {all: {}}", [1, 2, 3]),
        ("version_policy: {specific: {versions: [1, 3]}}", [1, 3]),
    ],
)
def test_version_policy(tmp_path: Path, policy: str, loaded: list[int]) -> None:
    write_model(tmp_path, "m", f"backend: fake\n{policy}", versions=(1, 2, 3))
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    assert sorted(repo.models["m"].versions) == loaded
    assert repo.get("m").version == loaded[-1]  # default: the highest
    assert repo.get("m", str(loaded[0])).version == loaded[0]
    with pytest.raises(NotFoundError, match="unknown version '9'"):
        repo.get("m", "9")
    with pytest.raises(ModelNotFoundError):
        repo.get("nope")
    repo.close()


def test_load_only_named_models(tmp_path: Path) -> None:
    write_model(tmp_path, "a", "backend: fake")
    write_model(tmp_path, "b", "backend: fake")
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load(["a", "ghost"])
    assert set(repo.models) == {"a", "ghost"}
    assert repo.models["ghost"].reason == "no such model in the repository"
    repo.close()


def test_labels_must_name_loaded_versions(tmp_path: Path) -> None:
    write_model(tmp_path, "m", "backend: fake\nversion_labels: {stable: 1}", versions=(1, 2))
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    assert "version label 'stable' names version 1, which is not loaded" in repo.models["m"].reason
    repo.close()


def test_traffic_split_routes_unversioned_requests(tmp_path: Path) -> None:
    config = "backend: fake\nversion_policy: {all: {}}\ntraffic_split: {1: 0, 2: 1}"
    write_model(tmp_path, "m", config, versions=(1, 2, 3))
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    assert {repo.get("m").version for _ in range(50)} == {2}
    assert repo.get("m", "3").version == 3
    repo.close()


def test_unknown_model_is_worded_as_triton_words_it(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path, {"fake": FakeBackend()})
    repo.load()
    with pytest.raises(ModelNotFoundError) as info:
        repo.get("ghost")
    assert str(info.value) == "Request for unknown model: 'ghost' is not found"
    assert info.value.status == 404


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    """A repository with one good model, beside a file it must never read."""
    (tmp_path / "secret").write_text("root:x:0:0:root:/root:/bin/bash\n")
    root = tmp_path / "repo"
    write_model(root, "good", "backend: fake")
    return root


def _load(root: Path) -> ModelRepository:
    repo = ModelRepository(root, {"fake": FakeBackend()})
    repo.load()
    assert repo.models["good"].state == READY
    return repo


def test_a_model_file_linking_out_is_refused_for_every_backend(repo_root: Path) -> None:
    path = write_model(repo_root, "m", "backend: fake\ndefault_model_filename: model.bin")
    (path / "1" / "model.bin").symlink_to(repo_root.parent / "secret")
    repo = _load(repo_root)
    assert repo.models["m"].state == UNAVAILABLE
    assert repo.models["m"].reason == (
        "version 1: default_model_filename 'model.bin' leaves the model's version directory: "
        "refused"
    )
    repo.close()


def test_a_config_naming_a_file_outside_is_refused(repo_root: Path) -> None:
    write_model(repo_root, "m", "backend: fake\ndefault_model_filename: ../../../secret")
    repo = _load(repo_root)
    assert "default_model_filename '../../../secret' leaves" in repo.models["m"].reason
    assert repo.models["m"].reason.endswith("refused")
    repo.close()


def test_directories_linking_out_of_the_repository_are_refused(repo_root: Path) -> None:
    outside = write_model(repo_root.parent, "elsewhere", "backend: fake")
    (repo_root / "linked_model").symlink_to(outside, target_is_directory=True)
    (repo_root / "linked_version").mkdir()
    (repo_root / "linked_version" / "config.yaml").write_text("backend: fake")
    (repo_root / "linked_version" / "1").symlink_to(outside / "1", target_is_directory=True)
    (repo_root / "linked_config" / "1").mkdir(parents=True)
    (repo_root / "linked_config" / "config.yaml").symlink_to(outside / "config.yaml")
    repo = _load(repo_root)
    for name in ("linked_model", "linked_version", "linked_config"):
        assert repo.models[name].state == UNAVAILABLE
        assert "leaves the model repository" in repo.models[name].reason
        assert repo.models[name].reason.endswith("refused")
    repo.close()


def test_a_link_inside_the_repository_is_followed(repo_root: Path) -> None:
    (repo_root / "alias").mkdir()
    (repo_root / "alias" / "config.yaml").write_text("backend: fake")
    (repo_root / "alias" / "1").symlink_to(repo_root / "good" / "1", target_is_directory=True)
    repo = _load(repo_root)
    assert repo.models["alias"].state == READY
    repo.close()


def test_a_warmup_file_outside_is_refused(repo_root: Path) -> None:
    config = """
backend: fake
max_batch_size: 4
input: [{name: x, data_type: TYPE_FP32, dims: [4]}]
output: [{name: y, data_type: TYPE_FP32, dims: [4]}]
model_warmup:
  - {name: w, batch_size: 1, inputs: {x: {data_type: TYPE_FP32, dims: [4],
     input_data_file: ../../../secret}}}
"""
    write_model(repo_root, "m", config)
    repo = _load(repo_root)
    assert repo.models["m"].reason == (
        "version 1: model_warmup input_data_file '../../../secret' leaves the model's version "
        "directory: refused"
    )
    repo.close()


@pytest.mark.parametrize("filename", ["../../../../etc/passwd", "/etc/passwd"])
def test_an_override_naming_a_file_outside_is_refused(repo_root: Path, filename: str) -> None:
    repo = _load(repo_root)
    override = {"backend": "fake", "default_model_filename": filename}
    with pytest.raises(ModelLoadError) as info:
        repo.reload("good", override)
    assert info.value.status == 400
    assert info.value.message.startswith("failed to load 'good': default_model_filename")
    assert info.value.message.endswith("refused")
    assert repo.get("good").version == 1  # what served still serves
    repo.close()
