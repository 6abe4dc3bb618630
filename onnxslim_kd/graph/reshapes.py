"""Reshape targets computed at run time, written as constants.

Exporters size a Reshape from the tensor itself: `x.reshape(B, N, heads, D)` with
`B, N = x.shape[:2]` becomes Shape -> Gather -> Unsqueeze -> Concat before every head
split and merge, four to eight small nodes onnxruntime runs (and cannot fold while the
batch is dynamic) for each Reshape. From the shape onnx infers for the Reshape's output
(data propagation on), each target element is written as its fixed size, as 0 (copy the
input's size: the same symbolic dimension at the same axis; allowzero is dropped) or, for
at most one element, as -1; a Reshape with more than one size it cannot name keeps its
run-time target. The caller verifies the result by running it (graph.equivalence), since
equal symbolic dimensions are shape inference's claim.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.names import NameScope
from onnxslim_kd.graph.shape_inference import Dim, inferred_dims
from onnxslim_kd.graph.walk import clone


def constant_reshape_targets(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """(a copy of `model` with every Reshape target it can name made constant and the
    shape chains nothing else reads removed, how many targets were made constant)."""
    result = clone(model)
    graph = result.graph
    dims = inferred_dims(result)
    constants = {t.name for t in graph.initializer}
    names = NameScope(result)
    folded = 0
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[1] in constants:
            continue
        target = _target(dims.get(node.input[0]), dims.get(node.output[0]))
        if target is None:
            continue
        name = names.fresh(f"{node.name or node.output[0]}/target")
        graph.initializer.append(numpy_helper.from_array(np.array(target, np.int64), name))
        node.input[1] = name
        # the target holds no size 0, so allowzero (dynamo sets it) only changes what 0 means
        # here: copy the input's size
        for attr in [a for a in node.attribute if a.name == "allowzero"]:
            node.attribute.remove(attr)
        folded += 1
    if folded:
        cleanup(graph)
    return result, folded


def _target(data: list[Dim] | None, output: list[Dim] | None) -> list | None:
    """The constant target (allowzero 0) that gives `output` from `data`, or None when
    more than one output size is unknown or one is a fixed 0 (that target would copy)."""
    if output is None:
        return None
    target: list[int] = []
    for axis, size in enumerate(output):
        if isinstance(size, int):
            if size == 0:
                return None
            target.append(size)
        elif (
            size is not None and data is not None and axis < len(data) and data[axis] == size
        ):  # fmt: skip
            target.append(0)
        else:
            target.append(-1)
    return target if target.count(-1) <= 1 else None
