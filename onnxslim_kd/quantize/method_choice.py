"""`--method auto`: the calibration method whose all-INT8 model stays closest to FP32 on
the held-out data.

Which range estimate is best depends on the model more than on any one tensor's own
error: clipping a detector's box coordinates lowers their quantization error and loses
detections, while MinMax spends a mobile net's activation grid on rare outliers
(`--method mse`, the least error per tensor, raised mobilenet_v2's agreement and
lowered the random detector's F1 in benchmarks/quantize's peer table of 2026-12-02).
So each method's ranges are built into an all-INT8 model and judged as the budget
judges a model (report.budget.score, every output) on the held-out data, and the best
is kept. Choosing per tensor by that measure would take a build per tensor and method.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.budget import Score, output_sqnr, score
from onnxslim_kd.report.outputs import output_roles

#: The methods `auto` compares, its first the one kept on a tie.
AUTO_METHODS = ("minmax", "mse", "percentile", "entropy")


@dataclass
class MethodChoice:
    """The method kept and how every candidate scored on the held-out data."""

    chosen: str
    samples: int
    scores: dict[str, dict]

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "samples": self.samples, "candidates": self.scores}


def describe_choice(record: dict) -> str:
    """One line for the log: each candidate's headline number, the chosen one first."""
    parts = [
        f"{method} {entry['metric']} {entry['candidate']:.4g}"
        for method, entry in sorted(
            record["candidates"].items(), key=lambda item: item[0] != record["chosen"]
        )
    ]
    return f"{record['chosen']} chosen on {record['samples']} held-out samples ({', '.join(parts)})"


def choose_method(
    model: onnx.ModelProto, candidates: dict[str, onnx.ModelProto], evaluation: Dataset,
    max_drop: float, min_sqnr: float,
) -> MethodChoice:  # fmt: skip
    """The candidate (method -> all-INT8 model of `model`) that scores best on
    `evaluation`: most outputs within the budget, then the least accuracy or agreement
    lost, then the highest worst-output SQNR; the earliest in `candidates` on a tie."""
    reference = run(model, evaluation)
    roles = output_roles(model, reference, evaluation.labels)
    judged: dict[str, tuple[Score, float]] = {}
    for method, candidate in candidates.items():
        outputs = run(candidate, evaluation)
        judged[method] = (
            score(reference, outputs, evaluation.labels, max_drop, min_sqnr, roles),
            output_sqnr(reference, outputs, roles),
        )
    chosen = min(judged, key=lambda method: _rank(*judged[method]))
    return MethodChoice(
        chosen,
        len(evaluation),
        {
            method: {
                "metric": s.metric, "output": s.output, "candidate": round(s.candidate, 5),
                "drop": None if s.drop is None else round(s.drop, 5), "ok": s.ok,
                "worst_sqnr_db": round(sqnr, 2),
            }
            for method, (s, sqnr) in judged.items()
        },
    )  # fmt: skip


def _rank(judged: Score, worst_sqnr: float) -> tuple[int, float, float]:
    """Smaller is better: outputs over budget, class-metric drop summed, -worst SQNR."""
    entries = judged.outputs.values()
    failing = sum(not entry["ok"] for entry in entries)
    drop = sum(entry["drop"] for entry in entries if entry["drop"] is not None)
    return failing, round(drop, 9), -worst_sqnr
