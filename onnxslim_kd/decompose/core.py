"""The library function: choose ranks, keep only factorisations that pay, rewrite the graph."""

from __future__ import annotations

import time
from collections.abc import Iterable

import onnx
from threadpoolctl import threadpool_limits

from onnxslim_kd.decompose.budget import Budget, hold_budget
from onnxslim_kd.decompose.candidates import METHODS, find_layers
from onnxslim_kd.decompose.layer import Layer, Replacement
from onnxslim_kd.decompose.measure import MIN_SPEEDUP, measure_speedup
from onnxslim_kd.decompose.ranks import Ranks, RankSelector, make_selector
from onnxslim_kd.decompose.summary import DecomposeSummary, LayerDecision
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import resolve_shapes
from onnxslim_kd.graph.names import NameScope
from onnxslim_kd.graph.replace import replace_nodes
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.graph.stats import macs_per_node
from onnxslim_kd.graph.walk import clone


def decompose(
    model: onnx.ModelProto,
    selector: RankSelector | None = None,
    *,
    method: str = "auto",
    measure: bool = False,
    exclude: Iterable[str] = (),
    shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
    budget: Budget | None = None,
) -> tuple[onnx.ModelProto, DecomposeSummary]:
    """Factorise every Gemm/MatMul/Conv layer where it pays; never mutates `model`.

    A layer is factorised only when its rounded ranks cut its MACs (break-even), with
    `measure` when onnxruntime runs the factorised form faster at the layer's real input
    shape (dynamic axis 0 = `batch`, other dynamic dims from `shapes`), and with a
    `budget` when the outputs on its data stay within it (see decompose.budget).
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    # OpenBLAS threads spin-wait on the many small eigendecompositions: single-threaded,
    # ResNet-50 decomposes in 3.4 s instead of 33 s on a busy 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        out, summary = _decompose(
            model, selector or make_selector(), method, measure, exclude, shapes, batch, budget
        )
    summary.seconds = time.perf_counter() - start
    return out, summary


def _decompose(
    model: onnx.ModelProto,
    selector: RankSelector,
    method: str,
    measure: bool,
    exclude: Iterable[str],
    shapes: dict[str, list[int]] | None,
    batch: int,
    budget: Budget | None,
) -> tuple[onnx.ModelProto, DecomposeSummary]:
    known = static_shapes(model, resolve_shapes(model, shapes or {}, batch))
    model_macs = sum(macs_per_node(model, known).values())
    found = find_layers(model, known, method, exclude)
    layers = [item for item in found if isinstance(item, Layer)]
    chosen = dict(zip(map(id, layers), selector.choose(layers, model_macs), strict=True))
    names = NameScope(model)
    decisions: list[LayerDecision] = []
    replacements: dict[str, Replacement] = {}  # by layer name
    targets: dict[str, str] = {}  # layer name -> the first output of the node it replaces
    for item in found:
        if isinstance(item, LayerDecision):
            decisions.append(item)
            continue
        decision, replacement = _decide(model, item, chosen[id(item)], names, known, measure)
        decisions.append(decision)
        if replacement is not None:
            replacements[item.name], targets[item.name] = replacement, item.node.output[0]

    def build(exclude: Iterable[str] = (), only: Iterable[str] | None = None) -> onnx.ModelProto:
        """The model with the factorisations of `replacements` (all, or `only`) but `exclude`."""
        keep = set(replacements if only is None else only) - set(exclude)
        out = clone(model)
        chosen = {
            targets[n]: (r.nodes, r.initializers) for n, r in replacements.items() if n in keep
        }
        replace_nodes(out.graph, chosen)
        return out

    summary = DecomposeSummary(selector.describe(), method, measure, model_macs, model_macs,
                               layers=decisions)  # fmt: skip
    if budget is None:
        out = build()
    else:
        held = hold_budget(model, build, list(replacements), budget)
        out, summary.budget, summary.fallback = held.model, held.score, held.trail
        summary.kept_full_rank = held.reverted
        for decision in decisions:
            if decision.name in held.reverted:
                sqnr = held.sensitivity_sqnr_db[decision.name]
                decision.decomposed, decision.macs_after = False, decision.macs_before
                decision.reason = (
                    f"kept full rank for the budget (alone: output SQNR {sqnr:.1f} dB)"
                )
    summary.macs_after -= sum(d.macs_before - d.macs_after for d in decisions if d.decomposed)
    return out, summary


def _decide(
    model: onnx.ModelProto,
    layer: Layer,
    ranks: Ranks,
    names: NameScope,
    shapes: dict[str, list[int]],
    measure: bool,
) -> tuple[LayerDecision, Replacement | None]:
    """The decision for one layer, and its replacement when it is factorised."""
    after = layer.factorised_macs(ranks)
    decision = LayerDecision(
        layer.name, layer.node.op_type, layer.describe(), kind=layer.kind, ranks=list(ranks),
        macs_before=layer.macs, macs_after=layer.macs,
    )  # fmt: skip
    if after >= layer.macs:
        decision.reason = (
            f"rank {'x'.join(map(str, ranks))} at or beyond break-even "
            f"({after / 1e6:.2f}M >= {layer.macs / 1e6:.2f}M MACs)"
        )
        return decision, None
    replacement = layer.build(ranks, names)
    if measure:
        decision.speedup = round(measure_speedup(model, layer, replacement, shapes), 3)
        if decision.speedup < MIN_SPEEDUP:
            decision.reason = f"measured {decision.speedup:.2f}x, below {MIN_SPEEDUP}x"
            return decision, None
    decision.decomposed, decision.macs_after = True, after
    return decision, replacement
