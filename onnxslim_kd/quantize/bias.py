"""Bias correction: shift each quantized Conv/Gemm bias by the mean error INT8 puts on its
output.

Rounding weights (and the layer's input) moves the mean of a layer's output per channel,
and the shift adds up through the network: depthwise convolutions, with few weights per
channel, are hit hardest. The per-channel mean of every quantized layer's output is
measured in FP32 and in INT8 on the calibration data and the difference added to the
layer's INT32 bias (its step, input scale x weight scale, is fine enough to carry it).
Correcting one layer changes what the next one receives, so it is repeated for a few
rounds: the empirical bias correction of Nagel et al. (2019, "Data-Free Quantization"),
done for all layers at once, one calibration run per round instead of one per layer.

Layers kept in FP32 (exclusions, the budget's fallback) have a float bias and are left as
they are; layers without a bias are not given one (that would change the graph's
interface to onnxruntime's integer kernels) and are counted in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.walk import clone
from onnxslim_kd.quantize.statistics import channel_statistics, whole_batches

#: Layers whose output channel axis is 1 and whose bias is their third input.
CORRECTED_OPS = frozenset({"Conv", "Gemm"})
#: Rounds of measure-and-correct (each one calibration run of the INT8 model).
DEFAULT_ROUNDS = 1
#: Calibration samples the means are measured on.
BIAS_SAMPLES = 64


@dataclass
class BiasCorrection:
    """What bias correction did: layers corrected, layers it could not correct, and how far
    the corrected means still are from FP32's (mean over layers of |shift| / output std)."""

    corrected: int = 0
    without_bias: list[str] = field(default_factory=list)
    rounds: int = 0
    samples: int = 0
    residual_before: float | None = None
    residual_after: float | None = None

    def as_dict(self) -> dict:
        return {
            "corrected": self.corrected,
            "without_bias": self.without_bias,
            "rounds": self.rounds,
            "samples": self.samples,
            "relative_mean_error_before": _rounded(self.residual_before),
            "relative_mean_error_after": _rounded(self.residual_after),
        }


def quantized_biases(quantized: onnx.ModelProto) -> dict[str, tuple[str, onnx.NodeProto]]:
    """Quantized Conv/Gemm layers by node name: (output tensor, the DequantizeLinear that
    feeds their INT32 bias)."""
    producers = {out: node for node in quantized.graph.node for out in node.output}
    int32 = {t.name for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT32}
    layers = {}
    for node in quantized.graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 3:
            continue
        dq = producers.get(node.input[2])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in int32:
            layers[node.name] = (node.output[0], dq)
    return layers


def unbiased_layers(quantized: onnx.ModelProto) -> list[str]:
    """Quantized Conv/Gemm layers with no bias input: nothing to correct them with."""
    producers = {out: node for node in quantized.graph.node for out in node.output}
    return [
        node.name
        for node in quantized.graph.node
        if node.op_type in CORRECTED_OPS
        and (len(node.input) < 3 or not node.input[2])
        and getattr(producers.get(node.input[1]), "op_type", None) == "DequantizeLinear"
    ]


