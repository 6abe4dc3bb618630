"""Parameters and MACs against hand-computed numbers."""

from __future__ import annotations

import re

import pytest

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import parse_shapes
from onnxslim_kd.graph.stats import model_stats
from tests.builders import conv_net, matmul_net


def test_conv_net_params_exclude_bn_statistics():
    stats = model_stats(conv_net())
    # conv 4*3*3*3 + 4, BN scale+bias 4+4, fc 5*4 + 5
    assert stats.params == 108 + 4 + 8 + 20 + 5


def test_conv_net_macs_at_batch_2():
    stats = model_stats(conv_net(), batch=2)
    conv = 2 * 4 * 8 * 8 * 3 * 3 * 3
    gemm = 2 * 5 * 4
    assert stats.macs_per_node == {"conv": conv, "fc": gemm}
    assert stats.macs == conv + gemm
    assert stats.shapes == {"input": [2, 3, 8, 8]}


def test_explicit_shape_overrides():
    stats = model_stats(conv_net(), parse_shapes(["input=4x3x8x8"]))
    assert stats.macs_per_node["conv"] == 4 * 4 * 8 * 8 * 27


@pytest.mark.parametrize("shape, message", [
    ("input=1x3x16x16", "axis 2 of input 'input' [batch,3,8,8] is fixed at 8"),
    ("input=1x3x8", "has rank 3; input 'input' [batch,3,8,8] has rank 4"),
])  # fmt: skip
def test_a_shape_that_contradicts_the_model_is_refused(shape, message):
    with pytest.raises(InputError, match=re.escape(message)):
        model_stats(conv_net(), parse_shapes([shape]))


def test_matmul_and_op_histogram():
    stats = model_stats(matmul_net())
    assert (stats.params, stats.macs, stats.op_counts, stats.opset) == (18, 36, {"MatMul": 1}, 17)


@pytest.mark.parametrize(
    "items, message",
    [
        (["input=1x3xAx8"], "expected NAME=D1xD2"),
        (["input=0x3x8x8"], "must be positive"),
        (["other=1x3x8x8"], "unknown input 'other'"),
    ],
)
def test_bad_shapes(items, message):
    with pytest.raises(InputError, match=message):
        model_stats(conv_net(), parse_shapes(items))


def test_dynamic_spatial_dims_need_a_shape():
    model = conv_net()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param = "height"
    with pytest.raises(InputError, match="dynamic axis 2; give its shape"):
        model_stats(model)


def test_quantized_weights_still_count_as_parameters(digits):
    import onnxslim_kd as sk
    from onnxslim_kd.quantize.api import quantize_model

    model = sk.load(digits / "model.onnx")
    quantized, _ = quantize_model(model, sk.load_data(digits / "calib.npz", model, samples=32))
    assert model_stats(quantized).params == model_stats(model).params
