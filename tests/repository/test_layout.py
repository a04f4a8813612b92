"""The on-disk layout: a model's files stay inside its version directory, its directories
inside the repository, and the repository's model names come from one listing."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.repository.config import ConfigError
from conveyor.repository.layout import check_inside_repository, model_names, model_path

REFUSED = "leaves the model's version directory: refused"


@pytest.fixture
def version_dir(tmp_path: Path) -> Path:
    path = tmp_path / "repo" / "m" / "1"
    path.mkdir(parents=True)
    (path / "model.onnx").write_bytes(b"model")
    (tmp_path / "secret").write_text("not a model")
    return path


@pytest.mark.parametrize("filename", ["model.onnx", "sub/model.onnx", "sub/../model.onnx"])
def test_a_file_inside_is_its_path(version_dir: Path, filename: str) -> None:
    assert model_path(version_dir, filename) == version_dir / filename


@pytest.mark.parametrize(
    "filename", ["/etc/passwd", "../../../secret", "../2/model.onnx", "sub/../../model.onnx"]
)
def test_absolute_or_climbing_out_is_refused(version_dir: Path, filename: str) -> None:
    with pytest.raises(ConfigError) as info:
        model_path(version_dir, filename)
    assert str(info.value) == f"default_model_filename {filename!r} {REFUSED}"


def test_the_message_names_the_field(version_dir: Path) -> None:
    with pytest.raises(ConfigError, match=f"^model_warmup input_data_file '/x' {REFUSED}$"):
        model_path(version_dir, "/x", "model_warmup input_data_file")


def test_a_symlink_out_is_refused(version_dir: Path) -> None:
    (version_dir / "link.onnx").symlink_to(version_dir.parents[2] / "secret")
    (version_dir / "outdir").symlink_to(version_dir.parents[2], target_is_directory=True)
    with pytest.raises(ConfigError, match=REFUSED):
        model_path(version_dir, "link.onnx")
    with pytest.raises(ConfigError, match=REFUSED):
        model_path(version_dir, "outdir/secret")


def test_a_symlink_loop_is_refused(version_dir: Path) -> None:
    (version_dir / "a").symlink_to(version_dir / "b")
    (version_dir / "b").symlink_to(version_dir / "a")
    with pytest.raises(ConfigError, match=REFUSED):
        model_path(version_dir, "a")


def test_a_symlink_inside_is_followed(version_dir: Path) -> None:
    (version_dir / "weights").mkdir()
    (version_dir / "weights" / "real.onnx").write_bytes(b"model")
    (version_dir / "link.onnx").symlink_to(version_dir / "weights" / "real.onnx")
    (version_dir / "w").symlink_to(version_dir / "weights", target_is_directory=True)
    assert model_path(version_dir, "link.onnx") == version_dir / "link.onnx"
    assert model_path(version_dir, "w/real.onnx") == version_dir / "w" / "real.onnx"


def test_a_version_directory_that_is_itself_a_link_inside_the_repository(
    version_dir: Path,
) -> None:
    (version_dir.parent / "2").symlink_to(version_dir, target_is_directory=True)
    assert model_path(version_dir.parent / "2", "model.onnx").is_file()
    check_inside_repository(version_dir.parents[1], version_dir.parent / "2")


def test_a_directory_linking_out_of_the_repository_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (tmp_path / "elsewhere" / "1").mkdir(parents=True)
    root.mkdir()
    (root / "m").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ConfigError, match=r"leaves the model repository .*: refused"):
        check_inside_repository(root, root / "m")
    with pytest.raises(ConfigError, match="refused"):
        check_inside_repository(root, root / "m" / "1")
    check_inside_repository(root, root)


def test_model_names_lists_model_directories_only(tmp_path: Path) -> None:
    for name in ("b", "a", ".tmp", "_private"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("not a model")
    (tmp_path / "c").symlink_to(tmp_path / "a", target_is_directory=True)
    assert model_names(tmp_path) == ["a", "b", "c"]
    assert model_names(tmp_path / "gone") == []