def bias_shifts(
    reference: onnx.ModelProto,
    quantized: onnx.ModelProto,
    data: Dataset,
    rounds: int = DEFAULT_ROUNDS,
) -> tuple[dict[str, np.ndarray], BiasCorrection]:
    """Per quantized layer, the shift that cancels the mean error its rounded weights add.

    Each layer's own error is measured against a float copy of it fed the same input, so
    an error made upstream is corrected where it is made and not again downstream.
    `reference` is the float model `quantized` was built from (same node names)."""
    layers = quantized_biases(quantized)
    record = BiasCorrection(without_bias=unbiased_layers(quantized), rounds=rounds)
    if not layers:
        return {}, record
    data = whole_batches(data.subset(BIAS_SAMPLES), fixed_batch(reference))
    record.samples = len(data)
    float_nodes = {n.name: n for n in reference.graph.node if n.name in layers}
    float_stats = channel_statistics(
        reference, {name: node.output[0] for name, node in float_nodes.items()}, data
    )
    target = {name: stats.mean for name, stats in float_stats.items()}
    spread = {name: stats.std for name, stats in float_stats.items()}
    shifts = {name: np.zeros_like(target[name]) for name in float_nodes}
    outputs = {name: layers[name][0] for name in float_nodes}
    for step in range(rounds):
        shadowed, shadows = with_float_shadows(apply_shifts(quantized, shifts), reference)
        means = _means(shadowed, {**outputs, **shadows}, data)
        if step == 0:
            record.residual_before = _relative_error(target, means, spread)
        shifts = {name: shifts[name] + means[SHADOW + name] - means[name] for name in shifts}
    means = _means(apply_shifts(quantized, shifts), outputs, data)
    record.residual_after = _relative_error(target, means, spread)
    record.corrected = len(shifts)
    return shifts, record


#: Prefix of the float copies `with_float_shadows` adds.
SHADOW = "bias_correction_float/"


def with_float_shadows(
    quantized: onnx.ModelProto, reference: onnx.ModelProto
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """`quantized` plus, beside each quantized Conv/Gemm with a bias, the same layer with
    `reference`'s float weights fed the same dequantized input; returns it and
    {SHADOW + layer: the copy's output}.

    The copy takes the INT8 layer's own input, not the float activation before its
    QuantizeLinear: onnxruntime drops a Relu before a QuantizeLinear whose range starts at
    0 (the clipping is the Relu), so that activation is the one before the Relu."""
    result = clone(quantized)
    producers = {out: node for node in result.graph.node for out in node.output}
    weights = {t.name: t for t in reference.graph.initializer}
    shadows = {}
    layers = {n.name: n for n in result.graph.node if n.name in quantized_biases(quantized)}
    for node in reference.graph.node:
        layer = layers.get(node.name)
        dq = producers.get(layer.input[0]) if layer is not None else None
        if dq is None or dq.op_type != "DequantizeLinear" or any(
            i not in weights for i in node.input[1:]
        ):  # fmt: skip
            continue
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.name = SHADOW + node.name
        copy.input[:] = [dq.output[0], *(SHADOW + i for i in node.input[1:])]
        copy.output[:] = [SHADOW + node.output[0]]
        for i in node.input[1:]:
            result.graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(weights[i]), SHADOW + i))  # fmt: skip
        result.graph.node.append(copy)
        shadows[copy.name] = copy.output[0]
    return result, shadows


def _relative_error(target: dict, means: dict, spread: dict) -> float:
    """Mean over layers and channels of |INT8 mean - FP32 mean| / FP32 standard deviation."""
    return float(np.mean([
        np.mean(np.abs(target[k] - means[k]) / np.maximum(spread[k], 1e-12)) for k in target
    ]))  # fmt: skip


def apply_shifts(quantized: onnx.ModelProto, shifts: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy of `quantized` with `shifts[layer]` added to each named layer's INT32 bias
    (layers not quantized in it, or not named, unchanged)."""
    result = clone(quantized)
    if not shifts:
        return result
    layers = quantized_biases(result)
    initializers = {t.name: t for t in result.graph.initializer}
    for name, shift in shifts.items():
        if name not in layers:
            continue
        dq = layers[name][1]
        stored, scale = initializers[dq.input[0]], numpy_helper.to_array(initializers[dq.input[1]])
        values = numpy_helper.to_array(stored).astype(np.int64)
        steps = np.rint(shift / np.where(scale == 0, 1.0, scale)).astype(np.int64)
        info = np.iinfo(np.int32)
        corrected = np.clip(values + steps, info.min, info.max).astype(np.int32)
        stored.CopyFrom(numpy_helper.from_array(corrected, stored.name))
    return result


def _means(model: onnx.ModelProto, tensors: dict[str, str], data: Dataset) -> dict:
    return {key: stats.mean for key, stats in channel_statistics(model, tensors, data).items()}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 5)
