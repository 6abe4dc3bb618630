"""Per-channel activation statistics gathered with onnxruntime on calibration data."""

from __future__ import annotations

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.probe import probe_dataset
from onnxslim_kd.graph.walk import producers
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


def channel_statistics(
    an: Analysis, roots: list[int], data: Dataset, batch_size: int = 32
) -> dict[int, dict[str, np.ndarray]]:
    """Fraction of non-zeros and mean |x| per channel of every observed space."""
    tensors = observed_tensors(an, roots)
    axes = {name: an.layouts[name].axis for name in tensors.values()}
    stats = probe_dataset(an.model, axes, data, batch_size)
    return {
        root: {
            "nonzero": stats[name].nonzero / stats[name].count,
            "mean_abs": stats[name].total_abs / stats[name].count,
        }
        for root, name in tensors.items()
    }
