"""A `conveyor lab` document as one self-contained HTML page: the peers (status, the
reason a peer is missing, the output check, versions, startup), each seed's table, and
its chart — images/s per peer and batch size (seed 000), the empty model against the
real one per client count (seed 004), the ramp second by second (seed 002). Same page
rules as `html.py`: inline SVG, PNG/SVG downloads as data URIs, nothing fetched."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from conveyor.report.html import COLORS, STYLE, Chart, _plt


def is_lab(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("kind") == "lab")
    except (OSError, ValueError, AttributeError):
        return False


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _table(key: str, rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return f"<p class='note' id='{key}'>Not in this run.</p>"
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)

    def td(value: Any) -> str:
        left = " style='text-align:left'" if isinstance(value, str) else ""  # words, not figures
        return f"<td{left}>{html.escape(_cell(value))}</td>"

    body = "".join("<tr>" + "".join(td(r.get(c)) for c, _ in columns) + "</tr>" for r in rows)
    return f"<table id='{key}'><tr>{head}</tr>{body}</table>"


def _bars(
    plt: Any, key: str, title: str, groups: list[str], series: dict[str, list[float]], ylabel: str
) -> Chart:
    if not groups or not series:
        return Chart(key, title, note="no results for this workload")
    fig, ax = plt.subplots(figsize=(6.8, 3.4))
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(xs, values, width, label=name, color=COLORS[i % len(COLORS)])
    ax.set_xticks(range(len(groups)), groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    return Chart(key, title, fig)


def images_chart(plt: Any, rows: list[dict[str, Any]]) -> Chart:
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    batches = sorted({r["batch"] for r in rows})
    series = {
        f"batch {b}": [
            next(
                (r["images_per_s"] or 0.0 for r in rows if r["peer"] == p and r["batch"] == b), 0.0
            )
            for p in peers
        ]
        for b in batches
    }
    return _bars(plt, "lab-images", "Images/s per peer (seed 000)", peers, series, "images/s")


def rpc_chart(plt: Any, rows: list[dict[str, Any]]) -> Chart:
    peers = list(dict.fromkeys(r["peer"] for r in rows))
    series: dict[str, list[float]] = {}
    for clients in sorted({r["clients"] for r in rows}):
        for what, key in (("empty model", "empty_rps"), ("model", "model_rps")):
            series[f"{what}, {clients} clients"] = [
                next(
                    (r[key] or 0.0 for r in rows if r["peer"] == p and r["clients"] == clients), 0.0
                )
                for p in peers
            ]
    return _bars(
        plt,
        "lab-rpc",
        "Requests/s: empty model vs the model (seed 004)",
        peers,
        series,
        "requests/s",
    )


def ramp_chart(plt: Any, rows: list[dict[str, Any]]) -> Chart:
    rows = [r for r in rows if r.get("timeline")]
    if not rows:
        return Chart("lab-ramp", "The ramp (seed 002)", note="no ramp in this run")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.8, 4.6), sharex=True)
    for i, r in enumerate(rows):
        t = [p["t_s"] for p in r["timeline"]]
        color = COLORS[i % len(COLORS)]
        top.plot(t, [p["completed"] for p in r["timeline"]], color=color, label=r["peer"])
        bottom.plot(t, [p["mean_ms"] or 0.0 for p in r["timeline"]], color=color)
    top.set_ylabel("answers/s")
    bottom.set_ylabel("mean latency (ms)")
    bottom.set_xlabel("seconds (a user joins each second)")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    return Chart("lab-ramp", "The ramp, second by second (seed 002)", fig)


def _peer_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for p in doc["peers"]:
        real = (p.get("check") or {}).get("real") or {}
        rows.append(
            {
                **p,
                "max_abs_diff": real.get("max_abs_diff"),
                "left": ", ".join(str(x) for x in p.get("left_behind", [])) or "none",
            }
        )
    return rows


def build_lab(doc: dict[str, Any], title: str | None = None) -> str:
    plt = _plt()
    model = doc["model"]
    title = title or f"conveyor lab: {model['name']}"
    t = doc["tables"]
    env = doc.get("environment") or {}
    machine = ", ".join(
        str(v)
        for v in (
            env.get("cpu"),
            f"{env.get('cpu_count')} CPUs" if env.get("cpu_count") else None,
            env.get("platform"),
        )
        if v
    )
    s = doc["settings"]
    intro = (
        f"<p>Model <b>{html.escape(model['name'])}</b>, input {model['item_shape']} FP32, "
        f"formats {', '.join(model['formats'])}. Every peer configured alike: batches up to "
        f"{s['max_batch']}, a {s['delay_us']} µs batching window where the peer batches, "
        f"{s['instances']} instance(s) of {s['threads']} thread(s). "
        f"{doc['options']['rounds']} alternating rounds, medians. "
        f"Machine: {html.escape(machine or 'not recorded')}.</p>"
    )
    charts = [images_chart(plt, t["images"]), rpc_chart(plt, t["rpc"]), ramp_chart(plt, t["ramp"])]
    parts = [
        "<h2>Peers</h2>",
        _table(
            "lab-peers",
            _peer_rows(doc),
            [
                ("name", "peer"),
                ("kind", "kind"),
                ("protocol", "protocol"),
                ("status", "status"),
                ("reason", "reason"),
                ("max_abs_diff", "max |out - ref|"),
                ("startup_s", "startup s"),
                ("version", "version"),
                ("left", "left behind"),
            ],
        ),
        "<h2>Images (seed 000)</h2>",
        _table(
            "lab-images-table",
            t["images"],
            [
                ("peer", "peer"),
                ("batch", "batch"),
                ("images", "images"),
                ("seconds", "seconds"),
                ("images_per_s", "images/s"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("server_cpu_cores", "server cores"),
                ("server_rss_mb", "RSS MiB"),
                ("spread", "spread over rounds"),
                ("startup_s", "startup s"),
                ("vs_best_served", "÷ best served"),
                ("vs_conveyor", "÷ Conveyor"),
                ("errors", "errors"),
            ],
        ),
        charts[0].render(plt) if t["images"] else "",
        "<h2>Transport vs compute (seed 004)</h2>",
        _table(
            "lab-rpc-table",
            t["rpc"],
            [
                ("peer", "peer"),
                ("clients", "clients"),
                ("empty_rps", "empty req/s"),
                ("empty_p50_ms", "empty p50 ms"),
                ("model_rps", "model req/s"),
                ("model_p50_ms", "model p50 ms"),
                ("model_p99_ms", "model p99 ms"),
                ("transport_share", "empty ÷ model latency"),
                ("vs_best_served", "÷ best served"),
                ("errors", "errors"),
            ],
        ),
        charts[1].render(plt) if t["rpc"] else "",
        "<h2>The ramp (seed 002)</h2>",
        _table(
            "lab-ramp-table",
            t["ramp"],
            [
                ("peer", "peer"),
                ("users", "users"),
                ("seconds", "seconds"),
                ("requests_per_s", "req/s"),
                ("p50_ms", "p50 ms"),
                ("p99_ms", "p99 ms"),
                ("errors", "errors"),
            ],
        ),
        charts[2].render(plt) if t["ramp"] else "",
    ]
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{intro}{''.join(parts)}</body></html>"
    )
