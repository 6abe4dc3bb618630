"""SmoothQuant: move activation outliers after a LayerNorm into the next MatMuls' weights.

After LayerNorm a few channels carry most of the range, so one per-tensor activation scale
(static QDQ, or dynamic INT8's per-batch one) leaves the other channels a handful of
steps. Xiao et al. (2023) divide channel j of the activation by s_j and multiply row j of
every weight it feeds by s_j, with s_j = max|X_j|^alpha / max|W_j|^(1 - alpha): the float
model computes the same (X diag(1/s)) (diag(s) W) = X W, and the activation ranges even
out at the weights' expense. Here the division is folded into the LayerNorm's scale and
bias, so the graph keeps its nodes; it applies where every reader of a LayerNorm output is
a MatMul with a constant 2-D weight (Q, K, V; an MLP's first projection) and the scale and
bias are the LayerNorm's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.probe import probe_dataset, whole_batches
from onnxslim_kd.graph.walk import clone, consumers
from onnxslim_kd.quantize.records import range_ratio, rounded

#: Calibration samples the activation ranges are measured on.
SMOOTH_SAMPLES = 64
#: Migration strength of the paper's default.
DEFAULT_ALPHA = 0.5


@dataclass
class Smoothing:
    """What SmoothQuant did: the LayerNorms smoothed, the largest per-channel activation
    range over the median one before and after (the outliers it evened out)."""

    alpha: float
    layers: list[str] = field(default_factory=list)
    outlier_ratio_before: float | None = None
    outlier_ratio_after: float | None = None

    def as_dict(self) -> dict:
        return {
            "alpha": self.alpha,
            "layer_norms": self.layers,
            "outlier_ratio_before": rounded(self.outlier_ratio_before),
            "outlier_ratio_after": rounded(self.outlier_ratio_after),
        }


def describe_smoothing(record: dict) -> str:
    """One line for the log and the report table, from Smoothing.as_dict()."""
    return (
        f"alpha {record['alpha']}: {len(record['layer_norms'])} LayerNorms, largest / median "
        f"channel range {record['outlier_ratio_before']} -> {record['outlier_ratio_after']}"
    )


def smoothable(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """LayerNormalization node name -> the MatMuls reading its output, where every reader
    is a MatMul with a constant [C, N] weight and the LayerNorm's scale and bias are
    initializers no other node reads."""
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers = consumers(graph)
    outputs = {o.name for o in graph.output}
    found = {}
    for node in graph.node:
        if node.op_type != "LayerNormalization" or len(node.input) < 3 or not node.name:
            continue
        if node.output[0] in outputs or any(
            i not in inits or len(readers.get(i, [])) != 1 for i in node.input[1:3]
        ):  # fmt: skip
            continue
        width = inits[node.input[1]].dims
        matmuls = readers.get(node.output[0], [])
        if matmuls and all(
            m.op_type == "MatMul" and m.input[0] == node.output[0] and m.input[1] in inits
            and len(inits[m.input[1]].dims) == 2 and inits[m.input[1]].dims[0] == width[-1]
            and len(readers.get(m.input[1], [])) == 1
            for m in matmuls
        ):  # fmt: skip
            found[node.name] = matmuls
    return found


def smooth(
    model: onnx.ModelProto, data: Dataset, alpha: float = DEFAULT_ALPHA
) -> tuple[onnx.ModelProto, Smoothing]:
    """A copy of `model` with every smoothable LayerNorm -> MatMul group smoothed."""
    record = Smoothing(alpha)
    groups = smoothable(model)
    if not groups:
        return model, record
    data = whole_batches(data.subset(SMOOTH_SAMPLES), fixed_batch(model))
    norms = {n.name: n for n in model.graph.node if n.name in groups}
    probed = probe_dataset(model, {n.output[0]: -1 for n in norms.values()}, data)
    ranges = {name: probed[node.output[0]].absmax for name, node in norms.items()}
    result = clone(model)
    inits = {t.name: t for t in result.graph.initializer}
    before, after = [], []
    for name, matmuls in groups.items():
        weights = [numpy_helper.to_array(inits[m.input[1]]) for m in matmuls]
        weight_range = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        scale = _scale(ranges[name], weight_range, alpha)
        norm = norms[name]
        for tensor in norm.input[1:3]:
            _replace(inits[tensor], numpy_helper.to_array(inits[tensor]) / scale)
        for matmul, weight in zip(matmuls, weights, strict=True):
            _replace(inits[matmul.input[1]], weight * scale[:, None])
        before.append(range_ratio(ranges[name]))
        after.append(range_ratio(ranges[name] / scale))
        record.layers.append(name)
    record.outlier_ratio_before, record.outlier_ratio_after = np.mean(before), np.mean(after)
    return result, record


def _scale(activation: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^alpha / max|W_j|^(1 - alpha); 1 where either range is 0."""
    usable = (activation > 0) & (weight > 0)
    scale = np.ones_like(activation)
    scale[usable] = activation[usable] ** alpha / weight[usable] ** (1 - alpha)
    return np.clip(scale, 1e-5, 1e5).astype(np.float32)


def _replace(tensor: onnx.TensorProto, values: np.ndarray) -> None:
    tensor.CopyFrom(numpy_helper.from_array(values.astype(np.float32), tensor.name))
