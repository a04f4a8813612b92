"""`conveyor report` on real bench results from a real server (one of them a cold start
launched by bench itself), plus a roofline analysis: one HTML file with no URL in it,
which headless Chromium renders with every chart drawn and no console error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.analyze import machine
from conveyor.cli import main
from tests.e2e.utils import ServerProcess, free_port

pytestmark = pytest.mark.e2e

CHARTS = [
    "throughput-latency",
    "percentiles",
    "timeline",
    "breakdown",
    "utilisation",
    "energy",
    "cold-start",
    "roofline",
]


@pytest.fixture(scope="module")
def results(
    demo_repo: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[Path], Path]]:
    out = tmp_path_factory.mktemp("report")
    server = ServerProcess(demo_repo, log_dir=out).start()
    paths = []
    try:
        for name, clients in (("mlp-c1", 1), ("mlp-c4", 4)):
            path = out / f"{name}.json"
            args = [server.url, "--model", "mlp", "--concurrency", str(clients)]
            assert main(["bench", f"http://{args[0]}", *args[1:], "--duration", "2",
                         "--output", str(path), "--live", "off"]) == 0  # fmt: skip
            paths.append(path)
    finally:
        assert server.stop() == 0
    port = free_port()
    conveyor = Path(sys.executable).parent / "conveyor"
    launch = (
        f"{conveyor} serve {demo_repo} --host 127.0.0.1 --http-port {port} --grpc-port 0 "
        "--metrics-port 0 --model-control-mode explicit --load-model mlp"
    )
    cold = out / "mlp-cold.json"
    argv = ["bench", f"http://127.0.0.1:{port}", "--model", "mlp", "--launch", launch,
            "--duration", "1", "--output", str(cold), "--live", "off"]  # fmt: skip
    assert main(argv) == 0
    paths.append(cold)
    yield paths, out


def test_report_opens_offline_with_every_chart(
    results: tuple[list[Path], Path], demo_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, out = results
    ceilings = {"peak_fp32_gflops": 200.0, "peak_bandwidth_gbs": 20.0, "identity": {}}
    monkeypatch.setattr(machine, "peaks", lambda refresh=False: dict(ceilings))
    analysis = out / "mlp-analysis.json"
    argv = ["analyze", str(demo_repo / "mlp"), "--bench", str(paths[1]), "--output", str(analysis)]
    assert main(argv) == 0
    page = out / "report.html"
    assert (
        main(["report", *map(str, paths), "--analysis", str(analysis), "--output", str(page)]) == 0
    )
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # nothing to fetch
    assert "<script" not in text
    for key in CHARTS:
        assert f'id="{key}"' in text
        section = text[text.index(f'id="{key}"') :].split("</figure>", 1)[0]
        assert "<svg" in section and "<path" in section, f"chart {key} has no drawing"
        assert "download=" in section  # PNG and SVG export

    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is needed: apt-get install chromium"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={out / 'chromium'}", "--enable-logging=stderr", "--v=0",
    ]  # fmt: skip
    shot = out / "report.png"
    run = subprocess.run(
        [chromium, *flags, "--window-size=1000,4200", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), run.stderr[-2000:]
    assert "CONSOLE" not in run.stderr and "Failed to load resource" not in run.stderr
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count("<figure") == len(CHARTS) and "<svg" in dom
    import numpy as np
    from PIL import Image

    with Image.open(shot) as image:
        pixels = np.asarray(image.convert("L").resize((100, 420)))
        dark = int((pixels < 200).sum())
    assert dark > 2000, f"only {dark} of 42,000 sampled pixels drawn"


def test_a_file_that_is_not_a_result_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(bad), "--output", str(tmp_path / "r.html")]) == 2
