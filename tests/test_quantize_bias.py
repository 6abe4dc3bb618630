"""Bias correction: each quantized Conv/Gemm's INT32 bias absorbs the mean error its
rounded weights put on its output, measured on the layer's own INT8 input."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.probe import probe_channels
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import bias
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.prepare import prepare
from tests.builders import make_model

#: No timing, no budget, and weights rounded to nearest, so the biases carry the whole
#: mean error (learned rounding takes part of it out first: tests/test_quantize_rounding.py).
UNTIMED = {"bench_runs": 0, "max_drop": 1.0, "min_sqnr": -100.0, "rounding": "nearest"}


def pointwise_net(with_bias: bool = True) -> onnx.ModelProto:
    """input [n,4,6,6] -> 1x1 Conv(4->8) -> Relu -> 1x1 Conv(8->3) -> Conv(3->2, no bias):
    coarse weights whose rounding moves the output means of inputs with a mean of 1."""
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.uniform(-1, 1, (8, 4, 1, 1)), "b1": rng.uniform(-0.1, 0.1, 8),
        "w2": rng.uniform(-1, 1, (3, 8, 1, 1)), "b2": rng.uniform(-0.1, 0.1, 3),
        "w3": rng.uniform(-1, 1, (2, 3, 1, 1)),
    }  # fmt: skip
    node = helper.make_node
    nodes = [
        node("Conv", ["input", "w1", "b1"], ["c1"], name="conv1"),
        node("Relu", ["c1"], ["r1"], name="relu1"),
        node("Conv", ["r1", "w2", *(["b2"] if with_bias else [])], ["c2"], name="conv2"),
        node("Conv", ["c2", "w3"], ["output"], name="conv3"),
    ]
    return make_model(
        nodes, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 4, 6, 6])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 2, 6, 6])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )  # fmt: skip


def _data(count: int = 64, seed: int = 1) -> Dataset:
    values = np.random.default_rng(seed).uniform(0, 2, (count, 4, 6, 6)).astype(np.float32)
    return Dataset({"input": values})


def _dequantized(quantized: onnx.ModelProto, layer: str, index: int) -> np.ndarray:
    """Input `index` of `layer` (its weight or bias) as the INT8 graph dequantizes it."""
    init = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    producers = {o: n for n in quantized.graph.node for o in n.output}
    conv = next(n for n in quantized.graph.node if n.name == layer)
    dq = producers[conv.input[index]]
    values, scale = init[dq.input[0]].astype(np.float64), init[dq.input[1]]
    zero = init[dq.input[2]] if len(dq.input) > 2 else 0
    axes = (-1,) + (1,) * (values.ndim - 1)
    return (values - np.reshape(zero, axes)) * np.reshape(scale, axes)


def test_each_shift_is_the_weight_rounding_error_on_the_layers_own_input():
    """For a 1x1 conv the mean output is W @ mean(input) + b, so the shift must be
    (W - dequantized W) @ mean of the dequantized input the INT8 layer sees, plus the
    bias's own rounding."""
    model, data = pointwise_net(), _data()
    quantized, _ = quantize_model(model, data, QuantizeOptions(bias_correction=False, **UNTIMED))
    prepared, _ = prepare(model)
    shifts, record = bias.bias_shifts(prepared, quantized, data)
    assert set(shifts) == {"conv1", "conv2"} and record.corrected == 2
    producers = {o: n for n in quantized.graph.node for o in n.output}
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for layer, weight, bias_name in (("conv1", "w1", "b1"), ("conv2", "w2", "b2")):
        conv = next(n for n in quantized.graph.node if n.name == layer)
        seen = producers[conv.input[0]].output[0]  # the DequantizeLinear feeding the layer
        stats = probe_channels(quantized, {seen: 1}, data.subset(bias.BIAS_SAMPLES).batches(16))
        error = (weights[weight] - _dequantized(quantized, layer, 1))[:, :, 0, 0]
        expected = error @ stats[seen].mean + weights[bias_name] - _dequantized(quantized, layer, 2)
        assert np.abs(expected).max() > 1e-4  # the rounding does move the means
        np.testing.assert_allclose(shifts[layer], expected, rtol=1e-3, atol=1e-6)


