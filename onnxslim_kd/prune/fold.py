"""Compensate removed channels in the next layer's bias before they are removed.

A removed channel still fed the consumer something: exactly a constant when its filter
is zero (its bias, or BN beta through an activation), and a value with some mean in
general. Folding `sum(W[:, c]) * value_c` into the consumer's bias keeps that part:
- without data, only channels that are constant on two random probes are folded, and
  only where the fold is exact (Gemm, and Conv without padding or with 1x1 kernels);
- with calibration data, every removed channel is replaced by its mean activation
  (mean replacement), which is approximate but keeps the consumer's operating point.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.probe import probe_channels
from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis, ParamSlice
from onnxslim_kd.prune.budget import keep_lookup
from onnxslim_kd.prune.layout import Layout, kept_positions

#: Relative spread below which a channel counts as constant on the probe inputs.
CONSTANT_TOLERANCE = 1e-6
#: Calibration samples used to estimate the mean activation of removed channels.
MEAN_SAMPLES = 64


def dead_spaces(an: Analysis, kept: dict[int, np.ndarray]) -> bool:
    """Whether a removed channel has an all-zero producing filter (the only case to fold
    without data)."""
    for item in an.slices:
        value = an.const(an.graph.node[item.node].input[item.input_index])
        if value is None or value.ndim < 2 or item.node not in _producers(an, item.layout):
            continue
        positions = _removed(an, item.layout, kept)
        if not len(positions):
            continue
        removed = np.take(value, positions, axis=item.axis)
        filters = np.moveaxis(removed, item.axis, 0).reshape(removed.shape[item.axis], -1)
        if not filters.any(axis=1).all():
            return True
    return False


def compensate_removed(
    an: Analysis, kept: dict[int, np.ndarray], shapes: dict, data: Dataset | None
) -> list[str]:
    """Fold removed channels into consumer biases in `an.model`; return what was done."""
    consumers = {
        index: source
        for index, (source, out) in an.node_layouts.items()
        if source is not None and source is not out and len(_removed(an, source, kept))
    }
    if not consumers:
        return []
    stats = _input_statistics(an, consumers, shapes, data)
    notes = []
    for index, source in consumers.items():
        node = an.graph.node[index]
        mean, low, high = stats[node.input[0]]
        removed = _removed(an, source, kept)
        if data is None:
            spread = np.abs(high - low)[removed] <= CONSTANT_TOLERANCE * np.abs(mean[removed])
            removed = removed[spread & (mean[removed] != 0)]
            if not len(removed):
                continue
            if node.op_type == "Conv" and _padded(node, an):
                notes.append(f"'{node.name}': constant channels dropped (padding: no exact fold)")
                continue
        if node.op_type not in _FOLDABLE or not _fold(an, index, removed, mean[removed]):
            notes.append(f"'{node.name}': removed inputs not compensated (no bias to fold into)")
            continue
        how = "constant" if data is None else "mean-compensated"
        notes.append(f"'{node.name}': folded {len(removed)} {how} inputs into its bias")
    return notes


def _producers(an: Analysis, layout: Layout) -> set[int]:
    return {i for seg in layout.segments for i in an.origins.get(seg.space, [])}


def _removed(an: Analysis, layout: Layout, kept: dict[int, np.ndarray]) -> np.ndarray:
    return np.setdiff1d(np.arange(layout.size), kept_positions(layout, keep_lookup(an, kept)))


def _input_statistics(
    an: Analysis, consumers: dict[int, Layout], shapes: dict, data: Dataset | None
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mean, min and max of every position along each consumer input's channel axis."""
    axes = {an.graph.node[i].input[0]: source.axis for i, source in consumers.items()}
    stats = probe_channels(an.model, axes, _feeds(an, shapes, data))
    return {n: (s.mean, s.low, s.high) for n, s in stats.items()}


def _feeds(an: Analysis, shapes: dict, data: Dataset | None) -> Iterator[dict]:
    if data is None:
        for seed in (0, 1):
            yield random_data(an.model, shapes, seed=seed).inputs
        return
    yield from data.subset(MEAN_SAMPLES).batches(fixed_batch(an.model) or 16)


