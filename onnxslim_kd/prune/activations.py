"""Per-channel activation statistics gathered with onnxruntime on calibration data."""

from __future__ import annotations

import numpy as np
import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import clone, producers
from onnxslim_kd.prune.analysis import Analysis

#: Ops after which a zero means "inactive", the tensors APoZ should look at.
RELU_LIKE = frozenset({"Relu", "Clip", "LeakyRelu", "HardSwish", "Elu", "Selu", "Mish"})


def observed_tensors(an: Analysis, roots: list[int]) -> dict[int, str]:
    """For each space, one tensor carrying exactly its channels, preferring ReLU outputs."""
    made_by = producers(an.graph)
    chosen: dict[int, tuple[bool, str]] = {}
    for name, lay in an.layouts.items():
        if len(lay.segments) != 1 or lay.segments[0].repeat != 1 or name not in made_by:
            continue
        root = an.spaces.find(lay.segments[0].space)
        if root not in roots or not an.is_whole(lay.segments[0]):
            continue
        relu = made_by[name].op_type in RELU_LIKE
        if root not in chosen or (relu and not chosen[root][0]):
            chosen[root] = (relu, name)
    return {root: name for root, (_, name) in chosen.items()}


def channel_statistics(
    an: Analysis, roots: list[int], data: Dataset, batch_size: int = 32
) -> dict[int, dict[str, np.ndarray]]:
    """Fraction of non-zeros and mean |x| per channel of every observed space."""
    tensors = observed_tensors(an, roots)
    probe = clone(an.model)
    del probe.graph.output[:]
    for name in dict.fromkeys(tensors.values()):
        probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = make_session(probe)
    names = list(dict.fromkeys(tensors.values()))
    sums: dict[str, dict[str, np.ndarray]] = {}
    count: dict[str, int] = dict.fromkeys(names, 0)
    for feeds in data.batches(fixed_batch(an.model) or batch_size):
        for name, value in zip(names, session.run(names, feeds), strict=True):
            axis = an.layouts[name].axis
            moved = np.moveaxis(value, axis, 0).reshape(value.shape[axis], -1)
            acc = sums.setdefault(name, {"nonzero": 0.0, "mean_abs": 0.0})
            acc["nonzero"] = acc["nonzero"] + (moved != 0).sum(axis=1)
            acc["mean_abs"] = acc["mean_abs"] + np.abs(moved).sum(axis=1)
            count[name] += moved.shape[1]
    return {
        root: {key: total / count[name] for key, total in sums[name].items()}
        for root, name in tensors.items()
    }