def test_corrected_int8_output_means_come_closer_to_fp32_on_held_out_data():
    model, calib, test = pointwise_net(), _data(), _data(64, seed=7)
    plain, _ = quantize_model(model, calib, QuantizeOptions(bias_correction=False, **UNTIMED))
    corrected, summary = quantize_model(model, calib, QuantizeOptions(**UNTIMED))
    record = summary.bias_correction
    assert record["corrected"] == 2 and record["samples"] == 51  # a fifth held out of 64
    assert record["relative_mean_error_after"] < record["relative_mean_error_before"]
    reference = run(model, test)["output"].mean(axis=(0, 2, 3))
    plain_error = np.abs(run(plain, test)["output"].mean(axis=(0, 2, 3)) - reference)
    corrected_error = np.abs(run(corrected, test)["output"].mean(axis=(0, 2, 3)) - reference)
    assert corrected_error.sum() < 0.5 * plain_error.sum()


def test_only_int32_biases_change_and_layers_kept_float_or_without_bias_are_left_alone():
    model, data = pointwise_net(), _data()
    plain, _ = quantize_model(model, data, QuantizeOptions(bias_correction=False, **UNTIMED))
    corrected, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    before = {t.name: t for t in plain.graph.initializer}
    changed = [t for t in corrected.graph.initializer if t != before[t.name]]
    assert {t.name for t in changed} == {"b1_quantized", "b2_quantized"}
    assert all(t.data_type == TensorProto.INT32 for t in changed)
    assert summary.bias_correction["without_bias"] == ["conv3"]
    kept, summary = quantize_model(model, data, QuantizeOptions(exclude=["conv2"], **UNTIMED))
    original = next(t for t in model.graph.initializer if t.name == "b2")
    assert next(t for t in kept.graph.initializer if t.name == "b2") == original
    assert summary.bias_correction["corrected"] == 1


def test_a_model_with_no_bias_to_correct_says_so():
    model = pointwise_net(with_bias=False)
    _, summary = quantize_model(model, _data(), QuantizeOptions(exclude=["conv1"], **UNTIMED))
    assert summary.bias_correction["corrected"] == 0
    assert summary.bias_correction["without_bias"] == ["conv2", "conv3"]


def test_the_cli_reports_bias_correction_and_turns_it_off(tmp_path, cli):
    model_path, data_path = tmp_path / "model.onnx", tmp_path / "data.npz"
    onnx.save(pointwise_net(), model_path)
    np.savez(data_path, input=_data().inputs["input"])
    for flags, expected in (([], 2), (["--no-bias-correction"], None)):
        report = tmp_path / "report.json"
        result = cli(
            "quantize", model_path, "-o", tmp_path / "q.onnx", "--data", data_path,
            "--bench-runs", "0", "--max-drop", "1", f"--json={report}", *flags,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        record = json.loads(report.read_text())["bias_correction"]
        assert (record if record is None else record["corrected"]) == expected
        row = next(line for line in result.stdout.splitlines() if "bias correction" in line)
        assert ("| off" in row) == (expected is None) and ("2 layers" in row) == bool(expected)


def test_channels_fp32_holds_constant_are_left_out_of_the_reported_error():
    """A Gemm seen on one sample has no spread: its error is not divided by zero."""
    from onnxslim_kd.graph.probe import ChannelStats

    def stats(values):
        record = ChannelStats()
        record.add(np.array(values, np.float32))
        return record

    fp32 = {"conv": stats([[1.0, 3.0]]), "gemm": stats([[2.0]])}
    int8 = {"conv": stats([[2.0, 4.0]]), "gemm": stats([[2.5]])}
    assert bias._relative_error(fp32, int8) == 1.0  # |3 - 2| / std 1, the Gemm left out
    assert bias._relative_error({"gemm": fp32["gemm"]}, {"gemm": int8["gemm"]}) is None
