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


def voice_activity(opset: int = 17) -> onnx.ModelProto:
    """A voice-activity-like net: audio [batch, 64], a recurrent state [2, batch, 16] (batch
    on axis 1) and a scalar sample rate; outputs the speech probability [batch, 1] and the
    next state [2, batch, 16]."""
    rng = np.random.default_rng(5)
    weights = {
        "w_in": rng.standard_normal((64, 16)) * 0.2, "w_rec": rng.standard_normal((16, 16)) * 0.2,
        "w_out": rng.standard_normal((16, 1)) * 0.5, "rate_ref": np.array(16000.0),
        "zero": np.array([0], np.int64), "one": np.array([1], np.int64),
    }  # fmt: skip
    initializers = [
        numpy_helper.from_array(v if v.dtype == np.int64 else v.astype(np.float32), k)
        for k, v in weights.items()
    ]
    node = helper.make_node
    nodes = [
        node("Gather", ["state", "zero"], ["s0_"], axis=0),
        node("Squeeze", ["s0_", "zero"], ["s0"]),
        node("MatMul", ["audio", "w_in"], ["a"]),
        node("MatMul", ["s0", "w_rec"], ["r"]),
        node("Add", ["a", "r"], ["pre"]),
        node("Cast", ["sr"], ["rate"], to=TensorProto.FLOAT),
        node("Div", ["rate", "rate_ref"], ["gain"]),
        node("Mul", ["pre", "gain"], ["scaled"]),
        node("Tanh", ["scaled"], ["h"]),
        node("MatMul", ["h", "w_out"], ["logit"]),
        node("Sigmoid", ["logit"], ["speech"]),
        node("Unsqueeze", ["h", "zero"], ["h0"]),
        node("Gather", ["state", "one"], ["s1"], axis=0),
        node("Concat", ["h0", "s1"], ["next_state"], axis=0),
    ]
    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes, "vad",
        [value("audio", TensorProto.FLOAT, ["batch", 64]),
         value("state", TensorProto.FLOAT, [2, "batch", 16]),
         value("sr", TensorProto.INT64, [])],
        [value("speech", TensorProto.FLOAT, ["batch", 1]),
         value("next_state", TensorProto.FLOAT, [2, "batch", 16])],
        initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


#: Every command a real family is run through in the tests, as a user types it (short
#: fine-tunes, few timed runs); compress-speedup may end 4 (target missed in budget).
EVERY_COMMAND = {
    "prune": ["prune", "--ratio", "0.3"],
    "decompose": ["decompose"],
    "quantize": ["quantize", "--bench-runs", "2"],
    "compress": ["compress", "--distill-epochs", "1", "--bench-runs", "2"],
    "compress-speedup": ["compress", "--distill-epochs", "1", "--bench-runs", "2",
                         "--target-speedup", "2", "--max-trials", "2"],
}  # fmt: skip
