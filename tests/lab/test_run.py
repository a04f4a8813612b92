"""The lab's bookkeeping: cells, the output check, medians, ratios and tables."""

from __future__ import annotations

import numpy as np

from conveyor.lab.run import Cell, Options, _check, _medians, _ratios, cells, tables


def test_cells_follow_the_seeds() -> None:
    got = cells(Options(images=100, batches=(10, 32), rpc_clients=(1, 10), ramp_users=5))
    keys = [c.key for c in got]
    assert keys == [
        "images/real/b10/c1",
        "images/real/b32/c1",
        "rpc/empty/b1/c1",
        "rpc/empty/b1/c10",
        "rpc/real/b1/c1",
        "rpc/real/b1/c10",
        "ramp/real/b1/c5",
    ]
    assert got[0].requests == 10 and got[1].requests == 4  # every image sent: ceil(100/32)
    assert cells(Options(workloads=("rpc",)))[0].workload == "rpc"


def test_check_is_relative_to_the_output_scale() -> None:
    ref = np.array([[100.0, -50.0]])
    assert _check(ref + 0.05, ref, 1e-3)["ok"]  # 0.05 <= 1e-3 * 100
    assert not _check(ref + 0.5, ref, 1e-3)["ok"]
    bad = _check(np.zeros((2, 2)), ref, 1e-3)
    assert not bad["ok"] and "shape" in bad["detail"]


def _row(peer: str, kind: str, cell: Cell, items: float, mean: float) -> dict[str, object]:
    return {
        "peer": peer,
        "kind": kind,
        "key": cell.key,
        "workload": cell.workload,
        "model": cell.model,
        "batch": cell.batch,
        "clients": cell.clients,
        "requests": cell.requests,
        "items_per_s": items,
        "requests_per_s": items / cell.batch,
        "seconds": 1.0,
        "p50_ms": mean,
        "p99_ms": mean * 2,
        "mean_ms": mean,
        "server_cpu_cores": 1.0,
        "server_rss_mb": 100.0,
        "errors": 0,
    }


def test_ratios_and_tables() -> None:
    img = Cell("images", "real", 10, 1, requests=5)
    real, empty = Cell("rpc", "real", 1, 1, seconds=1), Cell("rpc", "empty", 1, 1, seconds=1)
    rows = [
        _row("conveyor-ort", "served", img, 400.0, 2.0),
        _row("triton", "served", img, 200.0, 4.0),
        _row("inprocess-ort", "in-process", img, 800.0, 1.0),
        _row("conveyor-ort", "served", real, 1000.0, 1.0),
        _row("conveyor-ort", "served", empty, 2000.0, 0.25),
    ]
    _ratios(rows)  # type: ignore[arg-type]
    assert rows[1]["vs_best_served"] == 0.5 and rows[1]["vs_conveyor"] == 0.5
    assert rows[2]["vs_best_served"] == 2.0  # in-process is not a served peer
    t = tables(rows, [{"name": "conveyor-ort", "startup_s": 0.5}])  # type: ignore[arg-type]
    assert [r["peer"] for r in t["images"]] == ["conveyor-ort", "triton", "inprocess-ort"]
    assert t["images"][0]["images"] == 50 and t["images"][0]["startup_s"] == 0.5
    (rpc,) = t["rpc"]
    assert rpc["empty_rps"] == 2000.0 and rpc["transport_share"] == 0.25


def test_medians_over_rounds() -> None:
    rounds = [
        {
            "seconds": s,
            "requests_per_s": 1.0,
            "items_per_s": v,
            "p50_ms": v,
            "p99_ms": None,
            "mean_ms": v,
            "server_cpu_cores": None,
            "server_rss_mb": 1.0,
            "errors": e,
        }
        for s, v, e in ((1.0, 10.0, 0), (2.0, 30.0, 1), (3.0, 20.0, 0))
    ]
    got = _medians(rounds)
    assert got["items_per_s"] == 20.0 and got["seconds"] == 2.0
    assert got["p99_ms"] is None and got["errors"] == 1
    assert got["spread"] == 1.0  # (30 - 10) / 20
