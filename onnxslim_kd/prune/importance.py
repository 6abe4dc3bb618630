"""Channel importance criteria behind one interface (like onnxruntime's calibrators).

Each criterion scores the channels of every prunable space. Scores from each layer of
a space are divided by their mean before being averaged, and the result is divided by
its mean again, so spaces can be ranked against each other by `--global`.
"""

from __future__ import annotations

from abc import ABC
from typing import ClassVar

import numpy as np

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.prune.activations import channel_statistics
from onnxslim_kd.prune.analysis import Analysis


def normalized(scores: np.ndarray) -> np.ndarray:
    mean = float(np.nanmean(scores)) if np.isfinite(scores).any() else 0.0
    return scores / mean if mean > 0 else np.ones_like(scores)


def weight_rows(an: Analysis, root: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(channel indices, [channels, features] rows) of every weight indexed by `root`."""
    rows = []
    for item in an.slices:
        value = an.const(an.graph.node[item.node].input[item.input_index])
        if value is None or value.ndim < 2:
            continue
        offset = 0
        for seg in item.layout.segments:
            if an.spaces.find(seg.space) == root:
                window = [slice(None)] * value.ndim
                window[item.axis] = slice(offset, offset + seg.width)
                block = np.moveaxis(value[tuple(window)], item.axis, 0)
                rows.append(
                    (np.arange(seg.start, seg.stop), block.reshape(seg.stop - seg.start, -1))
                )
            offset += seg.width
    return rows


class Criterion(ABC):
    """Scores for each prunable space: higher means more important."""

    name: ClassVar[str]
    needs_data: ClassVar[bool] = False

    def scores(self, an: Analysis, roots: list[int], data: Dataset | None) -> dict[int, np.ndarray]:
        return {root: normalized(self.space_scores(an, root)) for root in roots}

    def space_scores(self, an: Analysis, root: int) -> np.ndarray:
        """Average of each weight's mean-normalised per-channel score."""
        size = an.spaces[root].size
        per_layer = []
        for channels, rows in weight_rows(an, root):
            full = np.full(size, np.nan)
            full[channels] = normalized(self.row_scores(rows))
            per_layer.append(full)
        if not per_layer:
            return np.ones(size)
        with np.errstate(all="ignore"):
            merged = np.nanmean(np.stack(per_layer), axis=0)
        return np.nan_to_num(merged, nan=1.0)

    def row_scores(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class L1(Criterion):
    name = "l1"

    def row_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.abs(rows).sum(axis=1, dtype=np.float64)


class L2(Criterion):
    name = "l2"

    def row_scores(self, rows: np.ndarray) -> np.ndarray:
        return np.sqrt(np.square(rows, dtype=np.float64).sum(axis=1))


class FPGM(Criterion):
    """Filters near the geometric median are replaceable by the others (He et al. 2019):
    a channel's score is its summed distance to all other channels' weights."""

    name = "fpgm"

    def row_scores(self, rows: np.ndarray) -> np.ndarray:
        rows = rows.astype(np.float64)
        squares = (rows**2).sum(axis=1)
        distances = squares[:, None] + squares[None, :] - 2 * rows @ rows.T
        return np.sqrt(np.maximum(distances, 0)).sum(axis=1)


class BatchNormGamma(Criterion):
    """|gamma| of BatchNormalization layers in the space (network slimming); spaces
    without an unfolded BN fall back to L1 and are reported as such."""

    name = "bn"

    def __init__(self) -> None:
        self.fallbacks: list[int] = []

    def space_scores(self, an: Analysis, root: int) -> np.ndarray:
        size = an.spaces[root].size
        gammas = []
        for item in an.slices:
            node = an.graph.node[item.node]
            if node.op_type != "BatchNormalization" or item.input_index != 1:
                continue
            value = np.abs(an.const(node.input[1]).astype(np.float64))
            offset = 0
            for seg in item.layout.segments:
                if an.spaces.find(seg.space) == root:
                    full = np.full(size, np.nan)
                    full[seg.start : seg.stop] = normalized(value[offset : offset + seg.width])
                    gammas.append(full)
                offset += seg.width
        if not gammas:
            self.fallbacks.append(root)
            return L1().space_scores(an, root)
        with np.errstate(all="ignore"):
            return np.nan_to_num(np.nanmean(np.stack(gammas), axis=0), nan=1.0)


class RandomScores(Criterion):
    """A seeded baseline: any criterion worth using must beat it."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def space_scores(self, an: Analysis, root: int) -> np.ndarray:
        return self.rng.random(an.spaces[root].size)


class ActivationCriterion(Criterion):
    """Data-driven: statistics of each space's activations on calibration data."""

    needs_data = True
    statistic: ClassVar[str]

    def scores(self, an: Analysis, roots: list[int], data: Dataset | None) -> dict[int, np.ndarray]:
        if data is None:
            raise InputError(f"criterion '{self.name}' needs calibration data (--data)")
        stats = channel_statistics(an, roots, data)
        return {
            root: normalized(stats[root][self.statistic]) for root in roots if root in stats
        } | {root: np.ones(an.spaces[root].size) for root in roots if root not in stats}


class APoZ(ActivationCriterion):
    """1 - average percentage of zeros after a ReLU-like activation (Hu et al. 2016)."""

    name = "apoz"
    statistic = "nonzero"


class MeanActivation(ActivationCriterion):
    name = "mean-act"
    statistic = "mean_abs"


CRITERIA: dict[str, type[Criterion]] = {
    c.name: c for c in (L1, L2, FPGM, BatchNormGamma, RandomScores, APoZ, MeanActivation)
}


def make_criterion(name: str, seed: int = 0) -> Criterion:
    if name not in CRITERIA:
        raise InputError(f"unknown criterion '{name}' (choose from {', '.join(CRITERIA)})")
    return RandomScores(seed) if name == "random" else CRITERIA[name]()
