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
        axes.set_ylim(0, max(values) * 1.18)  # room for the labels above the bars
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


def _changed(groups: list[dict]) -> list[dict]:
    """The pruned groups, the only ones the chart and its table show (the first 30)."""
    return [g for g in groups if g["kept"] < g["size"]][:30]


def _channels(groups: list[dict]) -> Callable:
    def draw(axes):
        shown = _changed(groups)
        labels = [g["id"].strip("/").replace("/", " ")[-28:] for g in shown]
        positions = range(len(shown))
        axes.barh(positions, [g["size"] for g in shown], color="#CCCCCC", label="before")
        axes.barh(positions, [g["kept"] for g in shown], color="#4C72B0", label="after")
        axes.set_yticks(list(positions), labels, fontsize=7)
        axes.invert_yaxis()
        axes.set_xlabel("channels")
        axes.set_title("Channels of each pruned group, by producing node")
        axes.legend()

    return draw


def _training(history: list[dict], best: int | None) -> Callable:
    def draw(axes):
        epochs = [h["epoch"] for h in history]
        lines = axes.plot(epochs, [h["loss"] for h in history], color="#4C72B0", label="train loss")
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.set_ylabel("train loss")
        metric = [h.get("val_metric") for h in history]
        if any(m is not None for m in metric):
            other = axes.twinx()
            lines += other.plot(epochs, [100 * m for m in metric], color="#55A868",
                                label="held-out metric")  # fmt: skip
            other.set_ylabel("held-out metric, %")
            if best:
                lines.append(other.axvline(best, color="#C44E52", linestyle="--",
                                           label=f"kept: epoch {best}"))  # fmt: skip
        # below the axes: "best" sees only the loss axes and covers the metric's curve
        axes.legend(lines, [line.get_label() for line in lines], loc="upper center",
                    bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)  # fmt: skip
        axes.set_title("Distillation")

    return draw


#: Op types under this share of every profiled run are drawn as one "other" slice.
SMALL_SHARE = 0.03


def _profile(profiles: dict[str, dict]) -> Callable:
    def draw(axes):
        plt = _pyplot()
        big = list(dict.fromkeys(
            op for p in profiles.values() for op, e in p["ops"].items() if e["share"] >= SMALL_SHARE
        ))  # fmt: skip
        colours = plt.get_cmap("tab20").colors
        bottoms = [0.0] * len(profiles)
        for index, op in enumerate([*big, "other"]):
            values = [
                sum(e["ms_per_run"] for o, e in p["ops"].items() if o not in big)
                if op == "other" else p["ops"].get(op, {}).get("ms_per_run", 0.0)
                for p in profiles.values()
            ]  # fmt: skip
            colour = "#BBBBBB" if op == "other" else colours[index % len(colours)]
            axes.bar(list(profiles), values, bottom=bottoms, label=op, color=colour)
            bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
        axes.set_ylabel("ms per run (onnxruntime profiler)")
        axes.set_title("Time per op type")
        axes.legend(fontsize=7, ncol=2)

    return draw


def _verdict(verdict: dict, fallback: str | None = None) -> str:
    """The banner: passed or not, against which budget and target, with what was measured,
    and the recipe's fallback when the result is not the recipe asked for."""
    code = verdict["exit_code"]
    title = {0: "PASSED", 3: "BUDGET MISSED", 4: "TARGET MISSED"}.get(code, f"exit {code}")
    colour = "#2E7D32" if verdict["passed"] else "#C62828"
    budget, measured, target = verdict["budget"], verdict["measured"], verdict.get("target")
    facts = [f"budget: --max-drop {budget['max_drop']}, --min-sqnr {budget['min_sqnr']} dB"]
    if measured.get("drop") is not None:
        facts.append(f"measured {measured['drop_metric']} {measured['drop']:.4f}")
    for name, sqnr in measured.get("outputs_under_sqnr_floor", {}).items():
        facts.append(f"output '{name}' {sqnr:.1f} dB")
    if target:
        facts.append(f"target {target['speedup']:g}x")
    if measured.get("speedup") is not None:
        facts.append(f"measured speed-up {measured['speedup']:.2f}x")
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict["reasons"])
    if fallback:
        reasons += f"<li>{html.escape(fallback)}</li>"
    return (
        f'<div class="verdict" style="border-left:8px solid {colour};padding:6px 12px;'
        f'background:#F6F6F6"><h2 style="color:{colour};margin:4px 0">{title} '
        f"(exit {code})</h2><p>{html.escape('; '.join(facts))}</p><ul>{reasons}</ul></div>"
    )


def _fidelity_cell(fidelity: dict) -> str:
    """The worst output's SQNR (and agreement) against the pass's input."""
    if not fidelity:
        return ""
    name, entry = min(fidelity.items(), key=lambda item: item[1].get("sqnr_db", float("inf")))
    text = f"'{name}' {entry['sqnr_db']:.1f} dB"
    if entry.get("top1_agreement") is not None:
        text += f", {entry['top1_agreement']:.1%} agreement"
    return text


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(record: dict, rows: list[tuple[str, str, str, str]]) -> str:
    """The compress report: summary, per-stage latency, search, channels, ranks, profile."""
    sections = [f"<h1>onnxslim-kd report: {html.escape(str(record.get('input', '')))}</h1>"]
    if record.get("verdict"):
        sections.append(_verdict(record["verdict"], record.get("fallback")))
    sections.append(_table(["", "before", "after", "change"], [list(r) for r in rows]))
    if record.get("passes"):
        sections.append("<h2>Passes</h2>")
        sections.append(_table(
            ["pass", "time", "what it did", "fidelity vs its input", "vs the original"], [
            [p["pass"] + (" (resumed)" if p.get("resumed") else ""), f"{p['seconds']:.1f} s",
             p["headline"], _fidelity_cell(p.get("fidelity_vs_previous", {})),
             _fidelity_cell(p.get("fidelity_vs_original", {}))]
            for p in record["passes"]
        ]))  # fmt: skip
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
        if step["pass"] == "prune" and _changed(summary.get("groups", [])):
            groups = summary["groups"]
            sections += ["<h2>Pruning</h2>", _figure(_channels(groups))]
            sections.append(_table(["group (producing node)", "channels"], [
                [g["id"], f"{g['size']} -> {g['kept']}"] for g in _changed(groups)
            ]))  # fmt: skip
            kept = [g for g in groups if g["kept"] == g["size"]]
            if kept:
                sections.append(f"<p>{len(kept)} groups kept whole (reasons in the JSON).</p>")
        if step["pass"] == "decompose" and summary.get("layers"):
            done = [d for d in summary["layers"] if d["decomposed"]]
            sections.append("<h2>Low-rank decomposition</h2>")
            if done:
                sections.append(_table(["layer", "kind", "ranks", "speed-up"], [
                    [d["name"], d["kind"], d["ranks"], d["speedup"] or ""] for d in done
                ]))  # fmt: skip
            sections.append(
                f"<p>{len(done)} of {len(summary['layers'])} layers factorised; the others "
                "were not measured faster (reasons in the JSON).</p>"
            )
        training = summary.get("training") if step["pass"] == "distill" else None
        if training and training.get("history"):
            sections += [
                "<h2>Distillation</h2>",
                _figure(_training(training["history"], training.get("best_epoch"))),
            ]
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
