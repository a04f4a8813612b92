"""`conveyor report`: bench results (and, optionally, an analysis) as one
self-contained HTML page: every chart drawn as inline SVG, with PNG and SVG downloads
embedded as data URIs; no script, no stylesheet or font fetched at view time.

Plotting library: matplotlib. It is maintained (NumFOCUS, releases every few months),
installs from wheels with no system libraries, and renders on the server to SVG/PNG,
so the page needs no JavaScript and nothing from the network, prints as it shows, and
each chart exports as a file for free. (A JS library such as Plotly would add 3-4 MB of
inlined script per page for interactivity the benchmark tables do not need.)

Charts: throughput vs latency (p50, p99) per result; latency percentile curves from the
HdrHistograms; a timeline (answers/s, mean and max latency, errors, second by second);
the server-side breakdown as stacked bars (transmission / queue / pre-processing /
inference / post-processing, and an ensemble's steps); CPU and memory (and GPU) use;
energy and carbon per inference; cold start; the roofline (with `--analysis`); and a
table comparing every result side by side.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf"]


def load_results(paths: list[Path]) -> list[dict[str, Any]]:
    """Every result in the files (a sweep's steps each count), each with a `label`."""
    out: list[dict[str, Any]] = []
    for path in paths:
        doc = json.loads(path.read_text())
        if doc.get("kind") == "steps":
            for i, step in enumerate(doc["steps"]):
                step = dict(step)
                step.setdefault("label", f"{path.stem} #{i + 1}")
                step.setdefault("group", path.stem)
                out.append(step)
        else:
            if "latency_ms" not in doc:
                raise ValueError(f"{path}: not a conveyor bench result")
            doc.setdefault("label", path.stem)
            doc.setdefault("group", path.stem)
            out.append(doc)
    return out


def _plt() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError(
            "conveyor report needs matplotlib: pip install 'conveyor[report]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "figure.dpi": 100})
    return plt


class Chart:
    def __init__(self, key: str, title: str, figure: Any = None, note: str = "") -> None:
        self.key, self.title, self.figure, self.note = key, title, figure, note

    def render(self, plt: Any) -> str:
        if self.figure is None:
            return (
                f'<figure class="chart empty" id="{self.key}"><figcaption>{html.escape(self.title)}'
                f"</figcaption><p>{html.escape(self.note)}</p></figure>"
            )
        svg_buf, png_buf = io.StringIO(), io.BytesIO()
        self.figure.savefig(svg_buf, format="svg", bbox_inches="tight")
        self.figure.savefig(png_buf, format="png", bbox_inches="tight", dpi=120)
        plt.close(self.figure)
        full = svg_buf.getvalue()
        # inline: no XML prolog, no metadata block, no namespace URIs (HTML's parser
        # knows SVG): the page holds no URL at all; the downloadable copy keeps them
        svg = re.sub(r"<metadata>.*?</metadata>", "", full[full.index("<svg") :], flags=re.S)
        svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
        svg_uri = "data:image/svg+xml;base64," + base64.b64encode(full.encode()).decode()
        png_uri = "data:image/png;base64," + base64.b64encode(png_buf.getvalue()).decode()
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return (
            f'<figure class="chart" id="{self.key}"><figcaption>{html.escape(self.title)} '
            f'<a download="{self.key}.png" href="{png_uri}">PNG</a> '
            f'<a download="{self.key}.svg" href="{svg_uri}">SVG</a></figcaption>{svg}{note}'
            "</figure>"
        )


def _groups(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(str(r["group"]), []).append(r)
    return groups


def throughput_latency(plt: Any, results: list[dict[str, Any]]) -> Chart:
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for i, (group, rs) in enumerate(_groups(results).items()):
        rs = sorted(rs, key=lambda r: r["throughput_rps"])
        x = [r["throughput_rps"] for r in rs]
        color = COLORS[i % len(COLORS)]
        ax.plot(
            x, [r["latency_ms"].get("p50", 0) for r in rs], "o-", color=color, label=f"{group} p50"
        )
        ax.plot(
            x, [r["latency_ms"].get("p99", 0) for r in rs], "s--", color=color, label=f"{group} p99"
        )
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Chart("throughput-latency", "Throughput vs latency", fig)


def percentiles(plt: Any, results: list[dict[str, Any]]) -> Chart:
    from hdrh.histogram import HdrHistogram

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    drawn = 0
    for i, r in enumerate(results):
        encoded = (r.get("histograms") or {}).get("latency_us")
        if not encoded:
            continue
        h = HdrHistogram.decode(base64.b64decode(encoded))
        ps = [50, 75, 90, 95, 99, 99.5, 99.9, 99.99]
        xs = [1 / (1 - p / 100) for p in ps]
        ax.plot(
            xs,
            [h.get_value_at_percentile(p) / 1000 for p in ps],
            "o-",
            color=COLORS[i % len(COLORS)],
            label=str(r["label"]),
        )
        drawn += 1
    if not drawn:
        plt.close(fig)
        return Chart("percentiles", "Latency percentiles", note="no latency histograms")
    ax.set_xscale("log")
    ax.set_xticks([2, 10, 100, 1000, 10000], ["p50", "p90", "p99", "p99.9", "p99.99"])
    ax.set_ylabel("latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return Chart("percentiles", "Latency percentiles", fig)


def timeline(plt: Any, results: list[dict[str, Any]]) -> Chart:
    rows = [(r, r.get("timeline") or []) for r in results]
    rows = [(r, t) for r, t in rows if t]
    if not rows:
        return Chart("timeline", "Timeline", note="no timeline in these results")
    fig, (top, mid, low) = plt.subplots(3, 1, figsize=(6.4, 5.4), sharex=True)
    for i, (r, t) in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        xs = [row["t_s"] for row in t]
        top.plot(xs, [row["completed"] for row in t], color=color, label=str(r["label"]))
        mid.plot(xs, [row["mean_ms"] or math.nan for row in t], color=color)
        mid.plot(xs, [row["max_ms"] or math.nan for row in t], color=color, ls=":", lw=0.8)
        low.bar(xs, [row["errors"] for row in t], color=color, alpha=0.6, width=0.8)
    top.set_ylabel("answers/s")
    mid.set_ylabel("latency ms\n(mean, max dotted)")
    low.set_ylabel("errors/s")
    low.set_xlabel("time (s)")
    for ax in (top, mid, low):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7)
    return Chart("timeline", "Timeline: rate, latency and errors over the run", fig)


BREAKDOWN = [
    ("transmission_us", "transmission"),
    ("queue_us", "queue"),
    ("compute_input_us", "pre-processing"),
    ("compute_infer_us", "inference"),
    ("compute_output_us", "post-processing"),
]


def breakdown(plt: Any, results: list[dict[str, Any]]) -> Chart:
    with_server = [r for r in results if r.get("server")]
    if not with_server:
        return Chart(
            "breakdown",
            "Server-side breakdown",
            note="no server statistics in these results (bench a V2 server with --model)",
        )
    fig, ax = plt.subplots(figsize=(6.4, 1.0 + 0.45 * len(with_server)))
    parts = [
        [max(0.0, float(r["server"].get(key) or 0)) / 1000 for key, _ in BREAKDOWN]
        for r in with_server
    ]
    labels = [f"{r['label']}\n{sum(p):.3g} ms" for r, p in zip(with_server, parts, strict=True)]
    left = [0.0] * len(with_server)
    for j, (_, name) in enumerate(BREAKDOWN):
        shares = [p[j] / sum(p) * 100 if sum(p) else 0.0 for p in parts]
        ax.barh(labels, shares, left=left, color=COLORS[j % len(COLORS)], label=name)
        left = [a + b for a, b in zip(left, shares, strict=True)]
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the mean request's time (%), the total beside each result")
    ax.legend(fontsize=7, ncol=5, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    ax.invert_yaxis()
    steps = [(r["label"], r["server"]["steps"]) for r in with_server if r["server"].get("steps")]
    note = "; ".join(
        f"{label}: "
        + ", ".join(f"{s} {v.get('compute_infer_us', 0) / 1000:.2f} ms" for s, v in st.items())
        for label, st in steps
    )
    return Chart("breakdown", "Server-side breakdown", fig, note=f"steps: {note}" if note else "")


def utilisation(plt: Any, results: list[dict[str, Any]]) -> Chart:
    with_hw = [r for r in results if r.get("hardware")]
    if not with_hw:
        return Chart("utilisation", "CPU, GPU and memory", note="no hardware monitoring")
    fig, (cpu, mem) = plt.subplots(1, 2, figsize=(6.4, 0.8 + 0.45 * len(with_hw)))
    labels = [str(r["label"]) for r in with_hw]
    cpu.barh(
        labels,
        [r["hardware"]["system"]["cpu_percent"] for r in with_hw],
        color=COLORS[0],
        label="system",
    )
    gpu = [
        sum(g.get("util_percent_mean") or 0 for g in r["hardware"].get("gpus", [])) for r in with_hw
    ]
    if any(gpu):
        cpu.barh(labels, gpu, color=COLORS[2], alpha=0.6, label="GPU util")
    cpu.set_xlabel("CPU % (of one core)")
    cpu.invert_yaxis()
    rss = [
        sum(p.get("rss_mb_max") or 0 for p in r["hardware"].get("processes", {}).values())
        for r in with_hw
    ]
    mem.barh(
        labels,
        rss if any(rss) else [r["hardware"]["system"]["memory_used_mb"] for r in with_hw],
        color=COLORS[1],
    )
    mem.set_xlabel("server RSS max (MB)" if any(rss) else "system memory used (MB)")
    mem.set_yticks([])
    mem.invert_yaxis()
    cpu.legend(fontsize=7)
    return Chart("utilisation", "CPU, GPU and memory", fig)


def energy(plt: Any, results: list[dict[str, Any]]) -> Chart:
    rows = [
        (r, r["hardware"]["energy"])
        for r in results
        if r.get("hardware") and (r["hardware"].get("energy") or {}).get("per_request_j")
    ]
    if not rows:
        return Chart("energy", "Energy and carbon per inference", note="no energy figures")
    fig, (ej, co) = plt.subplots(1, 2, figsize=(6.4, 0.8 + 0.45 * len(rows)))
    labels = [str(r["label"]) for r, _ in rows]
    joules = [e["per_request_j"] * 1000 for _, e in rows]
    ej.barh(labels, joules, color=COLORS[3])
    ej.set_xlabel("mJ per inference")
    if max(joules) > 50 * min(joules):
        ej.set_xscale("log")
        co.set_xscale("log")
    ej.invert_yaxis()
    co.barh(labels, [e["carbon_per_request_mg"] for _, e in rows], color=COLORS[2])
    co.set_xlabel("mg CO2e per inference")
    co.set_yticks([])
    co.invert_yaxis()
    basis = sorted({str(e.get("basis")) for _, e in rows})
    return Chart(
        "energy", "Energy and carbon per inference", fig, note=f"basis: {', '.join(basis)}"
    )


def cold_start(plt: Any, results: list[dict[str, Any]], docs: list[dict[str, Any]]) -> Chart:
    rows = [
        (str(d.get("label", d.get("target", "?"))), d["cold_start"])
        for d in docs
        if d.get("cold_start")
    ]
    if not rows:
        return Chart(
            "cold-start", "Cold start", note="no cold-start measurement (bench --cold-start)"
        )
    fig, ax = plt.subplots(figsize=(6.4, 0.8 + 0.45 * len(rows)))
    labels = [label for label, _ in rows]
    ready = [c["time_to_ready_s"] for _, c in rows]
    first = [(c.get("first_inference_ms") or 0) / 1000 for _, c in rows]
    ax.barh(labels, ready, color=COLORS[0], label="to ready")
    ax.barh(labels, first, left=ready, color=COLORS[1], label="first inference")
    ax.set_xlabel("seconds from start")
    ax.legend(fontsize=7)
    ax.invert_yaxis()
    return Chart("cold-start", "Cold start", fig)


def roofline_chart(
    plt: Any, analyses: list[dict[str, Any]], machine: dict[str, Any] | None
) -> Chart:
    points = [(a, p) for a in analyses for p in a.get("roofline", [])]
    if machine is None or not points:
        return Chart(
            "roofline",
            "Roofline",
            note="no roofline: give --analysis with an `analyze --bench` JSON",
        )
    peak = machine["peak_fp32_gflops"]
    bandwidth = machine["peak_bandwidth_gbs"]
    ridge = peak / bandwidth
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    xs = [0.01, ridge, 10_000]
    ax.plot(
        xs,
        [min(peak, x * bandwidth) for x in xs],
        "k-",
        lw=1.5,
        label=f"roof: {peak:.0f} GFLOP/s, {bandwidth:.1f} GB/s",
    )
    for i, (a, p) in enumerate(points):
        name = Path(a["model"]).parent.parent.name or a["model"]
        ax.plot(
            [p["intensity_flop_per_byte"]],
            [p["achieved_gflops"]],
            "o",
            ms=8,
            color=COLORS[i % len(COLORS)],
            label=f"{name}: {p['bound']} ({p['share_of_roof']:.1%} of its roof)",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP/byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return Chart("roofline", "Roofline", fig)


def table(results: list[dict[str, Any]]) -> str:
    head = ["result", "req/s", "p50 ms", "p99 ms", "errors", "CPU %", "mJ/inference"]
    rows = []
    for r in results:
        hw = r.get("hardware") or {}
        e = (hw.get("energy") or {}).get("per_request_j")
        lat = r.get("latency_ms") or {}
        cells = [
            str(r["label"]),
            f"{r['throughput_rps']:.1f}",
            f"{lat.get('p50', 0):.3f}",
            f"{lat.get('p99', 0):.3f}",
            str(sum((r.get("errors") or {}).values())),
            f"{hw['system']['cpu_percent']:.0f}" if hw.get("system") else "",
            f"{e * 1000:.3g}" if e else "",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    return f"<table id='comparison'><tr>{header}</tr>{''.join(rows)}</table>"


def _machine_of(analyses: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((a["machine"] for a in analyses if a.get("machine")), None)


STYLE = """body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}
h1{font-size:1.4em} figure.chart{margin:1.5em 0;border-top:1px solid #ddd;padding-top:.5em}
figcaption{font-weight:bold;margin-bottom:.4em} figcaption a{font-weight:normal;font-size:.8em}
svg{max-width:100%;height:auto} table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right} td:first-child{text-align:left}
.empty p,.note{color:#777;font-size:.85em}"""


def build(
    result_paths: list[Path],
    analysis_paths: list[Path] | None = None,
    machine: dict[str, Any] | None = None,
    title: str = "Conveyor benchmark report",
) -> str:
    plt = _plt()
    results = load_results(result_paths)
    docs = [json.loads(p.read_text()) for p in result_paths]
    for doc, path in zip(docs, result_paths, strict=True):
        doc.setdefault("label", path.stem)
    analyses = [json.loads(p.read_text()) for p in analysis_paths or []]
    makers: list[Callable[[], Chart]] = [
        lambda: throughput_latency(plt, results),
        lambda: percentiles(plt, results),
        lambda: timeline(plt, results),
        lambda: breakdown(plt, results),
        lambda: utilisation(plt, results),
        lambda: energy(plt, results),
        lambda: cold_start(plt, results, docs),
        lambda: roofline_chart(plt, analyses, machine or _machine_of(analyses)),
    ]
    charts = "\n".join(make().render(plt) for make in makers)
    sources = ", ".join(html.escape(p.name) for p in result_paths)
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p>{len(results)} results from {sources}.</p>"
        f"<h2>Side by side</h2>{table(results)}{charts}</body></html>"
    )
