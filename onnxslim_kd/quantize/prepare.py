"""Bring a model into the form onnxruntime's quantizer handles best, and say what changed.

Weights must be initializers (the quantizer skips Constant nodes), BatchNorm must be
folded (a float BN between Conv and QuantizeLinear blocks the integer fusion),
per-channel QDQ needs opset >= 13, and exclusions need every node to have a name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

import onnx

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.graph.fold_bn import fold_batchnorm
from onnxslim_kd.graph.load import opset_of
from onnxslim_kd.graph.shape_inference import infer_shapes

#: Per-channel QuantizeLinear/DequantizeLinear (the `axis` attribute) arrived in opset 13.
MIN_QDQ_OPSET = 13
#: Ops that only appear in models that are already quantized.
QUANTIZED_OPS = frozenset(
    {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
        "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd", "QLinearMul",
        "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "MatMulNBits",
    }
)  # fmt: skip


@dataclass
class PrepareReport:
    """What pre-processing changed before quantization."""

    canonicalize: dict = field(default_factory=dict)
    batchnorms_folded: int = 0
    opset_before: int = 0
    opset_after: int = 0
    nodes_named: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def refuse_quantized(model: onnx.ModelProto) -> None:
    """Raise InputError when the model already holds quantization ops."""
    found = Counter(n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS)
    if found:
        ops = ", ".join(f"{count} {op}" for op, count in found.most_common(3))
        raise InputError(f"the model is already quantized ({ops}); quantize the FP32 model instead")


def prepare(model: onnx.ModelProto) -> tuple[onnx.ModelProto, PrepareReport]:
    """Canonical, BN-folded, opset >= 13, fully named, shape-inferred copy of `model`."""
    refuse_quantized(model)
    prepared, canonical = canonicalize(model)
    report = PrepareReport(canonicalize=canonical.as_dict(), opset_before=opset_of(prepared))
    report.batchnorms_folded = fold_batchnorm(prepared.graph)
    if report.opset_before < MIN_QDQ_OPSET:
        prepared = onnx.version_converter.convert_version(prepared, MIN_QDQ_OPSET)
    report.opset_after = opset_of(prepared)
    report.nodes_named = _name_nodes(prepared.graph)
    return infer_shapes(prepared), report


def _name_nodes(graph: onnx.GraphProto) -> int:
    """Give unnamed nodes unique names (`Conv_12`) so they can be excluded and reported."""
    taken = {node.name for node in graph.node}
    named = 0
    for index, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{index}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)
            named += 1
    return named
