"""Ranks chosen by measured output error: with data and a budget, the layers whose
factorisation costs the outputs most keep their full rank until the budget holds.

The selector proposes ranks from the spectra alone; this measures what each factorised
layer does to every output (SQNR against the original, alone) and reverts the worst
first, the search quantize runs for its FP32 fallback (report.budget).
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.report.budget import Builder, Held
from onnxslim_kd.report.budget import hold_budget as hold

#: Samples every candidate model is scored on, and the ones layers are ranked on.
SCORE_SAMPLES = 64
RANKING_SAMPLES = 16


@dataclass
class Budget:
    """Outputs on `data` within `max_drop` (class outputs) and above `min_sqnr` (others)."""

    data: Dataset
    max_drop: float
    min_sqnr: float


def hold_budget(model: onnx.ModelProto, build: Builder, layers: list[str], budget: Budget) -> Held:
    """Score the fully factorised model on the budget's data; if it misses the budget,
    revert the factorised `layers` by sensitivity until it holds."""
    data = budget.data
    return hold(model, build(), build, layers, data.subset(SCORE_SAMPLES),
                data.subset(RANKING_SAMPLES), budget.max_drop, budget.min_sqnr)  # fmt: skip
