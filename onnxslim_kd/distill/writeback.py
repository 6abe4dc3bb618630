"""Write trained tensors back into the graph they came from, changing nothing else."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.distill.executor import GraphModule
from onnxslim_kd.graph.walk import clone


def write_back(model: onnx.ModelProto, student: GraphModule) -> onnx.ModelProto:
    """A copy of `model` whose initializers (and Constant-node tensors) hold the trained values.

    Names, order, dtypes and shapes of every tensor stay as they were; nodes, inputs,
    outputs, value_info, metadata and opset are untouched because they are never rewritten.
    """
    trained = {
        name: value.detach().cpu().numpy() for name, value in student.named_weights().items()
    }
    out = clone(model)
    for tensor in out.graph.initializer:
        if tensor.name in trained:
            _assign(tensor, trained[tensor.name])
    for node in out.graph.node:
        if node.op_type == "Constant" and node.output[0] in trained:
            _assign_constant(node.attribute[0], trained[node.output[0]])
    return out


def _assign_constant(attr: onnx.AttributeProto, value: np.ndarray) -> None:
    """A Constant node keeps its attribute kind: a tensor, a float or a list of floats."""
    if attr.name == "value":
        _assign(attr.t, value)
    elif attr.name == "value_float":
        attr.f = float(value)
    else:
        attr.floats[:] = value.ravel().tolist()


def _assign(tensor: onnx.TensorProto, value: np.ndarray) -> None:
    """Replace a tensor's data in place, keeping its name and element type."""
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)
    tensor.CopyFrom(numpy_helper.from_array(value.astype(dtype, copy=False), tensor.name))
