"""INT8 that keeps fidelity by default: joins of mismatched ranges stay float, a default
floor triggers the sensitivity search, results are measured on held-out samples, and
already-quantized models are refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import joins
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model
from onnxslim_kd.report.fidelity import output_fidelity
from tests.builders import make_model
from tests.test_quantize_budget import outlier_net

UNTIMED = {"bench_runs": 0}


def detector_head() -> onnx.ModelProto:
    """Box coordinates (about 0..300) and Sigmoid class scores (0..1) concatenated into one
    [N, 4 + 3, positions] output, as YOLO-style heads are exported."""
    rng = np.random.default_rng(0)
    weights = {
        "w_box": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "w_cls": rng.standard_normal((3, 3, 3, 3)).astype(np.float32),
        "scale": np.array(100.0, np.float32), "shape": np.array([0, 7, -1], np.int64),
    }  # fmt: skip
    node = helper.make_node
    nodes = [
        node("Conv", ["images", "w_box"], ["box_raw"], name="box_conv", pads=[1] * 4),
        node("Mul", ["box_raw", "scale"], ["boxes"], name="box_scale"),
        node("Conv", ["images", "w_cls"], ["cls_raw"], name="cls_conv", pads=[1] * 4),
        node("Sigmoid", ["cls_raw"], ["scores"], name="cls_sigmoid"),
        node("Concat", ["boxes", "scores"], ["joined"], name="head_concat", axis=1),
        node("Reshape", ["joined", "shape"], ["output"], name="head_reshape"),
    ]
    return make_model(
        nodes, [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 7, 64])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )  # fmt: skip


def _images(count: int = 64) -> Dataset:
    return Dataset(
        {"images": np.random.default_rng(1).standard_normal((count, 3, 8, 8), np.float32)}
    )


def _score_sqnr(model, quantized, data) -> float:
    ref, cand = run(model, data)["output"][:, 4:], run(quantized, data)["output"][:, 4:]
    return output_fidelity(ref, cand).sqnr_db


def test_a_concat_of_ranges_orders_apart_stays_float(monkeypatch):
    model, data = detector_head(), _images()
    quantized, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    assert set(summary.joins_kept_float) == {"head_concat", "head_reshape"}
    assert "Concat joins ranges" in summary.joins_kept_float["head_concat"]
    assert summary.excluded["head_concat"] == summary.joins_kept_float["head_concat"]
    kept = _score_sqnr(model, quantized, data)
    monkeypatch.setattr(joins, "RANGE_RATIO", float("inf"))  # one shared scale, as ORT does
    shared, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    assert not summary.joins_kept_float
    assert kept > _score_sqnr(model, shared, data) + 15  # dB, on the class scores


def test_without_max_drop_a_default_floor_still_guards_fidelity():
    """All-INT8 destroys the outlier net's prediction; the search runs on its own."""
    model = outlier_net(classifier=True)
    data = Dataset({"input": np.random.default_rng(2).standard_normal((60, 8, 6, 6), np.float32)})
    _, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    assert summary.budget_source == "default floor"
    first, last = summary.fallback[0], summary.fallback[-1]
    assert first["metric"] == "agreement" and first["drop"] > 0.01 and not first["ok"]
    assert last["ok"] and summary.budget_met
    assert summary.fallback_layers and all(
        summary.excluded[name] == "accuracy budget: sensitive layer kept in FP32"
        for name in summary.fallback_layers
    )


def test_results_are_measured_on_held_out_calibration_samples():
    model, data = detector_head(), _images(50)
    _, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    assert summary.calibration["samples"] == 40
    assert summary.evaluated_on == "10 calibration samples held out from calibration"
    assert (
        "the default floor is measured on 10 samples, where one changed prediction is 10.0%: "
        "it allows that one; --eval-data with at least 100 samples measures one point, "
        "--max-drop sets the budget exactly"
    ) in summary.warnings
    assert summary.fidelity["samples"] == 10 and summary.max_drop == 0.1
    _, exact = quantize_model(model, data, QuantizeOptions(**{**UNTIMED, "max_drop": 0.01}))
    assert (
        "one sample of the 10 the budget is measured on is 10.0%, more than the 0.01 budget: "
        "any changed prediction misses it and sends layers back to FP32; --eval-data with at "
        "least 100 samples measures it finely"
    ) in exact.warnings
    assert exact.max_drop == 0.01 and exact.budget_source == "--max-drop"


@pytest.mark.parametrize(
    "max_drop, samples, allowed",
    [(None, 26, 1 / 26), (None, 100, 0.01), (None, 500, 0.01), (0.01, 26, 0.01), (0.0, 26, 0.0)],
)
def test_the_default_floor_is_never_finer_than_one_sample(max_drop, samples, allowed):
    assert QuantizeOptions(max_drop=max_drop).budget_on(samples) == pytest.approx(allowed)


@pytest.mark.parametrize("kind", ["dynamic", "qdq"])
def test_an_already_quantized_model_is_refused(cli, tmp_path, kind):
    from onnxruntime.quantization import quantize_dynamic

    from onnxslim_kd.graph.save import save
    from tests.builders import matmul_net

    source = save(matmul_net(), tmp_path / "fp32.onnx")
    data = tmp_path / "calib.npz"
    feeds = {i.name: np.random.default_rng(0).standard_normal((16, 6), np.float32)
             for i in matmul_net().graph.input}  # fmt: skip
    np.savez(data, **feeds)
    quantized = tmp_path / "int8.onnx"
    if kind == "dynamic":
        quantize_dynamic(str(source), str(quantized))
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {
            n.op_type for n in onnx.load(quantized).graph.node
        }
    else:
        assert cli("quantize", source, "-o", quantized, "--data", data, "--bench-runs", "0",
                   "--force-int8").code == 0  # fmt: skip
    again = cli("quantize", quantized, "-o", tmp_path / "twice.onnx", "--data", data)
    assert again.code == 2 and "the model is already quantized" in again.stderr
    assert not (tmp_path / "twice.onnx").exists()


def test_a_concatenated_head_is_judged_part_by_part(monkeypatch):
    """Boxes (~0..300) beside scores (0..1) in one output: the whole output's SQNR is the
    boxes', so with the join forced onto one scale (as onnxruntime does) the scores' ruin
    passes a 30 dB floor unseen; judged by the worst part, the budget is missed (no layer
    in FP32 repairs a shared scale), and with the join kept float it holds."""
    from onnxslim_kd.report.outputs import output_roles

    model, data = detector_head(), _images()
    reference = run(model, data)
    roles = output_roles(model, reference)
    assert roles.parts == {"output": (1, [4, 3])}
    monkeypatch.setattr(joins, "RANGE_RATIO", 1e9)  # no join kept float
    options = QuantizeOptions(force_int8=True, max_drop=1.0, **UNTIMED)
    shared, summary = quantize_model(model, data, options)
    whole = output_fidelity(reference["output"], run(shared, data)["output"]).sqnr_db
    parts = roles.fidelity("output", reference["output"], run(shared, data)["output"])
    assert parts.parts_sqnr_db[1] < 20 and whole > 30  # scores lost, the whole looks fine
    assert parts.sqnr_db == min(parts.parts_sqnr_db)
    assert summary.budget["metric"] == "sqnr" and not summary.budget["ok"]
    assert summary.budget["candidate"] == pytest.approx(parts.sqnr_db, abs=3)  # held-out fifth
    monkeypatch.undo()
    kept, summary = quantize_model(model, data, QuantizeOptions(**UNTIMED))
    assert summary.budget["ok"] and _score_sqnr(model, kept, data) >= 30