def _padded(node: onnx.NodeProto, an: Analysis) -> bool:
    kernel = an.const(node.input[1]).shape[2:]
    pads = attribute(node, "pads", [0])
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    return any(k > 1 for k in kernel) and (any(pads) or auto_pad not in (b"NOTSET", b"VALID"))


#: Consumers with a bias that removed inputs' mean contributions can be folded into
#: (a MatMul's is the constant of the Add that reads it alone, as exporters write Linear).
_FOLDABLE = ("Conv", "Gemm", "MatMul", "LSTM", "GRU", "RNN")


def _fold(an: Analysis, index: int, positions: np.ndarray, values: np.ndarray) -> bool:
    """bias += sum_c value_c * W[:, c] (summed over the kernel), on a private bias copy."""
    node = an.graph.node[index]
    weight = an.const(node.input[1]).astype(np.float64)
    if node.op_type in ("LSTM", "GRU", "RNN"):
        return _fold_recurrent(an, index, np.einsum("dgi,i->dg", weight[:, :, positions], values))
    if node.op_type == "MatMul":
        return weight.ndim == 2 and _add_to_following_bias(an, node, values @ weight[positions])
    if node.op_type == "Conv":
        taps = weight[:, positions].reshape(len(weight), len(positions), -1)
        delta = np.einsum("ocx,c->o", taps, values)
    else:
        matrix = weight.T if attribute(node, "transB", 0) else weight
        delta = attribute(node, "alpha", 1.0) * (values @ matrix[positions])
    return _add_to_bias(an, index, delta)


def _fold_recurrent(an: Analysis, index: int, delta: np.ndarray) -> bool:
    """B is [directions, 2 * gates * hidden]: W's bias (the first half) takes `delta`."""
    node = an.graph.node[index]
    name = node.input[3] if len(node.input) > 3 and node.input[3] else None
    bias = an.const(name) if name else None
    if bias is None and name:
        return False  # a computed bias
    if bias is None:
        bias = np.zeros((delta.shape[0], 2 * delta.shape[1]), np.float32)
    new = bias.astype(np.float64)
    new[:, : delta.shape[1]] += delta
    _use_private_input(an, node, 3, new.astype(np.float32), "folded_bias")
    return True


def _use_private_input(an, node: onnx.NodeProto, position: int, value, suffix: str) -> None:
    """Point input `position` of `node` at a new initializer holding `value`."""
    private = f"{node.name or node.output[0]}.{suffix}"
    tensor = numpy_helper.from_array(value, private)
    an.model.graph.initializer.append(tensor)
    an.initializers[private] = tensor
    while len(node.input) <= position:
        node.input.append("")
    node.input[position] = private


def _add_to_following_bias(an: Analysis, node: onnx.NodeProto, delta: np.ndarray) -> bool:
    """MatMul -> Add(bias): the bias takes `delta` when the Add is the product's only reader
    and its other input is a constant over the last axis."""
    readers = an.readers.get(node.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "Add":
        return False
    (add,) = readers
    position = 1 - list(add.input).index(node.output[0])
    bias = an.const(add.input[position])
    if bias is None or bias.shape[-1:] != delta.shape or np.prod(bias.shape[:-1]) != 1:
        return False
    new = (bias.astype(np.float64) + delta).astype(np.float32)
    _use_private_input(an, add, position, new, "folded_bias")
    return True


def _add_to_bias(an: Analysis, index: int, delta: np.ndarray) -> bool:
    node = an.graph.node[index]
    beta = attribute(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
    name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    bias = an.const(name) if name else None
    if bias is not None and bias.shape != delta.shape:
        return False
    if bias is None:
        bias = np.zeros(len(delta), np.float32)
        an.slices.append(ParamSlice(index, 2, 0, an.node_layouts[index][1].with_axis(0, 1)))
    new = (bias.astype(np.float64) + delta / beta).astype(np.float32)
    _use_private_input(an, node, 2, new, "folded_bias")
    return True
