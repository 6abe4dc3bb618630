"""Did the integer kernels really fuse? Count them in the graph onnxruntime will run.

A QDQ model only says where quantization may happen; onnxruntime fuses
DequantizeLinear -> Conv -> QuantizeLinear into QLinearConv when its rules allow, and
otherwise runs the float Conv between Q/DQ pairs, slower than plain FP32. So the model
is loaded with all optimizations, the optimized graph is written out, and its compute
ops are counted.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx
import onnxruntime as ort

from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.walk import producers

#: Integer kernels a quantized Conv/ConvTranspose/Gemm/MatMul becomes.
INTEGER_KERNELS = frozenset(
    {
        "QLinearConv", "QLinearConvTranspose", "QGemm", "QLinearMatMul", "ConvInteger",
        "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QAttention",
    }
)  # fmt: skip
#: Float compute ops, also after onnxruntime's fusions (FusedConv, NCHWc Conv, ...).
FLOAT_KERNELS = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "FusedConv", "FusedGemm", "FusedMatMul"}
)


@dataclass
class Coverage:
    """Compute ops in the optimized graph: integer, float behind DQ (fusion failed), float."""

    integer: int = 0
    dq_float: int = 0
    float: int = 0
    integer_ops: dict[str, int] = field(default_factory=dict)
    unfused_nodes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        total = self.integer + self.dq_float + self.float
        return self.integer / total if total else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": round(self.ratio, 4)}


def optimized_graph(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph onnxruntime runs after ORT_ENABLE_ALL on this CPU."""
    with tempfile.TemporaryDirectory(prefix="onnxslim-kd-coverage-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        path = save(model, Path(tmp) / "model.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath)


def count_coverage(optimized: onnx.ModelProto) -> Coverage:
    """Classify every Conv/ConvTranspose/Gemm/MatMul-like node of an optimized graph."""
    writers = producers(optimized.graph)
    coverage = Coverage()
    integer_ops: Counter[str] = Counter()
    for node in optimized.graph.node:
        if node.op_type in INTEGER_KERNELS:
            coverage.integer += 1
            integer_ops[node.op_type] += 1
        elif node.op_type in FLOAT_KERNELS:
            # data and weight both dequantized: meant to be integer, fusion failed (a node
            # kept in FP32 on purpose has a float weight, even when its input was quantized)
            fed_by_dq = all(
                writers.get(name) is not None and writers[name].op_type == "DequantizeLinear"
                for name in node.input[:2]
            )
            if fed_by_dq:
                coverage.dq_float += 1
                coverage.unfused_nodes.append(node.name)
            else:
                coverage.float += 1
    coverage.integer_ops = dict(integer_ops)
    return coverage


def coverage_of(model: onnx.ModelProto) -> Coverage:
    return count_coverage(optimized_graph(model))
