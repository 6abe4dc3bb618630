"""Model statistics: parameters, MACs per node, file size, op histogram."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import model_inputs, model_outputs, resolve_shapes
from onnxslim_kd.graph.load import opset_of
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.graph.walk import attribute, node_label

#: Inputs that are statistics or quantization constants, not weights: BN running
#: mean/var (torch counts them as buffers, and counting them would make BN-folded and
#: unfolded exports disagree) and the scales/zero points of Q/DQ nodes.
_NOT_WEIGHTS = {
    "BatchNormalization": (3, 4),
    "QuantizeLinear": (1, 2),
    "DequantizeLinear": (1, 2),
}
#: Integer element types that hold (quantized) weights rather than shapes or indices.
_WEIGHT_INTEGERS = {np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16), np.dtype(np.uint16)}


@dataclass
class ModelStats:
    """What `inspect` reports; `macs` is None when shapes could not be made concrete."""

    params: int
    macs: int | None
    size_bytes: int
    nodes: int
    op_counts: dict[str, int]
    inputs: list[dict]
    outputs: list[dict]
    opset: int
    shapes: dict[str, list[int]] = field(default_factory=dict)
    macs_per_node: dict[str, int] = field(default_factory=dict)
    macs_unknown: str | None = None  # why MACs could not be counted (no concrete shapes)

    def as_dict(self, per_node: bool = False) -> dict:
        record = {
            "params": self.params,
            "macs": self.macs,
            "macs_unknown": self.macs_unknown,
            "size_bytes": self.size_bytes,
            "nodes": self.nodes,
            "op_counts": self.op_counts,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "opset": self.opset,
            "shapes_used": self.shapes,
        }
        if per_node:
            record["macs_per_node"] = self.macs_per_node
        return record


def model_stats(
    model: onnx.ModelProto,
    shapes: dict[str, list[int]] | None = None,
    batch: int = 1,
    *,
    shapes_optional: bool = False,
) -> ModelStats:
    """Count parameters and MACs; dynamic axis 0 becomes `batch`, other dims need `shapes`.

    With `shapes_optional` (inspect) a model whose other dims are dynamic still gets
    everything that needs no shape, and `macs` None with the reason.
    """
    unknown = None
    try:
        concrete = resolve_shapes(model, shapes or {}, batch)
    except InputError as exc:
        if not shapes_optional or "dynamic axis" not in str(exc):
            raise
        concrete, unknown = {}, f"{exc}, or data with --data"
    per_node = macs_per_node(model, static_shapes(model, concrete)) if not unknown else {}
    return ModelStats(
        params=count_params(model),
        macs=None if unknown else sum(per_node.values()),
        macs_unknown=unknown,
        size_bytes=model.ByteSize(),
        nodes=len(model.graph.node),
        op_counts=dict(Counter(node.op_type for node in model.graph.node).most_common()),
        inputs=[spec.as_dict() for spec in model_inputs(model)],
        outputs=[spec.as_dict() for spec in model_outputs(model)],
        opset=opset_of(model),
        shapes=concrete,
        macs_per_node=per_node,
    )


def count_params(model: onnx.ModelProto) -> int:
    """Elements of weight initializers and Constant-node weights (float, or 8/16-bit
    integers once quantized), so canonicalization never changes the count;
    BN statistics, Q/DQ scales and zero points, and shape tensors excluded."""
    statistics = {
        node.input[i]
        for node in model.graph.node
        for i in _NOT_WEIGHTS.get(node.op_type, ())
        if i < len(node.input)
    }
    dequantized = {n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    total = 0
    tensors = [(t.name, t) for t in model.graph.initializer]
    tensors += [  # exporters that keep weights in Constant nodes (opset 11 exports)
        (node.output[0], attr.t)
        for node in model.graph.node
        if node.op_type == "Constant"
        for attr in node.attribute
        if attr.name == "value"
    ]
    for name, tensor in tensors:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
        quantized = dtype in _WEIGHT_INTEGERS or name in dequantized  # int32 biases too
        weight = np.issubdtype(dtype, np.floating) or quantized
        if name not in statistics and weight:
            total += math.prod(tensor.dims)
    return total


def macs_per_node(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> dict[str, int]:
    """Multiply-accumulates of each Conv, ConvTranspose, Gemm, MatMul and LSTM/GRU/RNN node."""
    macs: dict[str, int] = {}
    for index, node in enumerate(model.graph.node):
        rule = MAC_RULES.get(node.op_type)
        if rule is None:
            continue
        ins = [shapes.get(name) for name in node.input]
        out = next((shapes.get(name) for name in node.output if name), None)  # LSTM: Y unused
        if out is None or any(s is None for s in ins[:2]):
            continue
        macs[node_label(node, index)] = rule(node, ins, out)
    return macs


def _conv_macs(node, ins, out) -> int:
    weight = ins[1]  # [C_out, C_in / group, *kernel]
    return math.prod(out) * math.prod(weight[1:])


def _conv_transpose_macs(node, ins, out) -> int:
    weight = ins[1]  # [C_in, C_out / group, *kernel]
    return math.prod(ins[0]) * math.prod(weight[1:])


def _gemm_macs(node, ins, out) -> int:
    a = ins[0]
    k = a[0] if attribute(node, "transA", 0) else a[1]
    return math.prod(out) * k


def _matmul_macs(node, ins, out) -> int:
    return math.prod(out) * ins[0][-1]


def _recurrent_macs(node, ins, out) -> int:
    """Every step (of T x N) multiplies its input by W and its state by R, per direction:
    W is [directions, gates * hidden, input], R [directions, gates * hidden, hidden]."""
    steps, weights, recurrent = ins[0][:-1], ins[1], ins[2]
    return math.prod(steps) * (math.prod(weights) + math.prod(recurrent or [0]))


MAC_RULES = {
    "Conv": _conv_macs,
    "ConvTranspose": _conv_transpose_macs,
    "Gemm": _gemm_macs,
    "MatMul": _matmul_macs,
    "LSTM": _recurrent_macs,
    "GRU": _recurrent_macs,
    "RNN": _recurrent_macs,
}
