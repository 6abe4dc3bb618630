"""Models shaped the way real exports are: dynamic H/W, a static batch of 1 with the batch
baked into a Reshape, several outputs. Built from the small test nets, no downloads."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.graph.walk import clone


def dynamic_spatial(model: onnx.ModelProto, names: tuple[str, str] = ("h", "w")) -> onnx.ModelProto:
    """The model with its first input's H and W symbolic, as detectors are exported."""
    out = clone(model)
    dims = out.graph.input[0].type.tensor_type.shape.dim
    for dim, name in zip(dims[2:], names, strict=True):
        dim.Clear()
        dim.dim_param = name
    del out.graph.value_info[:]
    onnx.checker.check_model(out)
    return out


def static_batch(model: onnx.ModelProto, batch: int = 1) -> onnx.ModelProto:
    """The model exported without dynamic_axes: batch fixed on inputs and outputs, and its
    Flatten written as `x.view(batch, -1)` (a Reshape to the constant [batch, -1])."""
    out = clone(model)
    for value in [*out.graph.input, *out.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    for index, node in enumerate(out.graph.node):
        if node.op_type == "Flatten":
            shape = numpy_helper.from_array(np.array([batch, -1], np.int64), "view_shape")
            out.graph.initializer.append(shape)
            reshape = helper.make_node(
                "Reshape", [node.input[0], "view_shape"], list(node.output), name=node.name
            )
            out.graph.node.remove(node)
            out.graph.node.insert(index, reshape)
            break
    del out.graph.value_info[:]
    onnx.checker.check_model(out)
    return out


def face_like(model: onnx.ModelProto) -> onnx.ModelProto:
    """Box regression [N,4], landmarks [N,10] and a face probability Softmax [N,2], all read
    from the classifier's input features, in that order (the box output first)."""
    out = clone(model)
    head = next(n for n in out.graph.node if n.op_type == "Gemm")
    features, width = (
        head.input[0],
        numpy_helper.to_array(
            next(t for t in out.graph.initializer if t.name == head.input[1])
        ).shape[1],
    )
    rng = np.random.default_rng(3)
    del out.graph.output[:]
    for name, size in (("box", 4), ("landmarks", 10), ("face_logits", 2)):
        weight = rng.standard_normal((width, size)).astype(np.float32)
        out.graph.initializer.append(numpy_helper.from_array(weight, f"{name}.w"))
        out.graph.node.append(helper.make_node("MatMul", [features, f"{name}.w"], [name]))
    out.graph.node.remove(head)
    out.graph.node.append(helper.make_node("Softmax", ["face_logits"], ["face"], axis=1))
    for name, size in (("box", 4), ("landmarks", 10), ("face", 2)):
        out.graph.output.append(
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", size])
        )
    onnx.checker.check_model(out)
    return out
