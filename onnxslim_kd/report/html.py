"""A self-contained HTML report: tables plus matplotlib plots embedded as PNG data URIs.

matplotlib is an optional dependency (`pip install onnxslim-kd[report]`); nothing here
fetches anything, so the page opens offline.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable

from onnxslim_kd.errors import InputError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "the HTML report needs matplotlib: pip install 'onnxslim-kd[report]'"
        ) from None
    return plt


def _figure(draw: Callable) -> str:
    """Render `draw(axes)` to an <img> with an embedded PNG."""
    plt = _pyplot()
    fig, axes = plt.subplots(figsize=(7.5, 3.6), dpi=100)
    draw(axes)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _stage_latency(stages: list[dict]) -> Callable:
    def draw(axes):
        labels = [s["stage"] for s in stages]
        values = [s["p50_ms"] for s in stages]
        bars = axes.bar(labels, values, color="#4C72B0")
        for bar, stage in zip(bars, stages, strict=True):
            axes.annotate(f"{stage['speedup']:.2f}x", (bar.get_x() + bar.get_width() / 2,
                          bar.get_height()), ha="center", va="bottom")  # fmt: skip
        axes.set_ylabel(f"p50 latency, ms (batch {stages[0]['batch']})")
        axes.set_title("Latency after each stage (interleaved, ratio of medians)")

    return draw


def _search(candidates: list[dict]) -> Callable:
    def draw(axes):
        for accepted, color in ((True, "#55A868"), (False, "#C44E52")):
            points = [c for c in candidates if c["within_budget"] == accepted]
            label = "within budget" if accepted else "over budget"
            speedups = [c["speedup"] for c in points]
            axes.scatter(speedups, [c["quality"] * 100 for c in points], color=color, label=label)
        for c in candidates:
            axes.annotate(c["label"], (c["speedup"], c["quality"] * 100), fontsize=7)
        axes.set_xlabel("measured speed-up")
        axes.set_ylabel("accuracy / agreement, %")
        axes.set_title("Search candidates")
        axes.legend()

    return draw


def _structures(structures: list[dict], target: float) -> Callable:
    def draw(axes):
        labels = [s["label"] for s in structures]
        axes.barh(labels, [s["predicted_speedup"] for s in structures], color="#8C8C8C")
        axes.axvline(target, color="#C44E52", linestyle="--", label=f"target {target:g}x")
        axes.invert_yaxis()
        axes.set_xlabel("measured speed-up before fine-tuning")
        axes.set_title("Structures timed untuned (interleaved, one run)")
        axes.legend()

    return draw


def _channels(groups: list[dict]) -> Callable:
    def draw(axes):
        shown = [(i, g) for i, g in enumerate(groups) if g["status"] != "skipped"][:40]
        positions = range(len(shown))
        axes.bar(positions, [g["size"] for _, g in shown], color="#CCCCCC", label="before")
        axes.bar(positions, [g["kept"] for _, g in shown], color="#4C72B0", label="after")
        axes.set_xticks(list(positions), [str(i) for i, _ in shown], fontsize=6)
        axes.set_xlabel("channel group (see table)")
        axes.set_ylabel("channels")
        axes.set_title("Channels per pruned group")
        axes.legend()

    return draw


def _profile(profiles: dict[str, dict]) -> Callable:
    def draw(axes):
        ops = list(dict.fromkeys(op for p in profiles.values() for op in list(p["ops"])[:8]))
        bottoms = [0.0] * len(profiles)
        for op in ops:
            values = [p["ops"].get(op, {}).get("ms_per_run", 0.0) for p in profiles.values()]
            axes.bar(list(profiles), values, bottom=bottoms, label=op)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        axes.set_ylabel("ms per run (onnxruntime profiler)")
        axes.set_title("Time per op type")
        axes.legend(fontsize=7, ncol=2)

    return draw


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(record: dict, rows: list[tuple[str, str, str, str]]) -> str:
    """The compress report: summary, per-stage latency, search, channels, ranks, profile."""
    sections = [f"<h1>onnxslim-kd report: {html.escape(str(record.get('input', '')))}</h1>"]
    sections.append(_table(["", "before", "after", "change"], [list(r) for r in rows]))
    if record.get("stages"):
        sections += ["<h2>Latency per stage</h2>", _figure(_stage_latency(record["stages"]))]
    search = record.get("search")
    if search and search.get("structures"):
        timed = _structures(search["structures"], search["target_speedup"])
        sections += ["<h2>Search</h2>", _figure(timed)]
    if search and search.get("candidates"):
        sections.append(_figure(_search(search["candidates"])))
        sections.append(_table(["candidate", "speed-up", "quality", "within budget"], [
            [c["label"], f"{c['speedup']:.2f}x", f"{c['quality']:.2%}", c["within_budget"]]
            for c in search["candidates"]
        ]))  # fmt: skip
    for step in record.get("passes", []):
        summary = step.get("summary", {})
        if step["pass"] == "prune" and summary.get("groups"):
            sections += ["<h2>Pruning</h2>", _figure(_channels(summary["groups"]))]
            sections.append(_table(["#", "group", "status", "channels", "why skipped"], [
                [i, g["id"], g["status"], f"{g['size']} -> {g['kept']}", "; ".join(g["reasons"])]
                for i, g in enumerate(summary["groups"])
            ]))  # fmt: skip
        if step["pass"] == "decompose" and summary.get("layers"):
            sections.append("<h2>Low-rank decomposition</h2>")
            sections.append(_table(["layer", "decision", "ranks", "speed-up"], [
                [d["name"], d["kind"] if d["decomposed"] else f"skip: {d['reason']}",
                 d["ranks"] or "", d["speedup"] or ""]
                for d in summary["layers"]
            ]))  # fmt: skip
    if record.get("profile"):
        sections += ["<h2>Where the time goes</h2>", _figure(_profile(record["profile"]))]
    env = record.get("environment", {})
    cpu = env.get("cpu", {})
    sections.append(
        f"<p>{html.escape(str(cpu.get('model')))} ({', '.join(cpu.get('isa', []))}), "
        f"{env.get('threads')} threads, onnxruntime {env.get('onnxruntime')}</p>"
    )
    style = (
        "body{font-family:sans-serif;max-width:980px;margin:auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>onnxslim-kd report</title>"
        f"<style>{style}</style></head><body>{''.join(sections)}</body></html>"
    )
