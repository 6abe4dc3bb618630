"""Dynamic INT8 for MatMul-heavy models: weights INT8, activations quantized per batch at
run time (onnxruntime's DynamicQuantizeMatMul), no Q/DQ pairs around LayerNorm, Softmax
or GELU.

On transformers the static QDQ graph is often slower than FP32 on CPU while dynamic
MatMul is faster and closer (`benchmarks/quantize/dynamic.py`, batch 1 / 32: the ViT
sample static 0.60x / 0.69x, dynamic 1.15x / 1.04x at unchanged accuracy; 4-layer
encoders of width 256 and 512: static 0.82x / 0.77x and 0.90x / 0.90x at 27 dB, dynamic
1.35x / 1.35x and 1.94x / 2.24x at 43 dB), so `quantize` tries it beside static where
MatMuls with constant weights hold most of the MACs and keeps whichever is faster within
the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnx
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnxslim_kd.data import with_data_shapes
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import resolve_shapes
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.walk import node_label
from onnxslim_kd.quantize.build import quiet_warnings, with_metadata_of
from onnxslim_kd.quantize.target import DataTypes

#: Share of the MACs in MatMuls with constant weights from which dynamic INT8 is tried.
MATMUL_SHARE = 0.5


def weighted_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMuls whose second input is a constant 2-D weight."""
    weights = {t.name for t in model.graph.initializer if len(t.dims) == 2}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]


def matmul_share(model: onnx.ModelProto, data: Dataset) -> float:
    """The share of the model's MACs (at the data's shapes) in `weighted_matmuls`."""
    shapes = resolve_shapes(model, with_data_shapes(model, data, None))
    per_node = model_stats(model, shapes, shapes_optional=True).macs_per_node
    if not per_node:
        return 0.0
    names = set(weighted_matmuls(model))
    labels = {node_label(n, i) for i, n in enumerate(model.graph.node) if n.name in names}
    total = sum(per_node.values())
    return sum(m for label, m in per_node.items() if label in labels) / total if total else 0.0


def build_dynamic(
    prepared: Path,
    types: DataTypes,
    workdir: Path,
    *,
    exclude: Sequence[str] = (),
    only: list[str] | None = None,
) -> onnx.ModelProto:
    """The saved model `prepared` with its MatMuls quantized dynamically (`exclude` kept
    FP32; `only`, when given, quantizes just those)."""
    output = workdir / "dynamic.onnx"
    with quiet_warnings():
        quantize_dynamic(
            str(prepared), str(output), op_types_to_quantize=["MatMul"],
            per_channel=types.per_channel, weight_type=QuantType.QInt8,
            nodes_to_quantize=list(only or []), nodes_to_exclude=list(exclude),
            use_external_data_format=True,
        )  # fmt: skip
    return with_metadata_of(output, prepared)
