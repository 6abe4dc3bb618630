"""Learned weight rounding (GPTQ): receptive fields laid out as the layers compute them,
the layer output error it lowers below nearest rounding, onnxruntime's scales kept,
layers in FP32 untouched, and the option end to end on the digits sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset, load_data
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.build import build
from onnxslim_kd.quantize.calibration import calibrate
from onnxslim_kd.quantize.rounding import (
    _from_rows,
    _gptq,
    _patches,
    _to_rows,
    apply_rounding,
    describe_rounding,
    learned_rounding,
    quantized_weights,
)
from onnxslim_kd.quantize.target import choose_data_types
from onnxslim_kd.report.fidelity import output_fidelity
from tests.builders import conv_net, make_model, matmul_net

DIGITS = Path(__file__).resolve().parents[1] / "samples" / "digits"
CHANNELS = 8

CONVS = {
    "3x3 padded": {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
    "stride 2, no padding": {"kernel_shape": [3, 3], "strides": [2, 2]},
    "dilated": {"kernel_shape": [3, 3], "dilations": [2, 2], "pads": [2, 2, 2, 2]},
    "1x1, uneven padding": {"kernel_shape": [1, 1], "pads": [0, 1, 1, 0]},
    "grouped": {"kernel_shape": [3, 3], "group": 2, "pads": [1, 1, 1, 1]},
    "depthwise": {"kernel_shape": [3, 3], "group": CHANNELS, "pads": [1, 1, 1, 1]},
    "1-D": {"kernel_shape": [5], "pads": [2, 2], "strides": [2]},
}


def _conv(attributes: dict) -> tuple[onnx.ModelProto, onnx.NodeProto, np.ndarray, np.ndarray]:
    """A bias-free Conv of x [2, 8, 9, 9] (1-D: [2, 8, 15]), its node, weight and input."""
    rng = np.random.default_rng(0)
    kernel, group = attributes["kernel_shape"], attributes.get("group", 1)
    spatial = [9, 9] if len(kernel) == 2 else [15]
    weight = rng.standard_normal((CHANNELS, CHANNELS // group, *kernel)).astype(np.float32)
    x = rng.standard_normal((2, CHANNELS, *spatial)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attributes)
    model = make_model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(x.ndim)])],
        [numpy_helper.from_array(weight, "w")],
    )
    return model, node, weight, x


@pytest.mark.parametrize("name", CONVS)
def test_receptive_fields_times_weight_rows_are_the_conv_output(name):
    model, node, weight, x = _conv(CONVS[name])
    expected = run(model, Dataset({"x": x}))["y"]
    rows = _patches(node, x, weight.shape[2:])  # [groups, batch x positions, K]
    product = rows @ _to_rows(node, weight).transpose(0, 2, 1)  # [groups, N x P, outputs]
    groups, _, outputs = product.shape
    per_sample = product.reshape(groups, x.shape[0], -1, outputs).transpose(1, 0, 3, 2)
    np.testing.assert_allclose(per_sample.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(_from_rows(node, _to_rows(node, weight), weight.shape), weight)


@pytest.mark.parametrize(
    "op, attributes, weight_shape",
    [("Gemm", {"transB": 1}, (5, 6)), ("Gemm", {}, (6, 5)), ("MatMul", {}, (6, 5))],
)
def test_dense_inputs_times_weight_rows_are_the_layer_output(op, attributes, weight_shape):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal(weight_shape).astype(np.float32)
    x = rng.standard_normal((3, 4, 6) if op == "MatMul" else (4, 6)).astype(np.float32)
    node = helper.make_node(op, ["x", "w"], ["y"], name="dense", **attributes)
    model = make_model(
        [node],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(x.ndim)])],
        [numpy_helper.from_array(weight, "w")],
    )
    expected = run(model, Dataset({"x": x}))["y"]
    product = _patches(node, x, ())[0] @ _to_rows(node, weight)[0].T
    np.testing.assert_allclose(product.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_from_rows(node, _to_rows(node, weight), weight.shape), weight)


def _grid(weights: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row scales with `levels` steps each side, and zero points 0."""
    scale = np.abs(weights).max(axis=2, keepdims=True) / levels
    return np.broadcast_to(scale, weights.shape), np.zeros(weights.shape)


