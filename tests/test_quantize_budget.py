"""The accuracy budget: sensitive layers go back to FP32 until the drop fits."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from tests.builders import make_model


def outlier_net(classifier: bool = True) -> onnx.ModelProto:
    """conv1 -> conv2 -> GAP [-> fc], where one conv1 channel is 1000x the others.

    Quantizing the tensor between the convs per-tensor flattens every other channel to
    zero, so both convs must go back to FP32 to keep the prediction; the fc layer can
    stay INT8. Without the classifier the outputs are the feature maps after conv2 and the
    pool (two outputs, no Softmax: both judged by SQNR).
    """
    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.3
    w1[0] *= 1000.0
    w2 = rng.standard_normal((16, 8, 1, 1)).astype(np.float32)
    w2[:, 0] /= 1000.0
    fc = rng.standard_normal((10, 16)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["a"], name="conv1", pads=[1] * 4),
        helper.make_node("Conv", ["a", "w2"], ["b"], name="conv2"),
        helper.make_node("GlobalAveragePool", ["b"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["logits"], name="fc", transB=1),
    ]
    weights = [numpy_helper.from_array(v, k) for k, v in {"w1": w1, "w2": w2, "fc": fc}.items()]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])]
    if not classifier:
        nodes, weights = nodes[:3], weights[:2]
        outputs = [
            helper.make_tensor_value_info("b", TensorProto.FLOAT, ["batch", 16, 6, 6]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["batch", 16, 1, 1]),
        ]
    return make_model(
        nodes,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 8, 6, 6])],
        outputs,
        weights,
    )


def labelled(model: onnx.ModelProto, count: int, seed: int) -> Dataset:
    """Random inputs labelled with the FP32 model's own predictions (FP32 accuracy 100%)."""
    x = np.random.default_rng(seed).standard_normal((count, 8, 6, 6)).astype(np.float32)
    data = Dataset({"input": x})
    data.labels = run(model, data)["logits"].argmax(1)
    return data


def test_fallback_reverts_the_sensitive_layers_until_the_budget_holds():
    model = outlier_net()
    calib, evaluation = labelled(model, 64, 1), labelled(model, 200, 2)
    options = QuantizeOptions(max_drop=0.05, bench_runs=0)
    quantized, summary = quantize_model(model, calib, options, eval_data=evaluation)
    first = summary.fallback[0]
    assert first["metric"] == "accuracy" and first["drop"] > 0.5, "all-INT8 must break it"
    assert summary.budget_met and summary.budget["drop"] <= 0.05
    assert set(summary.fallback_layers) == {"conv1", "conv2"}
    assert list(summary.sensitivity_sqnr_db)[-1] == "fc"  # the least sensitive layer
    assert summary.coverage["integer"] == 1  # fc is still an integer kernel
    assert summary.excluded["conv1"].startswith("accuracy budget")
    result = run(quantized, evaluation)["logits"].argmax(1)
    assert np.mean(result == evaluation.labels) >= 0.95


def test_unlabelled_eval_data_bounds_top1_agreement():
    model = outlier_net()
    calib, evaluation = labelled(model, 64, 1), labelled(model, 100, 2)
    evaluation.labels = None
    options = QuantizeOptions(max_drop=0.05, bench_runs=0)
    _, summary = quantize_model(model, calib, options, eval_data=evaluation)
    assert summary.fallback[0]["metric"] == "agreement" and not summary.fallback[0]["ok"]
    assert summary.budget_met and summary.budget["candidate"] >= 0.95


def test_budget_out_of_reach_saves_all_int8_says_why_and_exits_3(cli, tmp_path):
    """Feature-map outputs are judged by SQNR; a 200 dB floor is out of INT8's reach even
    with every conv in FP32, so no conv is kept in FP32 for nothing."""
    model_path = tmp_path / "features.onnx"
    onnx.save(outlier_net(classifier=False), model_path)
    x = np.random.default_rng(1).standard_normal((32, 8, 6, 6)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", input=x)
    out = tmp_path / "int8.onnx"
    budget = ["--max-drop", "0", "--min-sqnr", "200"]
    result = cli("quantize", model_path, "-o", out, "--data", tmp_path / "calib.npz", *budget,
                 "--bench-runs", "0", "--json", "-")  # fmt: skip
    assert result.code == 3, result.stderr
    report = json.loads(result.stdout)
    assert report["budget"]["metric"] == "sqnr" and not report["budget_met"]
    assert len(report["fallback"]) == 3  # all-INT8, then each conv in FP32
    assert any(
        "sqnr budget not met even with all 2 layers in FP32" in warning
        and "activations' quantization" in warning
        for warning in report["warnings"]
    ), report["warnings"]
    assert report["fallback_layers"] == [] and report["budget"] == {
        k: v for k, v in report["fallback"][0].items() if k != "reverted"
    }
    saved = onnx.load(out)
    onnx.checker.check_model(saved)
    dequantized = {o for n in saved.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in saved.graph.node if n.op_type == "Conv"]
    assert len(convs) == 2 and all(conv.input[1] in dequantized for conv in convs)


@pytest.mark.parametrize("needed", [0, 1, 2, 3, 7, 8, 19, 20])
def test_the_fallback_search_finds_the_fewest_layers_in_few_builds(needed):
    """Galloping then bisecting over the ranking: the least count whose score is ok, with
    about 2 log2(count) builds instead of one per layer."""
    from onnxslim_kd.report.budget import Score, fall_back

    order = [f"layer{i}" for i in range(20)]
    built: list[int] = []

    def build(exclude=()):
        built.append(len(exclude))
        return len(exclude)  # the "model" is the number of layers reverted

    def evaluate(reverted):
        return Score("agreement", 1.0, 0.5 + reverted / 100, None, reverted >= needed)

    found = fall_back(build, order, evaluate)
    assert found.reverted == order[:needed] and found.model == needed
    assert found.score["ok"] and len(built) == len(set(built)) <= 2 + 2 * math.log2(needed + 1)
    assert [entry["reverted"] for entry in found.trail] == sorted(built)


def test_when_nothing_holds_the_search_returns_the_unreverted_model():
    """Reverting every layer misses too: the loss is not the layers', so none is reverted
    even where a partial attempt scored higher on the evaluation samples."""
    from onnxslim_kd.report.budget import Score, fall_back

    def evaluate(reverted):  # best at 3 reverted layers, never ok
        return Score("sqnr", None, -abs(reverted - 3), None, False)

    found = fall_back(lambda exclude=(): len(exclude), [f"l{i}" for i in range(6)], evaluate)
    assert [entry["reverted"] for entry in found.trail] == [0, 1, 2, 4, 6]
    assert not found.score["ok"] and found.model == 0 and found.reverted == []
    assert found.score["candidate"] == -3
