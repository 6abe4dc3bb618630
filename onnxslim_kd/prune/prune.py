"""Structured channel pruning of an ONNX graph: analyse, score, budget, rewrite."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import onnx

from onnxslim_kd.data import with_data_shapes
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.graph.equivalence import verified_rewrite
from onnxslim_kd.graph.io import resolve_shapes
from onnxslim_kd.graph.reshapes import constant_reshape_targets
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import output_differences, run
from onnxslim_kd.graph.walk import clone, node_label
from onnxslim_kd.prune.analysis import Analysis, analyze
from onnxslim_kd.prune.budget import Budget, estimated_macs, ratio_for_macs, select
from onnxslim_kd.prune.fold import compensate_removed, dead_spaces
from onnxslim_kd.prune.importance import BatchNormGamma, make_criterion
from onnxslim_kd.prune.plan import plan_record, planned_keep, read_plan
from onnxslim_kd.prune.rewrite import apply_keep
from onnxslim_kd.prune.spatial import downsample
from onnxslim_kd.prune.unfuse import standard_attention

#: Calibration samples on which mean compensation must beat none to be kept.
COMPENSATION_CHECK_SAMPLES = 64


@dataclass
class PruneOptions:
    """Options of the library, the CLI and the recipe pass (see `onnxslim-kd prune --help`).

    `plan` is a plan record or the path of a saved one.
    """

    ratio: float = 0.5
    target_macs: float | None = None
    criterion: str = "l1"
    global_ranking: bool = False
    max_ratio: float = 0.8
    round_to: int = 8
    exclude: list[str] = field(default_factory=list)
    keep_stem: bool = True
    seed: int = 0
    plan: dict | str | None = None
    compensate: bool = True  # fold removed channels' constant/mean output into the next bias
    downsample: int = 1  # run everything after the stem conv at 1/downsample resolution
    prune_norms: bool = False  # also prune channels a LayerNorm normalises over (not exact)

    def __post_init__(self) -> None:
        if isinstance(self.plan, str):
            self.plan = read_plan(self.plan)
        if not 0 <= self.ratio < 1:
            raise InputError(f"ratio must be in [0, 1), got {self.ratio}")
        if self.target_macs is not None and not 0 < self.target_macs <= 1:
            raise InputError(f"target_macs must be in (0, 1], got {self.target_macs}")
        if not 0 < self.max_ratio < 1:
            raise InputError(f"max_ratio must be in (0, 1), got {self.max_ratio}")
        if self.round_to < 1:
            raise InputError(f"round_to must be >= 1, got {self.round_to}")
        if self.downsample < 1:
            raise InputError(f"downsample must be >= 1, got {self.downsample}")
        make_criterion(self.criterion)


@dataclass
class Group:
    """One coupled channel group and what happened to it."""

    id: str
    nodes: list[str]
    size: int
    kept: int
    status: str  # pruned | unchanged | skipped
    reasons: list[str] = field(default_factory=list)
    exact: bool = True  # False: pruned through a LayerNorm, the rest of the channels change
    unit: int = 1  # channels per element (an attention head's size; 1 for plain channels)


@dataclass
class PruneSummary:
    criterion: str
    groups: list[Group]
    params_before: int
    params_after: int
    macs_before: int | None
    macs_after: int | None
    warnings: list[str]
    plan: dict
    spatial: dict | None = None

    def as_dict(self) -> dict:
        record = asdict(self)
        record["groups_pruned"] = sum(g.status == "pruned" for g in self.groups)
        record["groups_skipped"] = sum(g.status == "skipped" for g in self.groups)
        return record


def prune(
    model: onnx.ModelProto,
    options: PruneOptions,
    data: Dataset | None = None,
    shapes: dict[str, list[int]] | None = None,
) -> tuple[onnx.ModelProto, PruneSummary]:
    """Remove channels (and resolution, with `downsample`) per `options`; return the pruned
    model and what was done. `target_macs` counts both against the input model's MACs.

    When nothing changes (ratio 0, everything blocked) the input comes back as is.
    """
    canonical, _ = canonicalize(model)
    concrete = resolve_shapes(canonical, with_data_shapes(canonical, data, shapes), batch=1)
    original = model_stats(canonical, concrete)
    canonical, unfused = standard_attention(canonical, concrete)
    spatial = None
    if options.downsample > 1:
        canonical, spatial = downsample(canonical, options.downsample, concrete)
    resized = spatial is not None and spatial.skipped is None
    an = analyze(canonical, concrete)
    warnings = unfused + _apply_exclusions(an, options) + _lossy_spaces(an, options.prune_norms)
    if spatial is not None and spatial.skipped:
        warnings.append(f"downsample skipped: {spatial.skipped}")
    prunable = [r for r in an.spaces.roots() if not an.spaces[r].blocked]
    before = model_stats(canonical, concrete) if resized else original
    macs = _macs_by_index(canonical, before.macs_per_node)
    if options.plan is not None:
        kept = _kept_from_plan(an, prunable, options.plan, warnings)
    else:
        criterion = make_criterion(options.criterion, options.seed)
        scores = criterion.scores(an, prunable, data)
        if isinstance(criterion, BatchNormGamma) and criterion.fallbacks:
            warnings.append(
                f"{len(criterion.fallbacks)} groups have no BatchNormalization: L1 used"
            )
        budget = Budget(options.ratio, options.global_ranking, options.max_ratio, options.round_to)
        if options.target_macs is None:
            kept = select(an, scores, budget)
        elif (share := options.target_macs * original.macs / max(before.macs, 1)) >= 1:
            kept = {}  # the resolution change alone reaches the target
        else:
            budget, kept = ratio_for_macs(an, scores, budget, macs, share)
            reached = estimated_macs(an, macs, kept) / max(original.macs, 1)
            if reached > options.target_macs + 1e-9:
                warnings.append(f"MACs target {options.target_macs} not reachable: {reached:.3f}")
    by_root = _groups(an, kept)
    groups = list(by_root.values())
    record = plan_record(
        {g.id: {"size": g.size, "keep": kept[r].tolist(), "nodes": g.nodes}
         for r, g in by_root.items() if r in kept},
        options.criterion,
    )  # fmt: skip
    if not any(g.status == "pruned" for g in groups):
        out = canonical if resized else clone(model)
        after = before
    else:
        out = _rewritten(an, kept, concrete, data, options.compensate, warnings)
        out = _constant_targets(out, concrete, warnings)
        after = model_stats(out, concrete)
    summary = PruneSummary(
        options.criterion, groups, original.params, after.params, original.macs, after.macs,
        warnings, record, None if spatial is None else spatial.as_dict(),
    )  # fmt: skip
    return out, summary


def _rewritten(
    an: Analysis, kept: dict[int, np.ndarray], shapes: dict, data: Dataset | None,
    compensate: bool, warnings: list[str],
) -> onnx.ModelProto:  # fmt: skip
    """The pruned model; with data, mean compensation only where it measured closer to the
    unpruned model on the calibration data (it helps CNNs, and can hurt transformers)."""
    if not compensate or (data is None and not dead_spaces(an, kept)):
        return apply_keep(an, kept)
    if data is None:
        warnings += compensate_removed(an, kept, shapes, data)
        return apply_keep(an, kept)
    plain = apply_keep(an, kept)
    sample = data.subset(COMPENSATION_CHECK_SAMPLES)
    reference = run(an.model, sample)  # before compensation edits the analysed biases
    notes = compensate_removed(an, kept, shapes, data)
    compensated = apply_keep(an, kept)
    plain_db, compensated_db = (
        _mean_sqnr(output_differences(reference, run(candidate, sample)))
        for candidate in (plain, compensated)
    )
    if compensated_db >= plain_db:
        warnings += notes
        return compensated
    warnings.append(
        f"mean compensation not applied: it measured further from the unpruned model on "
        f"the calibration data (SQNR {compensated_db:.1f} dB vs {plain_db:.1f} dB without)"
    )
    return plain


def _constant_targets(model: onnx.ModelProto, shapes: dict, warnings: list[str]) -> onnx.ModelProto:
    """`model` with its run-time Reshape targets made constant (graph/reshapes.py) where
    that computes the same outputs at two batch sizes; the head split and merge that
    pruning resized are such Reshapes (benchmarks/prune/vit.py)."""
    model, count, failure = verified_rewrite(model, constant_reshape_targets, shapes)
    if failure is not None:
        warnings.append(
            f"Reshape targets kept as computed at run time: the constant ones {failure}"
        )
    elif count:
        warnings.append(f"{count} Reshape targets computed at run time made constant")
    return model


def _mean_sqnr(differences: dict) -> float:
    return float(np.mean([d.sqnr_db for d in differences.values()]))


def _apply_exclusions(an: Analysis, options: PruneOptions) -> list[str]:
    """Block the spaces of excluded nodes (and of the stem conv); warn on dead patterns."""
    warnings = []
    graph_inputs = {i.name for i in an.graph.input}
    for pattern in options.exclude:
        hits = [
            i for i, node in enumerate(an.graph.node)
            if pattern in (node.name, node.op_type) or re.fullmatch(pattern, node.name or "")
        ]  # fmt: skip
        if not hits:
            warnings.append(f"exclusion '{pattern}' matches no node")
        for index in hits:
            _block_node(an, index, f"excluded by '{pattern}'")
    if options.keep_stem:
        for index, node in enumerate(an.graph.node):
            if node.op_type == "Conv" and node.input[0] in graph_inputs:
                if options.prune_norms and _normalised(an, node.output[0]):
                    continue  # a patch embedding: its channels are the residual width
                _block_node(an, index, "stem conv kept (keep_stem)")
    return warnings


def _normalised(an: Analysis, name: str) -> bool:
    """Whether a LayerNorm normalises over the channels of tensor `name`."""
    layout = an.layout(name)
    return layout is not None and any(
        an.spaces[an.spaces.find(seg.space)].lossy for seg in layout.segments
    )


def _lossy_spaces(an: Analysis, allowed: bool) -> list[str]:
    """Block the spaces pruning cannot remove exactly, unless allowed; warn when it is."""
    lossy = [r for r in an.spaces.roots() if an.spaces[r].lossy and not an.spaces[r].blocked]
    if not allowed:
        for root in lossy:
            reason = f"{an.spaces[root].lossy[0]}: pruning them is not exact (prune_norms)"
            an.spaces.block(root, reason)
        return []
    if not lossy:
        return []
    return [
        f"{len(lossy)} groups pruned through a LayerNormalization: its statistics change, "
        "so the model needs fine-tuning (distill) after"
    ]


def _block_node(an: Analysis, index: int, reason: str) -> None:
    """Keep the channels a node produces (its inputs may still shrink, as in Torch-Pruning's
    ignored layers)."""
    for name in an.graph.node[index].output:
        if (lay := an.layout(name)) is not None:
            an.block(lay, reason)


def _macs_by_index(model: onnx.ModelProto, per_label: dict[str, int]) -> dict[int, int]:
    return {
        i: per_label[node_label(node, i)]
        for i, node in enumerate(model.graph.node)
        if node_label(node, i) in per_label
    }


def _kept_from_plan(
    an: Analysis, prunable: list[int], plan: dict, warnings: list[str]
) -> dict[int, np.ndarray]:
    entries = plan.get("groups", {})
    kept = {}
    for root in prunable:
        space = an.spaces[root]
        if space.origin in entries:
            kept[root] = planned_keep(space.origin, entries[space.origin], space.size, space.groups)
    unknown = set(entries) - {an.spaces[r].origin for r in prunable}
    if unknown:
        warnings.append(f"plan groups not prunable in this model: {', '.join(sorted(unknown))}")
    return kept


def _groups(an: Analysis, kept: dict[int, np.ndarray]) -> dict[int, Group]:
    """Every channel group of the model (by root space) with its decision."""
    members: dict[int, list[str]] = {}
    for space, indices in an.origins.items():
        root = an.spaces.find(space)
        members.setdefault(root, []).extend(node_label(an.graph.node[i], i) for i in indices)
    groups = {}
    for root in an.spaces.roots():
        space = an.spaces[root]
        if root not in members:
            continue  # untracked inputs: never prunable, not a group of the model
        count = len(kept[root]) if root in kept else space.size
        status = "pruned" if count < space.size else "unchanged"
        if space.blocked:
            status = "skipped"
        groups[root] = Group(
            space.origin, members[root], space.size, count, status, space.blocked,
            exact=not space.lossy, unit=space.unit,
        )  # fmt: skip
    return groups
