"""Before/after record of a compression: size, compute, latency and fidelity side by side."""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxslim_kd.bench.latency import BenchResult, bench_against
from onnxslim_kd.data import random_data
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.stats import ModelStats, model_stats
from onnxslim_kd.graph.validate import run_pair
from onnxslim_kd.report.fidelity import OutputFidelity, accuracy
from onnxslim_kd.report.outputs import OutputRoles, output_roles


@dataclass
class Comparison:
    """Everything the before/after table shows, plus the raw records for JSON."""

    before: ModelStats
    after: ModelStats
    latency: BenchResult | None
    fidelity: dict[str, OutputFidelity]
    accuracy_before: float | None = None
    accuracy_after: float | None = None
    samples: int = 0
    roles: OutputRoles | None = None  # class-like / regression outputs, the labels' output

    def as_dict(self) -> dict:
        return {
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "latency": self.latency.as_dict() if self.latency else None,
            "fidelity": {k: v.as_dict() for k, v in self.fidelity.items()},
            "accuracy_before": self.accuracy_before,
            "accuracy_after": self.accuracy_after,
            "fidelity_samples": self.samples,
            "outputs": self.roles.as_dict() if self.roles else None,
        }

    def rows(self) -> list[tuple[str, str, str, str]]:
        """(metric, before, after, change) rows of the summary table."""
        b, a = self.before, self.after
        rows = [
            ("params", f"{b.params:,}", f"{a.params:,}", _ratio(b.params, a.params)),
            ("MACs", _giga(b.macs), _giga(a.macs), _ratio(b.macs, a.macs)),
            ("size", _mb(b.size_bytes), _mb(a.size_bytes), _ratio(b.size_bytes, a.size_bytes)),
        ]
        if self.latency:
            first, last = self.latency.latencies[0], self.latency.latencies[-1]
            rows.append(
                (
                    f"latency p50 (batch {first.batch})",
                    f"{first.median_ms:.3f} ms",
                    f"{last.median_ms:.3f} ms",
                    speed_change(last.speedup),
                )
            )
        if self.accuracy_before is not None and self.accuracy_after is not None:
            change = round((self.accuracy_after - self.accuracy_before) * 100, 2) + 0.0
            where = f", '{self.roles.label_output}'" if self.roles else ""
            rows.append(
                (
                    f"accuracy ({self.samples} samples{where})",
                    f"{self.accuracy_before:.2%}",
                    f"{self.accuracy_after:.2%}",
                    f"{change:+.2f} points",
                )
            )
        for name, fid in self.fidelity.items():
            if fid.top1_agreement is not None:
                rows.append((f"top-1 agreement '{name}'", "", f"{fid.top1_agreement:.2%}", ""))
            rows.append((f"SQNR '{name}'", "", f"{fid.sqnr_db:.1f} dB", ""))
            rows.append((f"max abs diff '{name}'", "", f"{fid.max_abs_diff:.3g}", ""))
        return rows


def compare_before_after(
    before: onnx.ModelProto,
    after: onnx.ModelProto,
    data: Dataset | None,
    *,
    shapes: dict[str, list[int]] | None = None,
    threads: int | None = None,
    runs: int = 50,
    label_output: str | None = None,
    speedup_bar: float | None = None,
) -> Comparison:
    """Stats of both models, interleaved latency (skipped when runs=0), fidelity on `data`
    of every output by its role (report.outputs), accuracy on the labels' output. With a
    `speedup_bar`, `runs` more rounds at a time (up to MAX_ROUNDS_FACTOR * `runs`) while
    the speed-up's interval holds the bar, so a limit is decided on the interval."""
    shapes = shapes or {}
    evaluation = data if data is not None else random_data(before, shapes)
    ref_out, cand_out = run_pair(before, after, evaluation)
    roles = output_roles(before, ref_out, evaluation.labels, label_output)
    comparison = Comparison(
        before=model_stats(before, shapes),
        after=model_stats(after, shapes),
        latency=None,
        fidelity={k: roles.fidelity(k, ref_out[k], cand_out[k]) for k in ref_out},
        samples=len(evaluation),
        roles=roles,
    )
    if roles.label_output is not None:
        labelled = roles.label_output
        axis = roles.class_axes.get(labelled)
        comparison.accuracy_before = accuracy(ref_out[labelled], evaluation.labels, axis)
        comparison.accuracy_after = accuracy(cand_out[labelled], evaluation.labels, axis)
    if runs:
        feeds = bench_feeds(before, data, shapes)
        pair = [("before", before, feeds), ("after", after, feeds)]
        comparison.latency = bench_against(pair, threads=threads, runs=runs, bar=speedup_bar)
    return comparison


def bench_feeds(
    model: onnx.ModelProto, data: Dataset | None, shapes: dict[str, list[int]], batch: int = 1
) -> dict:
    """Inputs to time a model on: real samples when there is data, else seeded noise."""
    batch = fixed_batch(model) or batch
    if data is not None:
        return data.first(batch)
    return random_data(model, shapes, batch=batch).inputs


def _ratio(before: float | None, after: float | None) -> str:
    if not before or not after:
        return ""
    if before == after:
        return "unchanged"
    if 0.95 < after / before < 1.05:
        return f"{(after / before - 1) * 100:+.1f}%"
    return f"{before / after:.2f}x smaller" if after <= before else f"{after / before:.2f}x larger"


def _giga(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.3f} G"


def _mb(value: int) -> str:
    return f"{value / 1e6:.2f} MB"


def speed_change(speedup: float) -> str:
    """A latency ratio as people read it: "1.85x faster", or "1.02x slower" below 1."""
    if speedup >= 1:
        return f"{speedup:.2f}x faster"
    return f"{1 / speedup:.2f}x slower"
