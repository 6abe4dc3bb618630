"""Full-rank factorisations reproduce every layer; truncated ones are the optimal low rank."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.decompose.candidates import find_layers
from onnxslim_kd.decompose.layer import Layer
from onnxslim_kd.graph.io import resolve_shapes
from onnxslim_kd.graph.names import NameScope
from onnxslim_kd.graph.replace import replace_nodes
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.graph.walk import clone
from tests.builders import make_model

RNG = np.random.default_rng(0)


def _single_layer(op: str, x_shape, weight, y_shape, bias=None, extra_inputs=(), **attrs):
    """A one-node model `op(x, w[, b])`, weight (and bias) as initializers."""
    inits = [numpy_helper.from_array(weight.astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node(op, [*inputs, *extra_inputs], ["y"], name="layer", **attrs)
    return make_model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)],
        inits,
        metadata={"owner": "tests"},
    )


def _layer(model: onnx.ModelProto) -> Layer:
    known = static_shapes(model, resolve_shapes(model, {}))
    (layer,) = find_layers(model, known)
    assert isinstance(layer, Layer), layer
    return layer


def _factorised(model: onnx.ModelProto, ranks=None) -> onnx.ModelProto:
    layer = _layer(model)
    out = clone(model)
    replacement = layer.build(ranks or layer.full_ranks, NameScope(out))
    replace_nodes(out.graph, {"y": (replacement.nodes, replacement.initializers)})
    onnx.checker.check_model(out, full_check=True)
    return out


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]


def _assert_full_rank_parity(model: onnx.ModelProto, x_shape) -> onnx.ModelProto:
    out = _factorised(model)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    expected, got = _run(model, x), _run(out, x)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    return out


@pytest.mark.parametrize(
    ("trans_a", "trans_b", "alpha", "beta", "bias"),
    [
        (*t, *ab, bias)
        for t in itertools.product((0, 1), (0, 1))
        for ab in ((1.0, 1.0), (0.5, 2.0), (-1.5, 0.25))
        for bias in ("vector", "matrix")
    ]
    + [(a, b, 0.5, 1.0, None) for a, b in itertools.product((0, 1), (0, 1))],
)
def test_gemm_full_rank_parity(trans_a, trans_b, alpha, beta, bias):
    m, k, n = 5, 24, 40
    weight = RNG.standard_normal((n, k) if trans_b else (k, n))
    c = {"vector": RNG.standard_normal(n), "matrix": RNG.standard_normal((m, n)), None: None}[bias]
    model = _single_layer(
        "Gemm", [k, m] if trans_a else [m, k], weight, [m, n], c,
        transA=trans_a, transB=trans_b, alpha=alpha, beta=beta,
    )  # fmt: skip
    out = _assert_full_rank_parity(model, [k, m] if trans_a else [m, k])
    first, second = out.graph.node
    assert [first.op_type, second.op_type] == ["Gemm", "Gemm"]
    assert (first.name, second.name) == ("layer/svd_in", "layer/svd_out")
    assert len(second.input) == (3 if bias else 2)


@pytest.mark.parametrize("x_shape", [[5, 24], [2, 7, 24]])
def test_matmul_full_rank_parity_with_2d_and_3d_activations(x_shape):
    model = _single_layer("MatMul", x_shape, RNG.standard_normal((24, 40)), [*x_shape[:-1], 40])
    out = _assert_full_rank_parity(model, x_shape)
    assert [n.op_type for n in out.graph.node] == ["MatMul", "MatMul"]
    assert [list(t.dims) for t in out.graph.initializer] == [[24, 24], [24, 40]]


CONVS = {
    "1x1 stride 2 pad 1 bias": (
        (32, 24, 1, 1),
        [1, 24, 9, 9],
        [1, 32, 6, 6],
        True,
        {"strides": [2, 2], "pads": [1, 1, 1, 1]},
    ),
    "3x3 pad 1 bias": (
        (32, 24, 3, 3),
        [1, 24, 10, 10],
        [1, 32, 10, 10],
        True,
        {"pads": [1, 1, 1, 1]},
    ),
    "3x3 stride 2 dilation 2": (
        (40, 16, 3, 3),
        [2, 16, 13, 13],
        [2, 40, 7, 6],
        True,
        {"strides": [2, 2], "pads": [2, 1, 2, 1], "dilations": [2, 2]},
    ),
    "3x5 no pad no bias": ((24, 32, 3, 5), [1, 32, 8, 9], [1, 24, 6, 5], False, {}),
    "3x3 same_upper": (
        (24, 24, 3, 3),
        [1, 24, 7, 7],
        [1, 24, 4, 4],
        True,
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
    ),
}


@pytest.mark.parametrize("case", list(CONVS))
def test_conv_full_rank_parity(case):
    w_shape, x_shape, y_shape, has_bias, attrs = CONVS[case]
    weight = RNG.standard_normal(w_shape)
    bias = RNG.standard_normal(w_shape[0]) if has_bias else None
    model = _single_layer("Conv", x_shape, weight, y_shape, bias, **attrs)
    out = _assert_full_rank_parity(model, x_shape)
    names = [n.name for n in out.graph.node]
    if w_shape[2:] == (1, 1):
        assert names == ["layer/svd_in", "layer/svd_out"]
    else:
        assert names == ["layer/tucker_in", "layer/tucker_core", "layer/tucker_out"]
        core = out.graph.node[1]
        assert {a.name: helper.get_attribute_value(a) for a in core.attribute} == {
            k: v.encode() if isinstance(v, str) else v for k, v in attrs.items()
        }
    last = out.graph.node[-1]
    assert list(last.input[2:]) == (["b"] if has_bias else []) and list(last.output) == ["y"]
    assert "w" not in {t.name for t in out.graph.initializer}


def test_truncated_svd_is_the_optimal_low_rank_approximation():
    weight = RNG.standard_normal((48, 64))
    model = _single_layer("MatMul", [3, 48], weight, [3, 64])
    out = _factorised(model, (16,))
    p, q = (numpy_helper.to_array(t) for t in out.graph.initializer)
    assert p.shape == (48, 16) and q.shape == (16, 64)
    sigma = np.linalg.svd(weight, compute_uv=False)
    error = np.linalg.norm(weight - p.astype(np.float64) @ q)
    assert error == pytest.approx(np.sqrt(np.sum(sigma[16:] ** 2)), rel=1e-4)


def test_tucker_shapes_and_hooi_not_worse_than_hosvd():
    weight = RNG.standard_normal((64, 48, 3, 3)).astype(np.float32)
    model = _single_layer("Conv", [1, 48, 6, 6], weight, [1, 64, 4, 4])
    layer = _layer(model)
    first, core, last = layer.spectrum.factors(24, 16)
    assert (first.shape, core.shape, last.shape) == ((64, 24), (24, 16, 3, 3), (48, 16))
    rebuilt = np.einsum("rs...,or,is->oi...", core, first, last)
    hosvd = layer.spectrum.factors(24, 16, steps=0)
    rebuilt_hosvd = np.einsum("rs...,or,is->oi...", hosvd[1], hosvd[0], hosvd[2])
    assert np.linalg.norm(weight - rebuilt) <= np.linalg.norm(weight - rebuilt_hosvd) + 1e-3
    out = _factorised(model, (24, 16))
    assert [list(t.dims) for t in out.graph.initializer] == [
        [16, 48, 1, 1],
        [24, 16, 3, 3],
        [64, 24, 1, 1],
    ]
