"""The stem (a first Conv on a few-channel image input) is timed in FP32 beside all-INT8,
and kept in FP32 only when that is measured faster."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cli.run.quantize import render
from onnxslim_kd.bench import latency
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.stem import STEM_REASON, stem_region
from tests.timings import fake_bench

DIGITS_STEM = ["/stem/stem.0/Conv", "/stem/stem.2/Relu"]


def _net(channels: int, after: list[onnx.NodeProto], out: str) -> onnx.ModelProto:
    """x (1, channels, 8, 8) -> Conv 'stem' -> `after` nodes (reading 'c') -> `out`."""
    weight = numpy_helper.from_array(np.ones((4, channels, 3, 3), np.float32), "w")
    stem = helper.make_node("Conv", ["x", "w"], ["c"], name="stem", pads=[1, 1, 1, 1])
    graph = helper.make_graph(
        [stem, *after], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 8, 8])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], [weight],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _silu(source: str, name: str) -> list[onnx.NodeProto]:
    return [
        helper.make_node("Sigmoid", [source], [f"{name}_s"], name=f"{name}_sigmoid"),
        helper.make_node("Mul", [source, f"{name}_s"], [name], name=f"{name}_mul"),
    ]


def test_the_stem_is_the_conv_on_the_image_and_its_activation_chain():
    clip = helper.make_node("Clip", ["c"], ["r"], name="clip")
    hard_swish = helper.make_node("HardSwish", ["r"], ["h"], name="hswish")
    pool = helper.make_node("MaxPool", ["h"], ["y"], name="pool", kernel_shape=[2, 2])
    assert stem_region(_net(3, [clip, hard_swish, pool], "y")) == ["stem", "clip", "hswish"]
    assert stem_region(_net(3, _silu("c", "y"), "y")) == ["stem", "y_sigmoid", "y_mul"]


def test_no_stem_on_a_wide_input_and_a_shared_tensor_ends_it():
    assert stem_region(_net(16, _silu("c", "y"), "y")) == []
    # the Sigmoid's output is read beside the Mul: not a SiLU, so the stem is the Conv alone
    shared = [*_silu("c", "m"), helper.make_node("Add", ["m", "m_s"], ["y"], name="add")]
    assert stem_region(_net(3, shared, "y")) == ["stem"]


def test_the_stem_is_found_through_the_inputs_normalization_and_beside_a_shape():
    """`(x - mean) / std` before the Conv, and a Shape of the input (dynamic sizes), as
    exporters write them."""
    mean = numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, np.float32), "mean")
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    nodes = [
        helper.make_node("Shape", ["x"], ["size"], name="size"),
        helper.make_node("Sub", ["x", "mean"], ["centred"], name="sub"),
        helper.make_node("Div", ["centred", "mean"], ["scaled"], name="div"),
        helper.make_node("Conv", ["scaled", "w"], ["c"], name="stem"),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("size", TensorProto.INT64, None)], [mean, weight],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert stem_region(model) == ["sub", "div", "stem", "relu"]
    # a normalization by a tensor that is not constant is not one: no stem
    model.graph.node[2].input[1] = "x"
    assert stem_region(model) == []


@pytest.fixture(scope="module")
def digits_int8(digits):
    model = load(digits / "model.onnx")
    return model, load_data(digits / "calib.npz", model, samples=32)


def _float_convs(model: onnx.ModelProto) -> list[str]:
    """Conv nodes whose weight is a float initializer (not a DequantizeLinear output)."""
    weights = {init.name for init in model.graph.initializer if init.data_type == 1}
    return [n.name for n in model.graph.node if n.op_type == "Conv" and n.input[1] in weights]


def test_the_stem_stays_fp32_when_that_is_measured_faster(digits_int8, monkeypatch):
    model, calib = digits_int8
    options = QuantizeOptions(samples=16, bench_runs=10)
    monkeypatch.setattr(latency, "bench", fake_bench({"static": 1.2, "static+stem-fp32": 1.5}))
    quantized, summary = quantize_model(model, calib, options)
    assert summary.result == "int8" and summary.schemes["static+stem-fp32"]["speedup"] == 1.5
    assert [m["label"] for m in summary.latency["models"]] == ["fp32", "static+stem-fp32"]
    assert {n: summary.excluded[n] for n in DIGITS_STEM} == dict.fromkeys(DIGITS_STEM, STEM_REASON)
    assert _float_convs(quantized) == ["/stem/stem.0/Conv"]
    assert summary.coverage["integer"] == summary.schemes["static"]["integer_kernels"] - 1
    assert summary.budget_met and summary.fidelity["accuracy_int8"] >= 0.95
    assert [o.name for o in quantized.graph.output] == [o.name for o in model.graph.output]
    table = render(summary, "out.onnx")
    assert "| kept in FP32 " in table
    assert "stem /stem/stem.0/Conv + /stem/stem.2/Relu (faster in FP32)" in table


def test_the_stem_is_quantized_when_int8_is_faster_there(digits_int8, monkeypatch):
    model, calib = digits_int8
    monkeypatch.setattr(latency, "bench", fake_bench({"static": 1.5, "static+stem-fp32": 1.2}))
    quantized, summary = quantize_model(model, calib, QuantizeOptions(samples=16, bench_runs=10))
    assert summary.scheme == "static" and not set(DIGITS_STEM) & set(summary.excluded)
    assert _float_convs(quantized) == []
    # untimed, nothing can tell the two apart: the stem variant is not built
    _, untimed = quantize_model(model, calib, QuantizeOptions(samples=16, bench_runs=0))
    assert set(untimed.schemes) == {"static"}
