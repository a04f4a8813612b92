"""`conveyor report` on a `conveyor lab` document: the peers, each seed's table and its
chart, one self-contained page, as headless Chromium shows it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from conveyor.cli import main
from conveyor.lab.run import Cell, _ratios, tables


def _doc() -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for i, peer in enumerate(("conveyor-ort", "triton", "inprocess-ort")):
        kind = "in-process" if peer.startswith("inprocess") else "served"
        for cell in (
            Cell("images", "real", 10, 1, requests=10),
            Cell("images", "real", 32, 1, requests=4),
            Cell("rpc", "empty", 1, 1, seconds=1),
            Cell("rpc", "real", 1, 1, seconds=1),
            Cell("ramp", "real", 1, 3, seconds=3, ramp_per_s=1),
        ):
            if kind == "in-process" and cell.workload == "ramp":
                continue
            rate = 1000.0 / (i + 1) * (2 if cell.model == "empty" else 1)
            rows.append(
                {
                    "peer": peer,
                    "kind": kind,
                    "key": cell.key,
                    "workload": cell.workload,
                    "model": cell.model,
                    "batch": cell.batch,
                    "clients": cell.clients,
                    "requests": cell.requests,
                    "items_per_s": rate * cell.batch,
                    "requests_per_s": rate,
                    "seconds": 1.0,
                    "p50_ms": 1.0 + i,
                    "p99_ms": 3.0 + i,
                    "mean_ms": 1.5 + i,
                    "server_cpu_cores": 1.2,
                    "server_rss_mb": 150.0,
                    "errors": 0,
                    "timeline": [
                        {
                            "t_s": t,
                            "completed": 300 * (t + 1),
                            "errors": 0,
                            "mean_ms": 1.0 + t,
                            "max_ms": 4.0,
                        }
                        for t in range(3)
                    ],
                }
            )
    _ratios(rows)
    peers = [
        {
            "name": "conveyor-ort",
            "kind": "served",
            "protocol": "v2-binary",
            "status": "ok",
            "reason": "",
            "version": "conveyor 0.1.0",
            "startup_s": 0.4,
            "pids": [1],
            "left_behind": [],
            "check": {"real": {"ok": True, "max_abs_diff": 0.0}},
        },
        {
            "name": "torchserve",
            "kind": "served",
            "protocol": "torchserve-npy",
            "status": "skipped",
            "reason": "TorchServe needs a Java 17 runtime",
            "version": "",
            "startup_s": None,
            "pids": [],
            "left_behind": [],
            "check": {},
        },
    ]
    return {
        "kind": "lab",
        "model": {"name": "tiny", "item_shape": [256], "output_size": 256, "formats": ["onnx"]},
        "settings": {"max_batch": 32, "delay_us": 2000, "instances": 1, "threads": 2},
        "options": {"rounds": 3},
        "environment": {"cpu": "Some CPU", "cpu_count": 2, "platform": "Linux"},
        "peers": peers,
        "results": rows,
        "tables": tables(rows, peers),
    }


def test_lab_page(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(_doc()))
    page = tmp_path / "lab.html"
    assert main(["report", str(path), "--output", str(page)]) == 0
    text = page.read_text()
    assert "http://" not in text and "https://" not in text and "<script" not in text
    assert "<title>conveyor lab: tiny</title>" in text
    for key in ("lab-images", "lab-rpc", "lab-ramp"):
        section = text[text.index(f'id="{key}"') :].split("</figure>", 1)[0]
        assert "<svg" in section and "download=" in section, key
    for table in ("lab-peers", "lab-images-table", "lab-rpc-table", "lab-ramp-table"):
        assert f"id='{table}'" in text
    assert "TorchServe needs a Java 17 runtime" in text

    chromium = shutil.which("chromium")
    assert chromium, "headless Chromium is needed: apt-get install chromium"
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    ).stdout
    assert dom.count("<figure") == 3 and dom.count("<table") == 4
