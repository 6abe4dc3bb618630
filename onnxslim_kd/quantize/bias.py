"""Bias correction: shift each quantized Conv/Gemm bias by the mean error INT8 puts on its
output.

Rounding weights moves the mean of a layer's output per channel, and the shift adds up
through the network: depthwise convolutions, with few weights per channel, are hit
hardest (Nagel et al., 2019, "Data-Free Quantization"). Beside each quantized layer a
float copy of it (the original weights) is fed the same dequantized input, in one run
over the calibration data; the difference of their per-channel output means is the
layer's own error, and it is added to the layer's INT32 bias (its step, input scale x
weight scale, is fine enough to carry it). Measuring each layer against its own float
copy corrects an upstream error once, where it is made, instead of again in every layer
downstream; all layers are corrected from the one run.

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
from onnxslim_kd.graph.probe import ChannelStats, probe_dataset, whole_batches
from onnxslim_kd.graph.walk import clone, producers
from onnxslim_kd.quantize.records import rounded

#: Layers whose output channel axis is 1 and whose bias is their third input.
CORRECTED_OPS = frozenset({"Conv", "Gemm"})
#: Calibration samples the means are measured on.
BIAS_SAMPLES = 64


@dataclass
class BiasCorrection:
    """What bias correction did: layers corrected, layers it could not correct, and how far
    the INT8 output means are from FP32's before and after (mean over layers and channels
    of |INT8 mean - FP32 mean| / FP32 standard deviation)."""

    corrected: int = 0
    without_bias: list[str] = field(default_factory=list)
    samples: int = 0
    residual_before: float | None = None
    residual_after: float | None = None

    def as_dict(self) -> dict:
        return {
            "corrected": self.corrected,
            "without_bias": self.without_bias,
            "samples": self.samples,
            "relative_mean_error_before": rounded(self.residual_before, 5),
            "relative_mean_error_after": rounded(self.residual_after, 5),
        }


def describe_correction(record: dict) -> str:
    """One line for the log and the report table, from BiasCorrection.as_dict()."""
    if not record["corrected"]:
        return "no quantized Conv/Gemm has a bias"
    if record["relative_mean_error_before"] is None:
        return (
            f"{record['corrected']} layers on {record['samples']} samples (too few to "
            "measure the remaining mean error)"
        )
    return (
        f"{record['corrected']} layers on {record['samples']} samples, mean error "
        f"{record['relative_mean_error_before']:.4f} -> {record['relative_mean_error_after']:.4f}"
        " of the channels' spread"
    )


def quantized_biases(quantized: onnx.ModelProto) -> dict[str, tuple[str, onnx.NodeProto]]:
    """Quantized Conv/Gemm layers by node name: (output tensor, the DequantizeLinear that
    feeds their INT32 bias)."""
    made_by = producers(quantized.graph)
    int32 = {t.name for t in quantized.graph.initializer if t.data_type == onnx.TensorProto.INT32}
    layers = {}
    for node in quantized.graph.node:
        if node.op_type not in CORRECTED_OPS or len(node.input) < 3:
            continue
        dq = made_by.get(node.input[2])
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in int32:
            layers[node.name] = (node.output[0], dq)
    return layers


def unbiased_layers(quantized: onnx.ModelProto) -> list[str]:
    """Quantized Conv/Gemm layers with no bias input: nothing to correct them with."""
    made_by = producers(quantized.graph)
    return [
        node.name
        for node in quantized.graph.node
        if node.op_type in CORRECTED_OPS
        and (len(node.input) < 3 or not node.input[2])
        and getattr(made_by.get(node.input[1]), "op_type", None) == "DequantizeLinear"
    ]


def bias_shifts(
    reference: onnx.ModelProto, quantized: onnx.ModelProto, data: Dataset
) -> tuple[dict[str, np.ndarray], BiasCorrection]:
    """Per quantized layer, the shift that cancels the mean error its rounded weights add.

    `reference` is the float model `quantized` was built from (same node names). Besides
    the one run that measures the shifts, FP32 and the corrected INT8 model are run once
    each for the report's before/after error."""
    layers = quantized_biases(quantized)
    record = BiasCorrection(without_bias=unbiased_layers(quantized))
    if not layers:
        return {}, record
    data = whole_batches(data.subset(BIAS_SAMPLES), fixed_batch(reference))
    record.samples = len(data)
    float_nodes = {n.name: n for n in reference.graph.node if n.name in layers}
    fp32 = _statistics(reference, {name: n.output[0] for name, n in float_nodes.items()}, data)
    outputs = {name: layers[name][0] for name in float_nodes}
    shadowed, shadows = with_float_shadows(quantized, reference, layers)
    measured = _statistics(shadowed, {**outputs, **shadows}, data)
    record.residual_before = _relative_error(fp32, measured)
    shifts = {name: measured[SHADOW + name].mean - measured[name].mean for name in float_nodes}
    record.residual_after = _relative_error(
        fp32, _statistics(apply_shifts(quantized, shifts), outputs, data)
    )
    record.corrected = len(shifts)
    return shifts, record


#: Prefix of the float copies `with_float_shadows` adds.
SHADOW = "bias_correction_float/"


def with_float_shadows(
    quantized: onnx.ModelProto, reference: onnx.ModelProto, layers: dict
) -> tuple[onnx.ModelProto, dict[str, str]]:
    """`quantized` plus, beside each of its `layers` (quantized_biases), the same layer with
    `reference`'s float weights fed the same dequantized input; returns it and
    {SHADOW + layer: the copy's output}.

    The copy takes the INT8 layer's own input, not the float activation before its
    QuantizeLinear: onnxruntime drops a Relu before a QuantizeLinear whose range starts at
    0 (the clipping is the Relu), so that activation is the one before the Relu."""
    result = clone(quantized)
    made_by = producers(result.graph)
    weights = {t.name: t for t in reference.graph.initializer}
    nodes = {n.name: n for n in result.graph.node if n.name in layers}
    shadows = {}
    for node in reference.graph.node:
        layer = nodes.get(node.name)
        dq = made_by.get(layer.input[0]) if layer is not None else None
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


def _relative_error(fp32: dict[str, ChannelStats], int8: dict[str, ChannelStats]) -> float | None:
    """Mean over layers and channels of |INT8 mean - FP32 mean| / FP32 standard deviation;
    channels FP32 holds constant (a Gemm seen on one sample) have no spread to measure
    against and are left out (None when no channel is left)."""
    ratios = [
        np.abs(fp32[k].mean - int8[k].mean)[spread > 0] / spread[spread > 0]
        for k in fp32
        for spread in [fp32[k].std]
    ]
    layers = [float(np.mean(r)) for r in ratios if r.size]
    return float(np.mean(layers)) if layers else None


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


def _statistics(
    model: onnx.ModelProto, tensors: dict[str, str], data: Dataset
) -> dict[str, ChannelStats]:
    """Channel statistics (axis 1) of `tensors` (key -> tensor name), by key."""
    stats = probe_dataset(model, dict.fromkeys(tensors.values(), 1), data)
    return {key: stats[name] for key, name in tensors.items()}
