"""Ranks chosen by measured output error: with data and a budget, the layers whose
factorisation costs the outputs most keep their full rank until the budget holds.

The selector proposes ranks from the spectra alone; this measures what each factorised
layer does to every output (SQNR against the original, alone) and reverts the worst
first, the search quantize runs for its FP32 fallback (report.budget).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.budget import Builder, fall_back, score, sensitivity
from onnxslim_kd.report.outputs import probe_roles

#: Samples every candidate model is scored on, and the ones layers are ranked on.
SCORE_SAMPLES = 64
RANKING_SAMPLES = 16


@dataclass
class Budget:
    """Outputs on `data` within `max_drop` (class outputs) and above `min_sqnr` (others)."""

    data: Dataset
    max_drop: float
    min_sqnr: float


@dataclass
class BudgetResult:
    """The model that holds the budget (else the best seen) and how it was found."""

    model: onnx.ModelProto
    reverted: list[str]
    score: dict
    sensitivity_sqnr_db: dict[str, float] = field(default_factory=dict)
    trail: list[dict] = field(default_factory=list)


def hold_budget(
    model: onnx.ModelProto, build: Builder, layers: list[str], budget: Budget
) -> BudgetResult:
    """Score the fully factorised model on the budget's data; if it misses the budget,
    revert the factorised `layers` by sensitivity until it holds."""
    data = budget.data
    evaluation = data.subset(SCORE_SAMPLES)
    reference = run(model, evaluation)
    _, roles = probe_roles(model, evaluation)

    def evaluate(candidate: onnx.ModelProto):
        outputs = run(candidate, evaluation)
        return score(reference, outputs, evaluation.labels, budget.max_drop, budget.min_sqnr, roles)

    factorised = build()
    first = evaluate(factorised)
    if first.ok or not layers:
        return BudgetResult(
            factorised, [], first.as_dict(), trail=[{"reverted": 0, **first.as_dict()}]
        )
    ranking = data.subset(RANKING_SAMPLES)
    order = sensitivity(build, layers, ranking, run(model, ranking), roles)
    found = fall_back(build, list(order), evaluate, (factorised, first))
    return BudgetResult(found.model, found.reverted, found.score, order, found.trail)
