"""Fold inference-mode BatchNormalization into the Conv that feeds it.

A BN left behind a Conv stops onnxruntime's quantizer from fusing the Conv with its
output QuantizeLinear, and its own per-channel affine becomes a float op between
integer kernels. Folding is exact up to float rounding: W' = W * s, b' = (b - mean) * s + beta
with s = gamma / sqrt(var + eps).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.walk import attribute, consumers


def fold_batchnorm(graph: onnx.GraphProto) -> int:
    """Fold every Conv -> BatchNormalization pair in place; return how many were folded.

    A pair folds when the Conv output feeds only the BN and is not a graph output, and the
    Conv weight/bias and the BN parameters are initializers. The Conv takes over the BN's
    output name, and folded weights get new initializers, so weights shared with other
    nodes never change under them.
    """
    weights = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    readers = consumers(graph)
    folded = 0
    for conv in list(graph.node):
        if conv.op_type != "Conv" or conv.output[0] in outputs:
            continue
        bn = readers.get(conv.output[0], [])
        if len(bn) != 1 or bn[0].op_type != "BatchNormalization" or len(bn[0].output) != 1:
            continue
        names = [*conv.input[1:3], *bn[0].input[1:5]]
        if len(names) != len(conv.input) + 3 or not all(n in weights for n in names):
            continue
        _fold_pair(graph, conv, bn[0], [numpy_helper.to_array(weights[n]) for n in names])
        folded += 1
    if folded:
        cleanup(graph)
    return folded


def _fold_pair(
    graph: onnx.GraphProto, conv: onnx.NodeProto, bn: onnx.NodeProto, arrays: list[np.ndarray]
) -> None:
    dtype = arrays[0].dtype
    weight, *rest = (a.astype(np.float64) for a in arrays)
    gamma, beta, mean, var = rest[-4:]
    bias = rest[0] if len(rest) == 5 else np.zeros_like(mean)
    scale = gamma / np.sqrt(var + attribute(bn, "epsilon", 1e-5))
    prefix = conv.name or conv.output[0]
    new_weight = numpy_helper.from_array(
        (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(dtype),
        f"{prefix}.bn_folded.weight",
    )
    new_bias = numpy_helper.from_array(
        ((bias - mean) * scale + beta).astype(dtype), f"{prefix}.bn_folded.bias"
    )
    graph.initializer.extend([new_weight, new_bias])
    del conv.input[1:]
    conv.input.extend([new_weight.name, new_bias.name])
    conv.output[0] = bn.output[0]
    graph.node.remove(bn)
