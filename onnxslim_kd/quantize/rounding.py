"""Learned weight rounding: per quantized Conv/Gemm/MatMul, the integer weights that keep
the layer's output closest to FP32's on the calibration data, instead of each weight
rounded to its nearest level.

Rounding to nearest minimises each weight's own error, not the layer's: the errors of
weights that see correlated inputs add up in the output. AdaRound (Nagel et al., 2020)
and AdaQuant learn the rounding against the layer's output error ||W X - Q X||² by
gradient descent. That error depends on the data only through H = X Xᵀ, and GPTQ
(Frantar et al., 2023) minimises it greedily in closed form: quantize one input column,
spread its error over the columns not yet quantized through the inverse of H, largest
inputs first. One pass per layer costs O(K³ + C·K²) for C outputs of K inputs, seconds
for a 4,608-input ResNet conv, where gradient descent needs thousands of C·K² steps.

It edits the built QDQ model: onnxruntime's scales and zero points stay, only the integer
weights of the layers quantized in that build change, within the integer range
onnxruntime used for them, so every build (exclusions, FP32 fallback) takes the same
edit. Layers kept in FP32 keep their float weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import numpy_helper

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.probe import probe_tensors, whole_batches
from onnxslim_kd.graph.walk import attribute, clone, consumers, producers
from onnxslim_kd.quantize.records import rounded, significant

#: Layers whose weight is their second input, quantized by a DequantizeLinear.
ROUNDED_OPS = frozenset({"Conv", "Gemm", "MatMul"})
#: Calibration samples H is measured on (H has K² entries: more samples do not cost memory).
ROUNDING_SAMPLES = 64
#: Added to H's diagonal, as a share of its mean: keeps H invertible where inputs are
#: collinear or never vary (GPTQ's default).
DAMPING = 0.01
#: Columns quantized between two matrix updates of the rest (GPTQ's lazy batch).
BLOCK = 128
#: Layers with more inputs per output (K) are left to nearest rounding: H alone would
#: take K² x 8 bytes (512 MB at this K).
MAX_INPUTS = 8192
#: Samples run through onnxruntime at a time while H is measured.
_BATCH = 4


@dataclass
class WeightSlot:
    """A quantized layer's integer weights as built: their initializer, and the scale and
    zero point of each weight (broadcast to the weights' shape)."""

    initializer: str
    values: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray


@dataclass
class Rounding:
    """What learned rounding did: layers rounded and skipped (with why), and the layers'
    output error on the calibration data, nearest vs learned (mean over layers of
    ||(W - Q) X||² / ||W X||²)."""

    rounded: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    samples: int = 0
    error_nearest: float | None = None
    error_learned: float | None = None
    changed: float = 0.0  # share of the rounded layers' weights moved off their nearest level
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "method": "gptq",
            "rounded": self.rounded,
            "skipped": self.skipped,
            "samples": self.samples,
            "relative_output_error_nearest": significant(self.error_nearest),
            "relative_output_error_learned": significant(self.error_learned),
            "weights_changed": rounded(self.changed, 4),
            "seconds": rounded(self.seconds, 1),
        }


def describe_rounding(record: dict) -> str:
    """One line for the log and the report table, from Rounding.as_dict()."""
    if not record["rounded"]:
        return f"gptq: no layer rounded ({len(record['skipped'])} skipped)"
    skipped = f", {len(record['skipped'])} skipped" if record["skipped"] else ""
    return (
        f"gptq, {record['rounded']} layers{skipped} on {record['samples']} samples: output "
        f"error {record['relative_output_error_nearest']:.2e} -> "
        f"{record['relative_output_error_learned']:.2e} of the output's energy, "
        f"{record['weights_changed']:.1%} of weights moved, {record['seconds']:.0f} s"
    )


class _Unsupported(Exception):
    """A layer learned rounding leaves to nearest; the message says why."""


def learned_rounding(
    reference: onnx.ModelProto, quantized: onnx.ModelProto, data: Dataset
) -> tuple[dict[str, np.ndarray], Rounding]:
    """Integer weights by layer name for every quantized layer of `quantized` it can round,
    learned from `reference`'s (the float model `quantized` was built from, same node
    names) layer inputs on `data`."""
    started = time.perf_counter()
    record = Rounding()
    slots = quantized_weights(quantized)
    weights = {t.name: t for t in reference.graph.initializer}
    layers = {}
    for node in reference.graph.node:
        if node.name not in slots:
            continue
        try:
            _check_layer(node, weights, slots[node.name])
        except _Unsupported as why:
            record.skipped[node.name] = str(why)
            continue
        layers[node.name] = node
    data = whole_batches(data.subset(ROUNDING_SAMPLES), fixed_batch(reference))
    record.samples = len(data)
    hessians = _hessians(reference, layers, slots, data)
    learned, errors, moved, total = {}, [], 0, 0
    for name, node in layers.items():
        slot, float_weights = slots[name], numpy_helper.to_array(weights[node.input[1]])
        hessian = hessians[name]
        rows = _to_rows(node, float_weights.astype(np.float64))
        try:  # within the integer range onnxruntime's own rounding used
            levels = _gptq(
                rows, hessian, _to_rows(node, slot.scale), _to_rows(node, slot.zero_point),
                int(slot.values.min()), int(slot.values.max()),
            )  # fmt: skip
        except np.linalg.LinAlgError:
            record.skipped[name] = "H is not positive definite even with damping"
            continue
        nearest = _to_rows(node, slot.values.astype(np.float64))
        errors.append([_output_error(rows, q, slot, node, hessian) for q in (nearest, levels)])
        moved += int((levels != nearest).sum())
        total += levels.size
        learned[name] = _from_rows(node, levels, float_weights.shape).astype(slot.values.dtype)
    if errors:
        record.error_nearest, record.error_learned = np.mean(errors, axis=0).tolist()
        record.changed = moved / total
    record.rounded = len(learned)
    record.seconds = time.perf_counter() - started
    return learned, record