def _energy(error: np.ndarray, hessian: np.ndarray) -> float:
    return float(np.einsum("grk,gkl,grl->", error, hessian, error))


def test_uncorrelated_inputs_of_equal_energy_leave_nearest_rounding():
    """With H a multiple of the identity no column's error can be offset by another's."""
    weights = np.random.default_rng(2).standard_normal((1, 6, 40))
    scale, zero = _grid(weights, 7)
    levels = _gptq(weights, np.eye(40)[None] * 5.0, scale, zero, -7, 7)
    np.testing.assert_array_equal(levels, np.clip(np.rint(weights / scale), -7, 7))


def test_correlated_inputs_lose_less_than_nearest_rounding_on_the_same_grid():
    rng = np.random.default_rng(3)
    inputs = rng.standard_normal((2000, 8)) @ rng.standard_normal((8, 40))  # rank 8, 40 wide
    hessian = (inputs.T @ inputs)[None]
    weights = rng.standard_normal((1, 6, 40))
    scale, zero = _grid(weights, 7)
    levels = _gptq(weights, hessian, scale, zero, -7, 7)
    nearest = np.clip(np.rint(weights / scale), -7, 7)
    assert levels.min() >= -7 and levels.max() <= 7
    assert np.all(levels == np.rint(levels))
    learned_error = _energy(weights - levels * scale, hessian)
    assert learned_error < 0.2 * _energy(weights - nearest * scale, hessian)


def _quantized(model: onnx.ModelProto, data: Dataset, tmp_path: Path, **kwargs) -> onnx.ModelProto:
    """`model` built all-INT8 by onnxruntime (our data types) from ranges on `data`."""
    prepared = save(model, tmp_path / "prepared.onnx")
    ranges, _ = calibrate(model, data, tmp_path)
    return build(prepared, ranges, "minmax", choose_data_types(), tmp_path, **kwargs)


