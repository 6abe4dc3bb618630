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
from onnxslim_kd.graph.walk import attribute, consumers, rename_input


def fold_batchnorm(graph: onnx.GraphProto) -> int:
    """Fold every Conv -> BatchNormalization pair in place; return how many were folded.

    A pair folds when the Conv output feeds only the BN, is not a graph output, and the
    Conv weight/bias and the BN parameters are initializers. Folded weights get new
    initializers, so weights shared with other nodes are never changed under them.
    """
    weights = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded = 0
    for conv in list(graph.node):
        readers = consumers(graph).get(conv.output[0], []) if conv.op_type == "Conv" else []
        if len(readers) != 1 or conv.output[0] in outputs:
            continue
        bn = readers[0]
        if bn.op_type != "BatchNormalization" or len(bn.output) != 1:
            continue
        params = [weights.get(name) for name in [*conv.input[1:3], *bn.input[1:5]]]
        if len(conv.input) < 3:
            params.insert(1, None)
        if params[0] is None or any(p is None for p in params[2:]) or len(params) != 6:
            continue
        if len(conv.input) > 2 and params[1] is None:
            continue
        _fold_pair(graph, conv, bn, params)
        folded += 1
    if folded:
        cleanup(graph)
    return folded


def _fold_pair(graph: onnx.GraphProto, conv: onnx.NodeProto, bn: onnx.NodeProto, params) -> None:
    weight, bias, gamma, beta, mean, var = (
        None if p is None else numpy_helper.to_array(p).astype(np.float64) for p in params
    )
    scale = gamma / np.sqrt(var + attribute(bn, "epsilon", 1e-5))
    bias = np.zeros_like(mean) if bias is None else bias
    dtype = onnx.helper.tensor_dtype_to_np_dtype(params[0].data_type)
    shape = (-1,) + (1,) * (weight.ndim - 1)
    new_weight = numpy_helper.from_array(
        (weight * scale.reshape(shape)).astype(dtype), f"{conv.name or conv.output[0]}.bn_folded.w"
    )
    new_bias = numpy_helper.from_array(
        ((bias - mean) * scale + beta).astype(dtype), f"{conv.name or conv.output[0]}.bn_folded.b"
    )
    graph.initializer.extend([new_weight, new_bias])
    del conv.input[1:]
    conv.input.extend([new_weight.name, new_bias.name])
    rename_input(graph, bn.output[0], conv.output[0])
    for index, out in enumerate(graph.output):
        if out.name == bn.output[0]:
            graph.output[index].name = conv.output[0]
    graph.node.remove(bn)
