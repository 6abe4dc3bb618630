"""SmoothQuant: LayerNorm outlier channels moved into the next MatMuls' weights, exact in
float, and the INT8 error it removes where one channel dominates the range."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.smooth import smooth, smoothable
from onnxslim_kd.report.fidelity import output_fidelity
from tests.builders import make_model

UNTIMED = {"bench_runs": 0, "max_drop": 1.0, "min_sqnr": -100.0, "bias_correction": False}


def outlier_block(residual: bool = False) -> onnx.ModelProto:
    """x [n, t, 16] -> LayerNorm whose channel 3 is scaled 60x (the outlier trained
    transformers grow) -> Q and K projections [16, 8]; `residual` also adds the LayerNorm
    output to x, a reader SmoothQuant cannot rescale."""
    rng = np.random.default_rng(0)
    gamma = np.ones(16)
    gamma[3] = 60.0
    weights = {"gamma": gamma, "beta": rng.uniform(-0.1, 0.1, 16),
               "wq": rng.standard_normal((16, 8)) * 0.3,
               "wk": rng.standard_normal((16, 8)) * 0.3}  # fmt: skip
    node = helper.make_node
    nodes = [
        node("LayerNormalization", ["x", "gamma", "beta"], ["normed"], name="norm", axis=-1),
        node("MatMul", ["normed", "wq"], ["q"], name="query"),
        node("MatMul", ["normed", "wk"], ["k"], name="key"),
        node("Add", ["q", "k"], ["y"], name="join"),
    ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", "t", 8])]
    if residual:
        nodes.append(node("Add", ["x", "normed"], ["skip"], name="residual"))
        outputs.append(helper.make_tensor_value_info("skip", TensorProto.FLOAT, ["n", "t", 16]))
    return make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", "t", 16])], outputs,
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )  # fmt: skip


def _tokens(count: int = 64, seed: int = 1) -> Dataset:
    return Dataset({"x": np.random.default_rng(seed).standard_normal((count, 10, 16), np.float32)})


def test_smoothing_is_exact_in_float_and_evens_out_the_outlier_channel():
    model, data = outlier_block(), _tokens()
    assert list(smoothable(model)) == ["norm"]
    smoothed, record = smooth(model, data, alpha=0.5)
    assert record.layers == ["norm"]
    assert record.outlier_ratio_before > 50 and record.outlier_ratio_after < 8
    test = _tokens(32, seed=5)
    np.testing.assert_allclose(
        run(smoothed, test)["y"], run(model, test)["y"], rtol=1e-4, atol=1e-4
    )
    gamma = numpy_helper.to_array(next(t for t in smoothed.graph.initializer if t.name == "gamma"))
    assert gamma[3] < 60.0 / 2  # the outlier moved into the weights


@pytest.mark.parametrize("mode, gain", [("static", 3), ("dynamic", 6)])
def test_smoothquant_recovers_the_channels_one_outlier_range_flattens(mode, gain):
    """Measured: static 31.4 -> 35.4 dB (its MatMul outputs stay per-tensor), dynamic
    33.6 -> 43.8 dB."""
    model, calib, test = outlier_block(), _tokens(), _tokens(32, seed=5)
    reference = run(model, test)["y"]
    scores = {}
    for alpha in (None, 0.5):
        options = QuantizeOptions(smooth_quant=alpha, mode=mode, **UNTIMED)
        quantized, summary = quantize_model(model, calib, options)
        scores[alpha] = output_fidelity(reference, run(quantized, test)["y"]).sqnr_db
    assert summary.smoothing["layer_norms"] == ["norm"]
    assert scores[0.5] > scores[None] + gain  # dB


def test_a_layer_norm_read_by_anything_but_weighted_matmuls_is_left():
    model = outlier_block(residual=True)
    assert smoothable(model) == {}
    smoothed, record = smooth(model, _tokens())
    assert record.layers == [] and smoothed is model


def test_the_cli_refuses_an_alpha_outside_zero_one(cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(outlier_block(), path)
    np.savez(tmp_path / "d.npz", x=_tokens().inputs["x"])
    result = cli("quantize", path, "-o", tmp_path / "q.onnx", "--data", tmp_path / "d.npz",
                 "--smooth-quant", "1.5")  # fmt: skip
    assert result.code == 2 and not (tmp_path / "q.onnx").exists()
    assert result.stderr.strip().splitlines() == [
        "onnxslim-kd: error: --smooth-quant must be in (0, 1), got 1.5"
    ]
