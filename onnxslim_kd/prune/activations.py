"""Per-channel activation statistics gathered with onnxruntime on calibration data."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import clone, producers
from onnxslim_kd.prune.analysis import Analysis

#: Ops after which a zero means "inactive", the tensors APoZ should look at.
RELU_LIKE = ops_where(zero_is_inactive=True)


def observed_tensors(an: Analysis, roots: list[int]) -> dict[int, str]:
    """For each space, one tensor carrying exactly its channels, preferring ReLU outputs
    and, for attention heads, the heads' outputs (softmax(Q K^T) V: a head that adds
    little there adds little to the block, whatever its Q and K look like)."""
    made_by = producers(an.graph)
    chosen: dict[int, tuple[int, str]] = {}
    for name, lay in an.layouts.items():
        if len(lay.segments) != 1 or lay.segments[0].repeat != 1 or name not in made_by:
            continue
        root = an.spaces.find(lay.segments[0].space)
        if root not in roots or not an.is_whole(lay.segments[0]):
            continue
        rank = _preference(an, made_by[name])
        if root not in chosen or rank > chosen[root][0]:
            chosen[root] = (rank, name)
    return {root: name for root, (_, name) in chosen.items()}


def _preference(an: Analysis, node: onnx.NodeProto) -> int:
    """2 for a product of two activations fed by a Softmax (a head's output), 1 for a
    ReLU-like output, 0 otherwise."""
    if node.op_type == "MatMul" and all(an.const(name) is None for name in node.input):
        first = an.writers.get(node.input[0])
        if first is not None and first.op_type == "Softmax":
            return 2
    return int(node.op_type in RELU_LIKE)


@dataclass
class ChannelStats:
    """Running per-position statistics along one tensor's channel axis."""

    count: int = 0
    total: np.ndarray | float = 0.0
    total_abs: np.ndarray | float = 0.0
    nonzero: np.ndarray | float = 0.0
    low: np.ndarray | float = np.inf
    high: np.ndarray | float = -np.inf

    def add(self, rows: np.ndarray) -> None:
        """Fold in a [channels, values] block."""
        self.count += rows.shape[1]
        self.total = self.total + rows.sum(axis=1, dtype=np.float64)
        self.total_abs = self.total_abs + np.abs(rows).sum(axis=1, dtype=np.float64)
        self.nonzero = self.nonzero + (rows != 0).sum(axis=1)
        self.low = np.minimum(self.low, rows.min(axis=1))
        self.high = np.maximum(self.high, rows.max(axis=1))


def probe_channels(
    model: onnx.ModelProto, axes: dict[str, int], batches: Iterable[dict[str, np.ndarray]]
) -> dict[str, ChannelStats]:
    """Run `model` with tensors `axes` (name -> channel axis) as outputs and stream their
    per-channel statistics, so no activation is kept beyond one batch."""
    probe = clone(model)
    del probe.graph.output[:]
    names = list(axes)
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = make_session(probe)
    stats = {name: ChannelStats() for name in names}
    for feeds in batches:
        for name, value in zip(names, session.run(names, feeds), strict=True):
            axis = axes[name]
            stats[name].add(np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1))
    return stats


def channel_statistics(
    an: Analysis, roots: list[int], data: Dataset, batch_size: int = 32
) -> dict[int, dict[str, np.ndarray]]:
    """Fraction of non-zeros and mean |x| per channel of every observed space."""
    tensors = observed_tensors(an, roots)
    axes = {name: an.layouts[name].axis for name in tensors.values()}
    stats = probe_channels(an.model, axes, data.batches(fixed_batch(an.model) or batch_size))
    return {
        root: {
            "nonzero": stats[name].nonzero / stats[name].count,
            "mean_abs": stats[name].total_abs / stats[name].count,
        }
        for root, name in tensors.items()
    }
