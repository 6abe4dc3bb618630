"""Fold constant channels into the next layer's bias before they are removed.

A channel whose filter is all zero still outputs a constant (its bias, or BN beta
through an activation). Removing it silently drops that constant from the consumer;
folding `sum(W[:, c]) * value` into the consumer's bias first makes removing such
channels exact. Only consumers where the fold is exact get it: Gemm, and Conv without
padding or with 1x1 kernels (padding would make border outputs see fewer taps).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import attribute, clone
from onnxslim_kd.prune.analysis import Analysis, ParamSlice
from onnxslim_kd.prune.budget import keep_lookup
from onnxslim_kd.prune.layout import kept_positions

#: Relative spread below which a channel counts as constant on the probe inputs.
CONSTANT_TOLERANCE = 1e-6


def dead_spaces(an: Analysis, kept: dict[int, np.ndarray]) -> bool:
    """Whether a removed channel has an all-zero producing filter (the only case to fold)."""
    for item in an.slices:
        value = an.const(an.graph.node[item.node].input[item.input_index])
        if value is None or value.ndim < 2 or item.node not in _producers(an, item):
            continue
        positions = _removed_positions(an, item.layout, kept)
        if not len(positions):
            continue
        removed = np.take(value, positions, axis=item.axis)
        filters = np.moveaxis(removed, item.axis, 0).reshape(removed.shape[item.axis], -1)
        if not filters.any(axis=1).all():
            return True
    return False


def _producers(an: Analysis, item) -> set[int]:
    return {i for seg in item.layout.segments for i in an.origins.get(seg.space, [])}


def _removed_positions(an: Analysis, layout, kept) -> np.ndarray:
    return np.setdiff1d(np.arange(layout.size), kept_positions(layout, keep_lookup(an, kept)))


def fold_constant_channels(an: Analysis, kept: dict[int, np.ndarray], shapes) -> list[str]:
    """Move constant removed channels into consumer biases in `an.model`; return notes."""
    consumers = {
        index: source
        for index, (source, out) in an.node_layouts.items()
        if source is not None and source is not out
    }
    probe = clone(an.model)
    del probe.graph.output[:]
    names = list(dict.fromkeys(an.graph.node[i].input[0] for i in consumers))
    probe.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names)
    session = make_session(probe)
    runs = [session.run(names, random_data(an.model, shapes, seed=seed).inputs) for seed in (0, 1)]
    values = {name: np.concatenate(parts) for name, *parts in zip(names, *runs, strict=True)}
    notes = []
    for index, source in consumers.items():
        node = an.graph.node[index]
        activation = values[node.input[0]]
        removed = _removed_positions(an, source, kept)
        constants = _constant_channels(activation, source.axis, removed)
        if not constants:
            continue
        if node.op_type == "Conv" and _padded(node, an):
            notes.append(f"'{node.name}': constant channels dropped (padding: no exact fold)")
            continue
        if node.op_type not in ("Conv", "Gemm") or not _fold(an, index, constants):
            notes.append(f"'{node.name}': constant channels dropped (no bias to fold into)")
            continue
        notes.append(f"'{node.name}': folded {len(constants)} constant inputs into its bias")
    return notes


def _constant_channels(activation: np.ndarray, axis: int, removed: np.ndarray) -> dict[int, float]:
    moved = np.moveaxis(activation, axis, 0).reshape(activation.shape[axis], -1)
    found = {}
    for position in removed:
        row = moved[position]
        value = float(row[0])
        if value != 0 and np.abs(row - value).max() <= CONSTANT_TOLERANCE * abs(value):
            found[int(position)] = value
    return found


def _padded(node: onnx.NodeProto, an: Analysis) -> bool:
    kernel = an.const(node.input[1]).shape[2:]
    pads = attribute(node, "pads", [0])
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    return any(k > 1 for k in kernel) and (any(pads) or auto_pad not in (b"NOTSET", b"VALID"))


def _fold(an: Analysis, index: int, constants: dict[int, float]) -> bool:
    """bias += sum_c value_c * W[:, c] (summed over the kernel), on a private bias copy."""
    node = an.graph.node[index]
    weight = an.const(node.input[1]).astype(np.float64)
    positions = np.array(list(constants))
    scale = np.array(list(constants.values()))
    if node.op_type == "Conv":
        delta = np.einsum(
            "ocx,c->o", weight[:, positions].reshape(len(weight), len(positions), -1), scale
        )
    else:
        matrix = weight.T if attribute(node, "transB", 0) else weight
        delta = attribute(node, "alpha", 1.0) * (scale @ matrix[positions])
    return _add_to_bias(an, index, delta)


def _add_to_bias(an: Analysis, index: int, delta: np.ndarray) -> bool:
    node = an.graph.node[index]
    beta = attribute(node, "beta", 1.0) if node.op_type == "Gemm" else 1.0
    name = node.input[2] if len(node.input) > 2 and node.input[2] else None
    bias = an.const(name) if name else None
    if bias is not None and bias.shape != delta.shape:
        return False
    if bias is None:
        bias = np.zeros(len(delta), np.float32)
        out = an.node_layouts[index][1]
        an.slices.append(ParamSlice(index, 2, 0, out.with_axis(0, 1)))
    new = (bias.astype(np.float64) + delta / beta).astype(np.float32)
    private = f"{node.name or node.output[0]}.folded_bias"
    an.model.graph.initializer.append(numpy_helper.from_array(new, private))
    an.initializers[private] = an.model.graph.initializer[-1]
    an._constants.pop(private, None)
    while len(node.input) < 3:
        node.input.append("")
    node.input[2] = private
    return True