def _int_weights(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {name: slot.values for name, slot in quantized_weights(model).items()}


def _conv_net_data() -> Dataset:
    x = np.random.default_rng(4).standard_normal((32, 3, 8, 8)).astype(np.float32)
    return Dataset({"input": x})


def test_rounding_keeps_the_scales_and_touches_only_quantized_layers(tmp_path):
    model, data = conv_net(), _conv_net_data()
    all_int8 = _quantized(model, data, tmp_path)
    learned, record = learned_rounding(model, all_int8, data)
    assert sorted(learned) == sorted(_int_weights(all_int8)) and record.rounded == len(learned)
    assert record.error_learned < record.error_nearest
    rounded = apply_rounding(all_int8, learned)
    for name, values in _int_weights(rounded).items():
        np.testing.assert_array_equal(values, learned[name])
        assert values.dtype == _int_weights(all_int8)[name].dtype
    scales = {t.name: t.SerializeToString() for t in all_int8.graph.initializer
              if "scale" in t.name}  # fmt: skip
    assert scales and all(
        t.SerializeToString() == scales[t.name] for t in rounded.graph.initializer
        if t.name in scales
    )  # fmt: skip
    gemm = next(n.name for n in model.graph.node if n.op_type == "Gemm")
    partly = apply_rounding(_quantized(model, data, tmp_path, exclude=[gemm]), learned)
    assert gemm not in quantized_weights(partly)
    float_weights = {t.name: t.SerializeToString() for t in model.graph.initializer}
    gemm_weight = next(n.input[1] for n in model.graph.node if n.op_type == "Gemm")
    kept = next(t for t in partly.graph.initializer if t.name == gemm_weight)
    assert kept.SerializeToString() == float_weights[gemm_weight]


def test_a_conv_with_same_padding_is_left_to_nearest_and_reported(tmp_path):
    model, _, _, x = _conv({"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER"})
    data = Dataset({"x": np.concatenate([x] * 8)})
    all_int8 = _quantized(model, data, tmp_path)
    learned, record = learned_rounding(model, all_int8, data)
    assert learned == {} and record.skipped == {"conv": "auto_pad SAME: padding not laid out"}
    assert describe_rounding(record.as_dict()) == "gptq: no layer rounded (1 skipped)"


def test_a_static_batch_model_is_measured_on_whole_batches(tmp_path):
    """x is [2, 6]: of 13 samples the last one cannot make a batch."""
    model = matmul_net()
    data = Dataset({"x": np.random.default_rng(5).standard_normal((13, 6)).astype(np.float32)})
    learned, record = learned_rounding(model, _quantized(model, data, tmp_path), data)
    assert record.samples == 12 and record.rounded == 1 and list(learned) == ["mm"]


def _digits(rounding: str) -> tuple[float, dict, onnx.ModelProto]:
    """Test-set SQNR of all-INT8 digits with `rounding`, its record and the model; without
    bias correction, which takes back part of the same error (its mean)."""
    model = load(DIGITS / "model.onnx")
    calib, test = load_data(DIGITS / "calib.npz", model), load_data(DIGITS / "test.npz", model)
    options = QuantizeOptions(
        rounding=rounding, bench_runs=0, max_drop=1.0, min_sqnr=-1000.0, bias_correction=False
    )
    quantized, summary = quantize_model(model, calib, options)
    (output,) = run(model, test)
    sqnr = output_fidelity(run(model, test)[output], run(quantized, test)[output]).sqnr_db
    return sqnr, summary.rounding, quantized


def test_gptq_rounding_brings_the_digits_model_closer_to_fp32():
    """Measured: 37.1 dB nearest, 38.2 dB learned on the 540 test images, every one of the
    16 layers' calibration output error about 10x lower."""
    nearest_sqnr, nearest_record, nearest = _digits("nearest")
    learned_sqnr, record, learned = _digits("gptq")
    assert nearest_record is None
    assert record["rounded"] == 16 and record["skipped"] == {}
    assert record["relative_output_error_learned"] < record["relative_output_error_nearest"] / 3
    assert 0 < record["weights_changed"] < 0.5
    assert learned_sqnr > nearest_sqnr + 0.5
    moved = [not np.array_equal(a, _int_weights(learned)[k])
             for k, a in _int_weights(nearest).items()]  # fmt: skip
    assert len(moved) == 16 and all(moved)


def test_an_unknown_rounding_is_refused():
    with pytest.raises(InputError, match="--rounding must be one of nearest, gptq, got 'up'"):
        QuantizeOptions(rounding="up")


@pytest.mark.parametrize("asked", [True, False])
def test_quantize_reports_the_rounding_in_its_json_and_table(cli, tmp_path, asked):
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), path)
    np.savez(tmp_path / "d.npz", input=_conv_net_data().inputs["input"])
    flags = [] if asked else ["--rounding", "nearest"]  # gptq is the default
    common = ["--data", tmp_path / "d.npz", "--bench-runs", "0", "--force-int8", *flags]
    result = cli("quantize", path, "-o", tmp_path / "q.onnx", "--json", "-", *common)
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)["rounding"]
    table = cli("quantize", path, "-o", tmp_path / "t.onnx", *common)
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("| weight rounding")]
    expected = describe_rounding(record) if asked else "nearest"
    assert [cell.strip() for cell in row.split("|")[1:3]] == ["weight rounding", expected]
    if asked:
        assert record["method"] == "gptq" and record["rounded"] == 2
    else:
        assert record is None
