"""An accuracy budget for a lossy pass: score the change, rank layers by sensitivity,
revert the most sensitive ones until the budget holds.

quantize (a layer reverts to FP32) and decompose (a layer keeps its full-rank weights)
share it. The drop is measured the strongest way the data allows: accuracy against
labels, else top-1 agreement with the reference for class-like outputs, else an
output-SQNR floor. A layer's sensitivity is the output SQNR against the reference when
only that layer is changed, so it includes everything the error does downstream; the
least SQNR reverts first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.progress import progress
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.outputs import OutputRoles, output_roles

Outputs = dict[str, np.ndarray]
#: Builds the changed model with the layers named in `exclude` left as they were (or with
#: `only` the layers named there changed).
Builder = Callable[..., onnx.ModelProto]


@dataclass
class Score:
    """How far a changed model is from the reference: every output on its own metric; the
    headline fields are those of the worst output (the first failing one, else the first)."""

    metric: str  # accuracy, agreement or sqnr, of `output`
    reference: float | None
    candidate: float
    drop: float | None
    ok: bool
    output: str = ""
    outputs: dict[str, dict] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def score(
    reference: Outputs, candidate: Outputs, labels: np.ndarray | None, max_drop: float,
    min_sqnr: float, roles: OutputRoles,
) -> Score:  # fmt: skip
    """Judge every output: accuracy on the labels' output, top-1 agreement (along the
    class axis) on other class-like ones, SQNR against `min_sqnr` on the rest."""
    entries = {}
    for name, ref in reference.items():
        cand = candidate[name]
        if name == roles.label_output and labels is not None:
            axis = roles.class_axes.get(name)
            before, after = accuracy(ref, labels, axis), accuracy(cand, labels, axis)
            entries[name] = _entry("accuracy", before, after, before - after, max_drop)
        elif name in roles.class_axes:
            agreement = roles.fidelity(name, ref, cand).top1_agreement
            entries[name] = _entry("agreement", 1.0, agreement, 1.0 - agreement, max_drop)
        else:
            sqnr = roles.fidelity(name, ref, cand).sqnr_db
            entries[name] = {"metric": "sqnr", "reference": None, "candidate": sqnr,
                             "drop": None, "ok": sqnr >= min_sqnr}  # fmt: skip
    worst = next((n for n, e in entries.items() if not e["ok"]), next(iter(entries)))
    return Score(**entries[worst], output=worst, outputs=entries)


def _entry(metric: str, reference: float, candidate: float, drop: float, max_drop: float) -> dict:
    return {"metric": metric, "reference": reference, "candidate": candidate, "drop": drop,
            "ok": drop <= max_drop + 1e-9}  # fmt: skip


def output_sqnr(reference: Outputs, candidate: Outputs, roles: OutputRoles) -> float:
    """The worst output's SQNR in dB (a concatenation's worst part, see report.outputs)."""
    return min(roles.fidelity(k, reference[k], candidate[k]).sqnr_db for k in reference)


def sensitivity(
    build: Builder, candidates: list[str], data: Dataset, reference: Outputs, roles: OutputRoles
) -> dict[str, float]:
    """Output SQNR (dB) of the model with only each candidate layer changed, worst first."""
    sqnr = {
        name: output_sqnr(reference, run(build(only=[name]), data), roles)
        for name in progress(candidates, "sensitivity", total=len(candidates))
    }
    return dict(sorted(sqnr.items(), key=lambda item: item[1]))


@dataclass
class Fallback:
    """The model that met the budget (else the one with nothing reverted), the layers it
    reverted, its score, and one record per attempt, by the number of layers reverted."""

    model: onnx.ModelProto
    reverted: list[str]
    score: dict
    trail: list[dict]


def fall_back(
    build: Builder,
    order: list[str],
    evaluate: Callable[[onnx.ModelProto], Score],
    first: tuple[onnx.ModelProto, Score] | None = None,
) -> Fallback:
    """The fewest first layers of `order` to revert for an ok score.

    Galloping search: revert 0, 1, 2, 4, ... layers until the score is ok (at most all of
    them), then bisect between the last miss and that hit: about 2 log2(k) builds and runs
    for k reverted layers instead of k + 1 (mobilenet_v2, never ok: 8 instead of 54). It
    takes the score to improve as more of the ranking is reverted; every attempt is kept
    in the trail. When none is ok, not even with every layer reverted, reverting is not
    what the loss needs (for INT8: the activations' quantization loses it), so the model
    with nothing reverted is returned rather than whichever partial attempt scored best on
    the evaluation samples' noise (mobilenet_v2 on 26 held-out samples picked a different
    one each run).
    `first` is the model with nothing reverted and its score, when already measured.
    """
    attempts: dict[int, tuple[onnx.ModelProto, Score]] = {} if first is None else {0: first}

    def attempt(count: int) -> bool:
        if count not in attempts:
            model = build(exclude=order[:count])
            attempts[count] = (model, evaluate(model))
        return attempts[count][1].ok

    missed, count = -1, 0
    while not attempt(count) and count < len(order):
        missed, count = count, min(max(1, 2 * count), len(order))
    if attempts[count][1].ok:
        while count - missed > 1:  # missed fails, count holds
            middle = (missed + count) // 2
            missed, count = (missed, middle) if attempt(middle) else (middle, count)
    trail = [{"reverted": k, **attempts[k][1].as_dict()} for k in sorted(attempts)]
    chosen = count if attempts[count][1].ok else 0
    return Fallback(attempts[chosen][0], order[:chosen], attempts[chosen][1].as_dict(), trail)


@dataclass
class Held:
    """The model that holds the budget (else the unreverted one) and how it was found: the
    layers reverted, its score, the sensitivity ranking (when one was needed), the trail."""

    model: onnx.ModelProto
    reverted: list[str]
    score: dict
    sensitivity_sqnr_db: dict[str, float]
    trail: list[dict]


def hold_budget(
    reference_model: onnx.ModelProto, changed: onnx.ModelProto, build: Builder,
    candidates: list[str], evaluation: Dataset, ranking: Dataset, max_drop: float,
    min_sqnr: float,
) -> Held:  # fmt: skip
    """Score `changed` (every candidate changed) against `reference_model` on `evaluation`;
    if it misses the budget, rank the candidates on `ranking` and revert the fewest most
    sensitive ones until it holds. Nothing is ranked when `changed` holds it."""
    reference = run(reference_model, evaluation)
    roles = output_roles(reference_model, reference, evaluation.labels)

    def evaluate(candidate: onnx.ModelProto) -> Score:
        outputs = run(candidate, evaluation)
        return score(reference, outputs, evaluation.labels, max_drop, min_sqnr, roles)

    first = evaluate(changed)
    if first.ok or not candidates:
        return Held(changed, [], first.as_dict(), {}, [{"reverted": 0, **first.as_dict()}])
    order = sensitivity(build, candidates, ranking, run(reference_model, ranking), roles)
    found = fall_back(build, list(order), evaluate, (changed, first))
    return Held(found.model, found.reverted, found.score, order, found.trail)
