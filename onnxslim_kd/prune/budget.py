"""How many channels each space keeps, and which: uniform or global ranking, rounding to
SIMD-friendly multiples, per-group equality for grouped convs, and MACs targets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import kept_positions


@dataclass
class Budget:
    """`ratio`: fraction of channels removed; `global_ranking` ranks all spaces together,
    each capped at `max_ratio`; kept counts are rounded to multiples of `round_to`."""

    ratio: float = 0.5
    global_ranking: bool = False
    max_ratio: float = 0.8
    round_to: int = 8


def rounded_keep(size: int, keep: int, round_to: int, groups: int = 1, unit: int = 1) -> int:
    """Kept count: at least one per group, a multiple of `round_to` channels when the space
    allows (an element of `unit` channels, a head, counts as `unit`)."""
    step = math.lcm(max(round_to // unit, 1), groups)
    if size <= step:
        return size
    return min(size, max(step, step * round(keep / step)))


def choose(scores: np.ndarray, keep: int, groups: int) -> np.ndarray:
    """Indices of the `keep` best channels, the same number from each group."""
    if groups == 1:
        return np.sort(np.argsort(-scores, kind="stable")[:keep])
    per_group = len(scores) // groups
    each = max(1, keep // groups)
    picks = [
        g * per_group
        + np.argsort(-scores[g * per_group : (g + 1) * per_group], kind="stable")[:each]
        for g in range(groups)
    ]
    return np.sort(np.concatenate(picks))


def removal_counts(an: Analysis, scores: dict[int, np.ndarray], budget: Budget) -> dict[int, int]:
    """Channels to remove per space before rounding."""
    if not budget.global_ranking:
        return {root: int(len(s) * budget.ratio) for root, s in scores.items()}
    cap = {root: int(len(s) * budget.max_ratio) for root, s in scores.items()}
    entries = sorted((float(v), root) for root, s in scores.items() for v in s)
    target = int(sum(len(s) for s in scores.values()) * budget.ratio)
    removed = dict.fromkeys(scores, 0)
    for _, root in entries:
        if target <= 0:
            break
        if removed[root] < cap[root]:
            removed[root] += 1
            target -= 1
    return removed


def select(an: Analysis, scores: dict[int, np.ndarray], budget: Budget) -> dict[int, np.ndarray]:
    """Kept channel indices per prunable space."""
    kept = {}
    for root, remove in removal_counts(an, scores, budget).items():
        space = an.spaces[root]
        size = space.size
        keep = rounded_keep(size, size - remove, budget.round_to, space.groups, space.unit)
        chosen = choose(scores[root], keep, space.groups)
        kept[root] = _cover_sub_ranges(an, root, chosen, scores[root])
    return kept


def _cover_sub_ranges(
    an: Analysis, root: int, chosen: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """Split/Slice outputs must keep at least one channel: add each empty range's best."""
    extra = []
    for lay in an.layouts.values():
        for seg in lay.segments:
            if an.spaces.find(seg.space) != root:
                continue
            if not ((chosen >= seg.start) & (chosen < seg.stop)).any():
                extra.append(seg.start + int(np.argmax(scores[seg.start : seg.stop])))
    return np.union1d(chosen, extra).astype(np.int64) if extra else chosen


def estimated_macs(an: Analysis, macs: dict[int, int], kept: dict[int, np.ndarray]) -> float:
    """MACs after pruning, scaling each layer by its kept input and output fractions."""
    lookup = keep_lookup(an, kept)
    total = 0.0
    for index, base in macs.items():
        source, out = an.node_layouts.get(index, (None, None))
        fraction = 1.0
        for lay in (out,) if source is out else (source, out):
            if lay is not None:
                fraction *= len(kept_positions(lay, lookup)) / lay.size
        total += base * fraction
    return total


def keep_lookup(an: Analysis, kept: dict[int, np.ndarray]):
    """Kept channels of any space (all of them when it is not pruned)."""

    def lookup(space: int) -> np.ndarray:
        root = an.spaces.find(space)
        return kept[root] if root in kept else np.arange(an.spaces[root].size)

    return lookup


def ratio_for_macs(
    an: Analysis,
    scores: dict[int, np.ndarray],
    budget: Budget,
    macs: dict[int, int],
    target_fraction: float,
) -> tuple[Budget, dict[int, np.ndarray]]:
    """Bisect the removal ratio until the estimated MACs fall to `target_fraction`."""
    original = sum(macs.values())
    low, high = 0.0, budget.max_ratio if budget.global_ranking else 0.95
    strongest = Budget(high, budget.global_ranking, budget.max_ratio, budget.round_to)
    best = (strongest, select(an, scores, strongest))  # the closest we get if unreachable
    for _ in range(14):
        middle = (low + high) / 2
        trial = Budget(middle, budget.global_ranking, budget.max_ratio, budget.round_to)
        kept = select(an, scores, trial)
        if estimated_macs(an, macs, kept) <= target_fraction * original:
            best, high = (trial, kept), middle
        else:
            low = middle
    return best
