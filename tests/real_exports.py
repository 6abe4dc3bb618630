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


def two_heads(model: onnx.ModelProto) -> onnx.ModelProto:
    """A second, regression output beside the class scores: 2x the first output + 1."""
    out = clone(model)
    first = out.graph.output[0]
    out.graph.initializer.extend([
        numpy_helper.from_array(np.array(2.0, np.float32), "box.scale"),
        numpy_helper.from_array(np.array(1.0, np.float32), "box.shift"),
    ])  # fmt: skip
    out.graph.node.extend([
        helper.make_node("Mul", [first.name, "box.scale"], ["box.scaled"], name="box_mul"),
        helper.make_node("Add", ["box.scaled", "box.shift"], ["box"], name="box_add"),
    ])  # fmt: skip
    dims = [d.dim_param or d.dim_value for d in first.type.tensor_type.shape.dim]
    out.graph.output.append(helper.make_tensor_value_info("box", TensorProto.FLOAT, dims))
    onnx.checker.check_model(out)
    return out
