"""The roofline's labels, on ceilings and results given by the test: a model's point is
bound by the roof under its intensity when it reaches half of it, else overhead-bound."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor.analyze import machine, roofline
from conveyor.cli import main

CEILINGS = {"peak_fp32_gflops": 200.0, "peak_bandwidth_gbs": 20.0}  # ridge at 10 FLOP/B


def analysis(flops_per_item: float, intensity: float) -> dict[str, object]:
    return {"per_item": {"flops": flops_per_item}, "arithmetic_intensity": intensity}


def test_labels() -> None:
    # ResNet-50-like: 8.2 GFLOP per image, intensity 33 > ridge; 24 images/s = 197 GFLOP/s
    compute = roofline.place(analysis(8.2e9, 33), CEILINGS, 24)
    assert compute["bound"] == "compute-bound" and compute["roof_gflops"] == 200
    assert compute["share_of_roof"] == pytest.approx(8.2 * 24 / 200)
    # intensity 2: roof 40 GFLOP/s; 30 reached
    assert roofline.place(analysis(1e9, 2), CEILINGS, 30)["bound"] == "bandwidth-bound"
    # a tiny MLP: 20 kFLOP per item at 5000 items/s = 0.1 GFLOP/s, far below its roof
    tiny = roofline.place(analysis(2e4, 1.5), CEILINGS, 5000)
    assert tiny["bound"] == "below both: overhead-bound" and tiny["share_of_roof"] < 0.01


def test_items_count_rows() -> None:
    assert roofline.items_per_s({"duration_s": 2.0, "items": 80, "completed": 10}) == 40
    with pytest.raises(ValueError, match="no duration"):
        roofline.items_per_s({"completed": 3})


def test_the_command_places_bench_results(
    framework_models: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(machine, "peaks", lambda refresh=False: dict(CEILINGS))
    result = tmp_path / "r.json"
    result.write_text(json.dumps({"duration_s": 1.0, "items": 1000, "completed": 1000}))
    out = tmp_path / "a.json"
    args = [str(framework_models / "model.onnx"), "--bench", str(result), "--output", str(out)]
    assert main(["analyze", *args]) == 0
    point = json.loads(out.read_text())["roofline"][0]
    assert point["items_per_s"] == 1000 and point["bound"] == "below both: overhead-bound"
    assert "overhead-bound" in capsys.readouterr().out
