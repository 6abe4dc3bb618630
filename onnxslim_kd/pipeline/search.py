"""Search the compression strength that reaches a speed-up within an accuracy budget.

Each candidate runs the whole default recipe (prune to a MACs fraction -> decompose where
it measurably pays -> distill -> quantize) and is measured like `check` measures: speed-up
as the ratio of interleaved medians on this machine, quality as test accuracy (or top-1
agreement with the original without labels). Strengths are tried from gentle to strong;
the search stops at the first candidate that meets the target within budget, or at the
first one over budget (stronger ones only lose more), after one bisection step between
the last good and the first bad strength.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.pipeline.checkpoint import Checkpoints
from onnxslim_kd.pipeline.runner import CompressResult, compress
from onnxslim_kd.report.gate import accuracy_drop

#: MACs fractions kept by the pruning stage, gentle to strong; 1.0 (no pruning, so no
#: distillation either: decompose where faster and quantize) is the safe first step.
STRENGTHS = (1.0, 0.5, 0.3, 0.2, 0.13, 0.08)


def default_recipe(keep_macs: float | None, distill_epochs: int = 30) -> list[dict[str, Any]]:
    """prune -> decompose (only where measured faster) -> distill (if torch) -> quantize.

    Without torch there is no fine-tune to recover what pruning costs, so nothing is pruned.
    """
    recipe: list[dict[str, Any]] = []
    prunes = keep_macs is not None and keep_macs < 1
    distills = prunes and importlib.util.find_spec("torch") is not None
    if distills:
        recipe.append({"name": "prune", "target_macs": keep_macs, "global_ranking": True})
    recipe.append({"name": "decompose", "energy": 0.95, "measure": True})
    if distills:
        recipe.append({"name": "distill", "epochs": distill_epochs, "lr": 1e-3,
                       "augment_shift": 2, "patience": distill_epochs})  # fmt: skip
    recipe.append({"name": "quantize"})
    return recipe


@dataclass
class Candidate:
    """One strength tried: its measured speed-up and quality."""

    label: str
    keep_macs: float
    speedup: float
    quality: float
    drop: float
    within_budget: bool
    result: CompressResult = field(repr=False)

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "keep_macs": self.keep_macs,
            "speedup": round(self.speedup, 3),
            "quality": round(self.quality, 4),
            "drop": round(self.drop, 4),
            "within_budget": self.within_budget,
        }


@dataclass
class SearchResult:
    candidates: list[Candidate]
    chosen: Candidate
    met: bool  # the chosen candidate is within the accuracy budget
    target_speedup: float
    max_drop: float

    def as_dict(self) -> dict:
        return {
            "target_speedup": self.target_speedup,
            "max_drop": self.max_drop,
            "met_budget": self.met,
            "reached_target": self.chosen.speedup >= self.target_speedup,
            "chosen": self.chosen.label,
            "candidates": [c.as_dict() for c in self.candidates],
        }


def search(
    model: onnx.ModelProto,
    data: Dataset,
    eval_data: Dataset | None,
    *,
    target_speedup: float,
    max_drop: float,
    distill_epochs: int = 30,
    bench_runs: int = 50,
    bench_batch: int = 1,
    threads: int | None = None,
    work_dir: Path | None = None,
    strengths: tuple[float, ...] = STRENGTHS,
) -> SearchResult:
    """Try strengths until the target is met within budget; return every candidate."""
    tried: list[Candidate] = []

    def attempt(keep: float) -> Candidate:
        checkpoints = Checkpoints(work_dir, model, data) if work_dir else None
        result = compress(
            model, default_recipe(keep, distill_epochs), data=data, eval_data=eval_data,
            threads=threads, bench_runs=bench_runs, bench_batch=bench_batch,
            checkpoints=checkpoints,
        )  # fmt: skip
        drop, _ = accuracy_drop(result.comparison)
        drop = 0.0 if drop is None else drop
        base = result.comparison.accuracy_before or 1.0
        label = "no pruning" if keep >= 1 else f"MACs x{keep:.2f}"
        speedup = result.comparison.latency.latencies[-1].speedup
        candidate = Candidate(label, keep, speedup, base - drop, drop, drop <= max_drop, result)
        tried.append(candidate)
        return candidate

    good: Candidate | None = None
    for keep in strengths:
        candidate = attempt(keep)
        if not candidate.within_budget:
            if good is not None:
                attempt((good.keep_macs * keep) ** 0.5)  # one bisection step, geometric
            break
        good = candidate
        if candidate.speedup >= target_speedup:
            break
    within = [c for c in tried if c.within_budget]
    chosen = max(within, key=lambda c: c.speedup) if within else min(tried, key=lambda c: c.drop)
    return SearchResult(tried, chosen, bool(within), target_speedup, max_drop)
