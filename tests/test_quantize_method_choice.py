"""`--method auto`: every candidate judged on the held-out data as the budget judges it,
the best kept, and the model it returns the one that method alone would give."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.method_choice import AUTO_METHODS, choose_method, describe_choice
from tests.builders import conv_net, make_model


def _classifier(weight: np.ndarray) -> onnx.ModelProto:
    """x [n, 6] -> MatMul(weight [6, 4]) -> logits."""
    return make_model(
        [helper.make_node("MatMul", ["x", "w"], ["logits"], name="fc")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 4])],
        [numpy_helper.from_array(weight.astype(np.float32), "w")],
    )


def _labelled() -> tuple[np.ndarray, Dataset]:
    rng = np.random.default_rng(0)
    weight, x = rng.standard_normal((6, 4)), rng.standard_normal((200, 6)).astype(np.float32)
    return weight, Dataset({"x": x}, labels=(x @ weight).argmax(1))


def test_the_candidate_that_keeps_the_most_accuracy_is_chosen_wherever_it_is_listed():
    weight, data = _labelled()
    noise = np.random.default_rng(1).standard_normal(weight.shape)
    candidates = {"minmax": _classifier(weight + noise), "mse": _classifier(weight + 0.01 * noise)}
    choice = choose_method(_classifier(weight), candidates, data, 0.01, 30.0)
    assert choice.chosen == "mse"
    far, near = choice.scores["minmax"], choice.scores["mse"]
    assert far["metric"] == near["metric"] == "accuracy"
    assert far["drop"] > near["drop"] >= 0 and not far["ok"]
    assert near["worst_sqnr_db"] > far["worst_sqnr_db"]
    line = describe_choice(choice.as_dict())
    assert line.startswith("mse chosen on 200 held-out samples (mse accuracy ")
    assert ", minmax accuracy " in line


def test_on_equal_scores_the_first_method_is_kept():
    weight, data = _labelled()
    candidates = {"minmax": _classifier(weight), "mse": _classifier(weight)}
    assert choose_method(_classifier(weight), candidates, data, 0.01, 30.0).chosen == "minmax"


def _quantized(method: str) -> tuple[onnx.ModelProto, dict]:
    x = np.random.default_rng(2).standard_normal((40, 3, 8, 8)).astype(np.float32)
    options = QuantizeOptions(method=method, bench_runs=0, samples=40)
    quantized, summary = quantize_model(conv_net(), Dataset({"input": x}), options)
    return quantized, summary.calibration


def test_auto_returns_what_the_chosen_method_alone_returns():
    quantized, calibration = _quantized("auto")
    choice = calibration["auto"]
    assert list(choice["candidates"]) == list(AUTO_METHODS) and choice["samples"] == 8
    assert calibration["method"] == choice["chosen"] in AUTO_METHODS
    best = max(entry["worst_sqnr_db"] for entry in choice["candidates"].values())
    assert choice["candidates"][choice["chosen"]]["worst_sqnr_db"] == best  # outputs: SQNR only
    alone, _ = _quantized(choice["chosen"])
    assert [t.SerializeToString() for t in quantized.graph.initializer] == [
        t.SerializeToString() for t in alone.graph.initializer
    ]


def test_an_unknown_method_is_refused_before_any_work():
    with pytest.raises(InputError, match="--method must be one of minmax, entropy, percentile, "
                       "mse, auto, got 'best'"):  # fmt: skip
        QuantizeOptions(method="best")


def test_the_cli_reports_every_candidate(cli, tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(conv_net(), path)
    x = np.random.default_rng(2).standard_normal((40, 3, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", input=x)
    result = cli("quantize", path, "-o", tmp_path / "q.onnx", "--data", tmp_path / "d.npz",
                 "--method", "auto", "--bench-runs", "0", "--json", "-")  # fmt: skip
    assert result.code == 0, result.stderr
    calibration = json.loads(result.stdout)["calibration"]
    assert sorted(calibration["auto"]["candidates"]) == sorted(AUTO_METHODS)
    assert calibration["method"] == calibration["auto"]["chosen"]
    table = cli("quantize", path, "-o", tmp_path / "t.onnx", "--data", tmp_path / "d.npz",
                "--method", "auto", "--bench-runs", "0")  # fmt: skip
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("| calibration")]
    assert row.split("|")[2].strip() == (
        f"{calibration['method']}, 32 samples; auto: {describe_choice(calibration['auto'])}"
    )
