"""Dynamic INT8 (MatMul weights INT8, activations per batch at run time) beside static QDQ:
built where MatMuls with constant weights hold most of the MACs, kept when faster."""

from __future__ import annotations

import pytest

from onnxslim_kd.bench import latency
from onnxslim_kd.data import load_data
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, api, quantize_model
from onnxslim_kd.quantize.dynamic import matmul_share
from onnxslim_kd.report.fidelity import accuracy
from tests.timings import fake_bench


@pytest.fixture(scope="module")
def vit(vit_digits):
    model = load(vit_digits / "model.onnx")
    digits = vit_digits.parent / "digits"
    calib = load_data(digits / "calib.npz", model, samples=64)
    test = load_data(digits / "test.npz", model, samples=160)
    return model, calib, test


def test_the_matmul_share_tells_a_transformer_from_a_cnn(vit, digits):
    model, calib, _ = vit
    # 4 blocks x (Q, K, V, out and MLP projections) of 15.0 M MACs; the rest is Q K^T, P V
    assert matmul_share(model, calib) == pytest.approx(4 * 3_194_880 / 15_008_896)
    cnn = load(digits / "model.onnx")
    assert matmul_share(cnn, load_data(digits / "calib.npz", cnn, samples=8)) == 0.0


def test_dynamic_quantizes_the_matmuls_and_keeps_the_accuracy(vit, monkeypatch):
    model, calib, test = vit

    def no_calibration(*args, **kwargs):
        raise AssertionError("dynamic INT8 needs no calibrated ranges")

    monkeypatch.setattr(api, "calibrate", no_calibration)
    options = QuantizeOptions(mode="dynamic", bench_runs=0)
    quantized, summary = quantize_model(model, calib, options, eval_data=test)
    assert summary.calibration is None and summary.bias_correction is None
    assert not summary.joins_kept_float
    ops = {node.op_type for node in quantized.graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "QuantizeLinear" not in ops
    assert summary.scheme == "dynamic" and summary.budget_met
    matmuls = sum(node.op_type in ("MatMul", "Gemm") for node in model.graph.node)
    assert matmuls == 33 and summary.coverage["integer"] == 25  # all but the 8 QK^T, PV
    assert quantized.graph.input[0].type == model.graph.input[0].type
    reference = accuracy(run(model, test)["logits"], test.labels)
    assert accuracy(run(quantized, test)["logits"], test.labels) >= reference - 0.01


@pytest.mark.parametrize("faster", ["static", "dynamic"])
def test_auto_builds_both_on_a_transformer_and_keeps_the_faster(vit, monkeypatch, faster):
    model, calib, test = vit
    monkeypatch.setattr(latency, "bench", fake_bench({faster: 2.0}))
    quantized, summary = quantize_model(model, calib, QuantizeOptions(bench_runs=3),
                                        eval_data=test)  # fmt: skip
    # the ViT's patch embedding reads the 1-channel image: a stem, timed in FP32 as well
    assert set(summary.schemes) == {"static", "dynamic", "static+stem-fp32"}
    assert summary.scheme == faster and summary.result == "int8"
    assert summary.schemes[faster]["speedup"] == 2.0
    assert summary.schemes["static+stem-fp32"]["speedup"] == 1.0
    assert [m["label"] for m in summary.latency["models"]] == ["fp32", faster]
    marker = "DynamicQuantizeLinear" if faster == "dynamic" else "QuantizeLinear"
    assert marker in {node.op_type for node in quantized.graph.node}


def test_auto_builds_static_alone_on_a_cnn(digits):
    model = load(digits / "model.onnx")
    calib = load_data(digits / "calib.npz", model, samples=32)
    _, summary = quantize_model(model, calib, QuantizeOptions(bench_runs=0))
    assert list(summary.schemes) == ["static"] and summary.scheme == "static"


def test_an_unknown_mode_is_refused(cli, tmp_path, digits):
    with pytest.raises(InputError, match="--mode must be one of auto, static, dynamic"):
        QuantizeOptions(mode="fp16")
    out = tmp_path / "q.onnx"
    result = cli("quantize", digits / "model.onnx", "-o", out, "--data",
                 digits / "calib.npz", "--mode", "fp16")  # fmt: skip
    assert result.code == 2 and "invalid choice: 'fp16'" in result.stderr
    assert not out.exists()


def test_int8_is_timed_at_the_batch_asked_for_and_compress_passes_its_own(digits, monkeypatch):
    from onnxslim_kd.pipeline.registry import PassContext
    from onnxslim_kd.quantize.pass_ import QuantizePass

    model = load(digits / "model.onnx")
    calib = load_data(digits / "calib.npz", model, samples=32)
    batches = []

    def recording(models, **kwargs):
        batches.append({len(next(iter(feeds.values()))) for _, _, feeds in models})
        return fake_bench({"static": 2.0})(models, **kwargs)

    monkeypatch.setattr(latency, "bench", recording)
    quantize_model(model, calib, QuantizeOptions(bench_runs=3, bench_batch=8))
    QuantizePass(QuantizeOptions(bench_runs=3)).run(model, PassContext(calib, bench_batch=16))
    quantize_model(model, calib, QuantizeOptions(bench_runs=3))
    # each times its schemes (static, the stem in FP32), then the chosen one alone
    assert batches == [{8}, {8}, {16}, {16}, {1}, {1}]