def apply_rounding(quantized: onnx.ModelProto, learned: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `quantized` with each named layer's integer weights replaced by `learned`
    (layers not quantized in it unchanged)."""
    result = clone(quantized)
    if not learned:
        return result
    slots = quantized_weights(result)
    initializers = {t.name: t for t in result.graph.initializer}
    for name, values in learned.items():
        if name in slots:
            stored = initializers[slots[name].initializer]
            stored.CopyFrom(numpy_helper.from_array(values, stored.name))
    return result


def quantized_weights(quantized: onnx.ModelProto) -> dict[str, WeightSlot]:
    """Layers of ROUNDED_OPS by name whose weight is a DequantizeLinear of an integer
    initializer that only it reads."""
    graph = quantized.graph
    made_by, used_by = producers(graph), consumers(graph)
    initializers = {t.name: t for t in graph.initializer}
    slots = {}
    for node in graph.node:
        dq = made_by.get(node.input[1]) if node.op_type in ROUNDED_OPS else None
        if dq is None or dq.op_type != "DequantizeLinear" or len(used_by[dq.output[0]]) != 1:
            continue
        stored = initializers.get(dq.input[0])
        if stored is None or len(used_by[stored.name]) != 1:
            continue
        values = numpy_helper.to_array(stored)
        if not np.issubdtype(values.dtype, np.integer):
            continue
        scale = numpy_helper.to_array(initializers[dq.input[1]])
        zero = (
            numpy_helper.to_array(initializers[dq.input[2]])
            if len(dq.input) > 2 and dq.input[2]
            else np.zeros_like(scale, dtype=values.dtype)
        )
        axis = attribute(dq, "axis", 1) % values.ndim
        shape = [1] * values.ndim
        if scale.ndim:
            shape[axis] = -1
        slots[node.name] = WeightSlot(
            stored.name,
            values,
            np.broadcast_to(scale.reshape(shape), values.shape).astype(np.float64),
            np.broadcast_to(zero.reshape(shape), values.shape).astype(np.float64),
        )
    return slots


def _check_layer(node: onnx.NodeProto, weights: dict, slot: WeightSlot) -> None:
    """Raise _Unsupported for layers whose inputs cannot be laid out as rows of H."""
    if node.input[1] not in weights:
        raise _Unsupported("weight is not an initializer of the float model")
    shape = slot.values.shape
    if node.op_type == "Conv" and attribute(node, "auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise _Unsupported("auto_pad SAME: padding not laid out")
    if node.op_type == "Gemm" and attribute(node, "transA", 0):
        raise _Unsupported("Gemm with transA")
    if node.op_type in ("Gemm", "MatMul") and len(shape) != 2:
        raise _Unsupported(f"{len(shape)}-D weight")
    if node.input[0] in weights:
        raise _Unsupported("input is constant")
    inputs = _to_rows(node, slot.values).shape[2]
    if inputs > MAX_INPUTS:
        raise _Unsupported(f"{inputs} inputs per output: H would take {inputs**2 * 8 >> 20} MB")


def _to_rows(node: onnx.NodeProto, weights: np.ndarray) -> np.ndarray:
    """Weights (or anything of their shape) as [groups, outputs, inputs]: one row of K
    inputs per output channel, in the order `_patches` lays the inputs out."""
    if node.op_type == "Conv":
        groups = attribute(node, "group", 1)
        return weights.reshape(groups, weights.shape[0] // groups, -1)
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return weights[None]
    return weights.T[None]


def _from_rows(node: onnx.NodeProto, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The inverse of `_to_rows`."""
    if node.op_type == "Conv":
        return rows.reshape(shape)
    return rows[0] if node.op_type == "Gemm" and attribute(node, "transB", 0) else rows[0].T


def _hessians(
    reference: onnx.ModelProto, layers: dict[str, onnx.NodeProto],
    slots: dict[str, WeightSlot], data: Dataset,
) -> dict[str, np.ndarray]:  # fmt: skip
    """H = Σ x xᵀ over every input row x of each layer ([groups, K, K], summed in float32
    as onnxruntime computes x, float64 for the solve); a Conv's kernel shape is its
    `slots` weights' trailing dimensions."""
    names = sorted({node.input[0] for node in layers.values()})
    hessians: dict[str, np.ndarray] = {}
    if not names:
        return hessians
    batches = data.batches(fixed_batch(reference) or _BATCH)
    for values in probe_tensors(reference, names, batches):
        for name, node in layers.items():
            rows = _patches(node, values[node.input[0]], slots[name].values.shape[2:])
            step = np.matmul(rows.transpose(0, 2, 1), rows)
            if name in hessians:
                hessians[name] += step
            else:
                hessians[name] = step
    return {name: hessian.astype(np.float64) for name, hessian in hessians.items()}


def _patches(node: onnx.NodeProto, value: np.ndarray, kernel: tuple[int, ...]) -> np.ndarray:
    """A layer's input as [groups, rows, K]: for Conv each output position's receptive
    field (channels, then kernel positions), for Gemm/MatMul each input vector."""
    if node.op_type != "Conv":
        return value.reshape(-1, value.shape[-1])[None]
    spatial = value.ndim - 2
    strides = attribute(node, "strides", [1] * spatial)
    dilations = attribute(node, "dilations", [1] * spatial)
    pads = attribute(node, "pads", [0] * 2 * spatial)
    groups = attribute(node, "group", 1)
    padded = np.pad(value, [(0, 0), (0, 0), *zip(pads[:spatial], pads[spatial:], strict=True)])
    spans = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    windows = sliding_window_view(padded, spans, axis=tuple(range(2, 2 + spatial)))
    windows = windows[
        (slice(None), slice(None), *(slice(None, None, s) for s in strides),
         *(slice(None, None, d) for d in dilations))
    ]  # fmt: skip
    batch, channels = value.shape[:2]
    positions = math.prod(windows.shape[2 : 2 + spatial])
    grouped = windows.reshape(batch, groups, channels // groups, positions, math.prod(kernel))
    return grouped.transpose(1, 0, 3, 2, 4).reshape(groups, batch * positions, -1)


def _gptq(
    weights: np.ndarray, hessian: np.ndarray, scale: np.ndarray, zero: np.ndarray,
    low: int, high: int,
) -> np.ndarray:  # fmt: skip
    """Integer levels [groups, outputs, K] for float `weights` of that shape that minimise
    Σ (W - Q) H (W - Q)ᵀ greedily (GPTQ), column by column in order of decreasing H
    diagonal, each level in [low, high] on its own scale and zero point."""
    groups, outputs, inputs = weights.shape
    diagonal = np.diagonal(hessian, axis1=1, axis2=2)
    order = np.argsort(-diagonal, axis=1, kind="stable")
    damped = hessian + np.eye(inputs) * (
        DAMPING * diagonal.mean(axis=1)[:, None, None] + (diagonal <= 0)[:, None, :]
    )
    damped = np.take_along_axis(np.take_along_axis(damped, order[:, :, None], 1), order[:, None], 2)
    w, s, z = (
        np.take_along_axis(np.broadcast_to(a, weights.shape), order[:, None], 2).astype(np.float64)
        for a in (weights, scale, zero)
    )
    steps = np.where(s == 0, 1.0, s)
    upper = np.linalg.cholesky(np.linalg.inv(damped)).transpose(0, 2, 1)  # H⁻¹ = Uᵀ U
    levels = np.empty_like(w)
    for start in range(0, inputs, BLOCK):
        stop = min(start + BLOCK, inputs)
        spread = np.zeros((groups, outputs, stop - start))
        for i in range(start, stop):
            level = np.clip(np.rint(w[:, :, i] / steps[:, :, i]) + z[:, :, i], low, high)
            levels[:, :, i] = level
            error = (w[:, :, i] - (level - z[:, :, i]) * s[:, :, i]) / upper[:, i, i][:, None]
            w[:, :, i + 1 : stop] -= error[:, :, None] * upper[:, None, i, i + 1 : stop]
            spread[:, :, i - start] = error
        w[:, :, stop:] -= spread @ upper[:, start:stop, stop:]
    return np.take_along_axis(levels, np.argsort(order, axis=1)[:, None], 2)


def _output_error(
    rows: np.ndarray, levels: np.ndarray, slot: WeightSlot, node: onnx.NodeProto,
    hessian: np.ndarray,
) -> float:  # fmt: skip
    """||(W - Q) X||² / ||W X||² for weights `rows` quantized to `levels` ([g, R, K])."""
    dequantized = (levels - _to_rows(node, slot.zero_point)) * _to_rows(node, slot.scale)
    error = rows - dequantized
    signal = np.sum((rows @ hessian) * rows)
    return float(np.sum((error @ hessian) * error) / max(signal, 1e-30))
