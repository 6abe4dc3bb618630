"""Find the layers a factorisation applies to, or the reason a layer is left alone."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.decompose.gemm import GemmLayer
from onnxslim_kd.decompose.layer import Layer
from onnxslim_kd.decompose.matmul import MatMulLayer
from onnxslim_kd.decompose.pointwise import PointwiseConvLayer
from onnxslim_kd.decompose.summary import LayerDecision
from onnxslim_kd.decompose.tucker import TuckerConvLayer
from onnxslim_kd.defaults import DECOMPOSE_METHODS
from onnxslim_kd.graph.walk import attribute

#: Ops that hold a weight worth factorising.
CANDIDATE_OPS = ("Conv", "Gemm", "MatMul")
#: A layer with fewer channels than this on either side cannot pay: the smallest rank is
#: 8, and its two extra passes over memory cost more than they save.
MIN_CHANNELS = 16
METHODS = DECOMPOSE_METHODS


def find_layers(
    model: onnx.ModelProto,
    shapes: dict[str, list[int]],
    method: str = "auto",
    exclude: Iterable[str] = (),
) -> list[Layer | LayerDecision]:
    """Every candidate node in graph order: a factorisable Layer, or why it is skipped.

    `exclude` holds glob patterns (fnmatch) over node names and op types.
    """
    weights = {t.name: t for t in model.graph.initializer}
    patterns = list(exclude)
    found: list[Layer | LayerDecision] = []
    for index, node in enumerate(model.graph.node):
        if node.op_type not in CANDIDATE_OPS or node.domain not in ("", "ai.onnx"):
            continue
        name = node.name or f"{node.op_type}_{index}"
        if any(fnmatch.fnmatchcase(n, p) for p in patterns for n in (name, node.op_type)):
            reason = "excluded by --exclude"
        else:
            match = _match(node, name, weights, shapes)
            if isinstance(match, Layer) and method in ("auto", match.kind):
                found.append(match)
                continue
            reason = (
                match if isinstance(match, str) else f"{match.kind} layer, but --method {method}"
            )
        weight = weights.get(node.input[1]) if len(node.input) > 1 else None
        shape = "x".join(map(str, weight.dims)) if weight is not None else ""
        found.append(LayerDecision(name, node.op_type, shape, reason=reason))
    return found


def _match(
    node: onnx.NodeProto, name: str, weights: dict[str, onnx.TensorProto], shapes
) -> Layer | str:
    """The layer object for `node`, or why it cannot be factorised."""
    if len(node.input) < 2 or node.input[1] not in weights:
        return "weight is not a constant initializer"
    weight = numpy_helper.to_array(weights[node.input[1]])
    if not np.issubdtype(weight.dtype, np.floating):
        return f"weight is {weight.dtype}, not floating point"
    in_shape, out_shape = shapes.get(node.input[0]), shapes.get(node.output[0])
    if in_shape is None or out_shape is None:
        return "input or output shape unknown (give --shape)"
    if node.op_type == "Conv":
        cls = _conv_class(node, weight)
        if isinstance(cls, str):
            return cls
    elif weight.ndim != 2:
        return f"weight is {weight.ndim}-D, not a matrix"
    else:
        cls = GemmLayer if node.op_type == "Gemm" else MatMulLayer
    if min(weight.shape[:2]) < MIN_CHANNELS:
        return f"tiny layer ({'x'.join(map(str, weight.shape))} weight)"
    return cls(node, name, weight, in_shape, out_shape)


def _conv_class(node: onnx.NodeProto, weight: np.ndarray) -> type[Layer] | str:
    group = attribute(node, "group", 1)
    if group != 1:
        kind = "depthwise" if weight.shape[1] == 1 else "grouped"
        return f"{kind} conv (group={group})"
    if weight.ndim < 3:
        return "conv weight without spatial dims"
    return PointwiseConvLayer if all(k == 1 for k in weight.shape[2:]) else TuckerConvLayer
