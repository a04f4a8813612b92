from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.cli import _size, main


def test_demo_repo_writes_models(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-repo", str(tmp_path), "--models", "simple,mlp"]) == 0
    assert (tmp_path / "simple" / "1" / "model.onnx").is_file()
    assert (tmp_path / "simple" / "config.pbtxt").is_file()
    assert (tmp_path / "mlp" / "1" / "model.onnx").is_file()
    assert not (tmp_path / "mlp" / "config.yaml").exists()  # completed from the model
    assert "wrote simple, mlp" in capsys.readouterr().out


def test_flag_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path), "--load-model", "x"]) == 2
    assert "needs --model-control-mode explicit" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing")]) == 2
    with pytest.raises(SystemExit):
        main(["serve", str(tmp_path), "--model-control-mode", "magic"])


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("4KiB", 4096), ("64MiB", 64 << 20), ("1g", 1 << 30), ("2kb", 2048)],
)
def test_sizes(text: str, value: int) -> None:
    assert _size(text) == value
