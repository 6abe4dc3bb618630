"""Canonicalization: weights become initializers, aliases vanish, nothing else changes."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.graph.validate import check, compare_models
from onnxslim_kd.pipeline.interface import interface
from tests.builders import conv_net, make_model


def _assert_same_outputs(before, after):
    fidelity = compare_models(before, after, random_data(before, batch=3))
    for result in fidelity.values():
        assert result.max_rel_diff <= 1e-5


def test_constant_weights_become_initializers():
    model = conv_net(weights_as_constants=True)
    out, report = canonicalize(model)
    assert report.constants_lifted == 1
    assert not [n for n in out.graph.node if n.op_type == "Constant"]
    assert "conv.w" in {t.name for t in out.graph.initializer}
    check(out)
    _assert_same_outputs(model, out)


def test_identity_alias_resolved():
    model = conv_net(alias_with_identity=True)
    out, report = canonicalize(model)
    assert report.identities_resolved == 1
    assert not [n for n in out.graph.node if n.op_type == "Identity"]
    gemm = next(n for n in out.graph.node if n.op_type == "Gemm")
    assert gemm.input[1] == "fc.w"
    _assert_same_outputs(model, out)


def test_interface_metadata_and_producer_unchanged():
    model = conv_net(weights_as_constants=True, alias_with_identity=True)
    out, _ = canonicalize(model)
    assert interface(out) == interface(model)
    assert (out.producer_name, out.producer_version) == ("tests", "1.0")
    assert list(out.opset_import) == list(model.opset_import)
    assert [n.name for n in out.graph.node] == [
        n.name for n in model.graph.node if n.name not in ("alias", "")
    ]


def test_input_model_is_not_mutated():
    model = conv_net(weights_as_constants=True)
    snapshot = model.SerializeToString()
    canonicalize(model)
    assert model.SerializeToString() == snapshot


def test_exact_shape_arithmetic_is_folded_float_math_is_not():
    """Transpose of a weight and integer shape math fold; a float Mul of constants stays."""
    rng = np.random.default_rng(1)
    weight_t = numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "w_t")
    scale = numpy_helper.from_array(np.float32(2.0), "scale")
    base = numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "base")
    width = numpy_helper.from_array(np.array([0, 2], dtype=np.int64), "width")
    nodes = [
        helper.make_node("Transpose", ["w_t"], ["w"], perm=[1, 0], name="t"),
        helper.make_node("Mul", ["w", "scale"], ["w2"], name="mul_float"),
        helper.make_node("Add", ["base", "width"], ["shape"], name="add_int"),
        helper.make_node("MatMul", ["x", "w2"], ["y"], name="mm"),
        helper.make_node("Reshape", ["y", "shape"], ["out"], name="reshape"),
    ]
    model = make_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3])],
        [weight_t, scale, base, width],
    )
    out, report = canonicalize(model)
    assert report.nodes_folded == 2
    assert [n.name for n in out.graph.node] == ["mul_float", "mm", "reshape"]
    _assert_same_outputs(model, out)


def test_shapes_are_inferred():
    out, _ = canonicalize(conv_net())
    inferred = {v.name for v in out.graph.value_info}
    assert {"c", "b", "r", "p", "f"} <= inferred
