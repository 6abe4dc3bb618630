"""Small hand-built ONNX models for tests, each exercising one graph-core feature."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _rng() -> np.random.Generator:
    return np.random.default_rng(0)


def make_model(
    nodes, inputs, outputs, initializers=(), opset: int = OPSET, metadata=None
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "test", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.producer_name, model.producer_version = "tests", "1.0"
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def conv_net(weights_as_constants: bool = False, alias_with_identity: bool = False):
    """input [batch,3,8,8] -> Conv(3->4,3x3,pad 1) -> BN -> Relu -> GAP -> Flatten -> Gemm(4->5).

    `weights_as_constants` stores the conv weight in a Constant node; `alias_with_identity`
    feeds the Gemm weight through an Identity of an initializer, as torch's legacy exporter
    does for de-duplicated tensors.
    """
    rng = _rng()
    tensors = {
        "conv.w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv.b": rng.standard_normal(4).astype(np.float32),
        "bn.scale": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "bn.bias": rng.standard_normal(4).astype(np.float32),
        "bn.mean": rng.standard_normal(4).astype(np.float32),
        "bn.var": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "fc.w": rng.standard_normal((5, 4)).astype(np.float32),
        "fc.b": rng.standard_normal(5).astype(np.float32),
    }
    nodes = []
    initializers = []
    for name, value in tensors.items():
        if weights_as_constants and name == "conv.w":
            nodes.append(
                helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))
            )
        else:
            initializers.append(numpy_helper.from_array(value, name))
    fc_weight = "fc.w"
    if alias_with_identity:
        nodes.append(helper.make_node("Identity", ["fc.w"], ["fc.w.alias"], name="alias"))
        fc_weight = "fc.w.alias"
    nodes += [
        helper.make_node("Conv", ["input", "conv.w", "conv.b"], ["c"], name="conv", pads=[1] * 4),
        helper.make_node(
            "BatchNormalization",
            ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"],
            ["b"],
            name="bn",
        ),
        helper.make_node("Relu", ["b"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", fc_weight, "fc.b"], ["logits"], name="fc", transB=1),
    ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        initializers,
        metadata={"class_names": "a,b,c,d,e"},
    )


def matmul_net(opset: int = OPSET) -> onnx.ModelProto:
    """input [2,6] -> MatMul [6,3]: 36 MACs, 18 params; the smallest model of a given opset."""
    weight = numpy_helper.from_array(_rng().standard_normal((6, 3)).astype(np.float32), "w")
    return make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [weight],
        opset=opset,
    )
