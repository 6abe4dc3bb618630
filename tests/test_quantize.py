"""`quantize`: the INT8 pass on the digits sample, its data types, exclusions and errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

from onnxslim_kd.bench import latency
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.build import build
from onnxslim_kd.quantize.calibration import calibrate
from onnxslim_kd.quantize.coverage import INTEGER_KERNELS, count_coverage, optimized_graph
from onnxslim_kd.quantize.prepare import prepare
from onnxslim_kd.quantize.target import DataTypes, choose_data_types, detect_target
from tests.builders import conv_net
from tests.timings import fake_bench


@pytest.fixture(scope="module")
def digits_model(digits):
    return load(digits / "model.onnx")


@pytest.fixture(scope="module")
def calib(digits, digits_model):
    return load_data(digits / "calib.npz", digits_model)


@pytest.fixture(scope="module")
def test_set(digits, digits_model):
    return load_data(digits / "test.npz", digits_model)


def quantize(cli, digits, out, *extra):
    args = ["quantize", digits / "model.onnx", "-o", out, "--data", digits / "calib.npz",
            "--eval-data", digits / "test.npz", "--bench-runs", "0", "--json", "-",
            *extra]  # fmt: skip
    result = cli(*args)
    return result, (json.loads(result.stdout) if result.code in (0, 3) else None)


def test_digits_int8_is_valid_fused_and_keeps_accuracy(cli, tmp_path, digits):
    out = tmp_path / "digits.int8.onnx"
    result, report = quantize(cli, digits, out)
    assert result.code == 0, result.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model)
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["QuantizeLinear"] and ops["DequantizeLinear"]
    fidelity = report["fidelity"]
    assert fidelity["accuracy_fp32"] - fidelity["accuracy_int8"] <= 0.003
    assert fidelity["outputs"]["logits"]["top1_agreement"] >= 0.99
    # 15 Conv + 1 Gemm in the FP32 graph, all of them integer kernels in the optimized one
    assert report["coverage"]["integer"] == 16
    assert report["coverage"]["dq_float"] == report["coverage"]["float"] == 0
    assert report["coverage"]["integer_ops"] == {"QLinearConv": 15, "QGemm": 1}
    assert report["calibration"] == {**report["calibration"], "method": "minmax", "samples": 256}
    assert report["data_types"]["format"] == "QDQ"


def test_coverage_matches_the_optimized_graph_on_a_branching_model(digits_model, calib, tmp_path):
    """S8 activations on residual blocks leave convs unfused; the count must say which."""
    prepared, _ = prepare(digits_model)
    ranges, _ = calibrate(prepared, calib, tmp_path, samples=32)
    s8 = DataTypes(target="x86-vnni", detected=False, activations="int8", per_channel=False)
    quantized = build(save(prepared, tmp_path / "p.onnx"), ranges, "minmax", s8, tmp_path)
    optimized = optimized_graph(quantized)
    coverage = count_coverage(optimized)
    ops = Counter(node.op_type for node in optimized.graph.node)
    assert coverage.integer == sum(ops[op] for op in INTEGER_KERNELS)
    assert coverage.dq_float > 0, "residual branches should block some S8 fusions"
    assert coverage.integer + coverage.dq_float + coverage.float == 16
    assert len(coverage.unfused_nodes) == coverage.dq_float
    for name in coverage.unfused_nodes:
        node = next(n for n in optimized.graph.node if n.name == name)
        producers = {n.output[0]: n.op_type for n in optimized.graph.node}
        assert producers.get(node.input[0]) == "DequantizeLinear"


@pytest.mark.parametrize(
    ("target", "activation_dtype", "reduce_range"),
    [("x86-vnni", onnx.TensorProto.UINT8, False), ("x86-avx2", onnx.TensorProto.UINT8, True),
     ("arm", onnx.TensorProto.INT8, False)],
)  # fmt: skip
def test_target_cpu_chooses_the_data_types(cli, tmp_path, digits, target, activation_dtype,
                                           reduce_range):  # fmt: skip
    out = tmp_path / f"{target}.onnx"
    result, report = quantize(cli, digits, out, "--target-cpu", target, "--samples", "32")
    assert result.code == 0, result.stderr
    assert report["data_types"]["target"] == target and not report["data_types"]["detected"]
    assert report["data_types"]["reduce_range"] is reduce_range
    assert any("VNNI" in warning for warning in report["warnings"]) is reduce_range
    model = onnx.load(out)
    zero_points = {t.name: t for t in model.graph.initializer}
    activation_q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert {zero_points[n.input[2]].data_type for n in activation_q} == {activation_dtype}
    weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8
               and len(t.dims) == 4]  # fmt: skip
    assert weights, "conv weights are stored as symmetric int8"
    if reduce_range:  # 7-bit weights
        assert max(np.abs(onnx.numpy_helper.to_array(t)).max() for t in weights) <= 64


def test_detection_from_cpu_flags():
    assert detect_target({"arch": "x86_64", "isa": ["AVX2", "AVX512-VNNI"]}) == "x86-vnni"
    assert detect_target({"arch": "x86_64", "isa": ["AVX2", "FMA"]}) == "x86-avx2"
    assert detect_target({"arch": "aarch64", "isa": ["ARM-DOTPROD"]}) == "arm"
    assert choose_data_types("x86-avx2").reduce_range
    assert choose_data_types("arm").activations == "int8"
    for target in ("x86-vnni", "x86-avx2"):  # never S8S8 (and never QOperator) on x86
        assert (choose_data_types(target).activations, choose_data_types(target).format) == (
            "uint8",
            "QDQ",
        )


def test_exclusions_by_op_type_name_and_regex(cli, tmp_path, digits):
    out = tmp_path / "excluded.onnx"
    patterns = ["op:Gemm", "/stem/stem.0/Conv", "re:/stages/stages.5/.*Conv"]
    extra = [arg for pattern in patterns for arg in ("--exclude", pattern)]
    result, report = quantize(cli, digits, out, "--samples", "32", *extra)
    assert result.code == 0, result.stderr
    excluded = report["excluded"]
    assert excluded["/stem/stem.0/Conv"] == "--exclude /stem/stem.0/Conv"
    assert sum(1 for v in excluded.values() if v.startswith("--exclude re:")) == 2
    assert len(excluded) == 4
    optimized = optimized_graph(onnx.load(out))
    coverage = count_coverage(optimized)
    assert (coverage.integer, coverage.float, coverage.dq_float) == (12, 4, 0)
    names = {n.name for n in onnx.load(out).graph.node if n.op_type in ("Conv", "Gemm")}
    assert set(excluded) <= names  # the excluded nodes are still float nodes in the model


def test_final_softmax_is_kept_in_fp32(tmp_path):
    model = conv_net()
    softmax = onnx.helper.make_node("Softmax", ["logits"], ["probs"], name="softmax")
    model.graph.node.append(softmax)
    model.graph.output[0].name = "probs"
    data = load_data(_npz(tmp_path, model, 16), model)
    quantized, summary = quantize_model(model, data, QuantizeOptions(bench_runs=0))
    assert summary.excluded == {"softmax": "built-in: final Softmax keeps FP32 probabilities"}
    assert any(n.op_type == "Softmax" for n in quantized.graph.node)
    writer = {o: n for n in quantized.graph.node for o in n.output}
    assert writer["probs"].op_type == "Softmax"


@pytest.mark.parametrize(
    ("bad", "message"),
    [("shape", "axis 2 is 16"), ("empty", "empty"), ("nan", "NaN"), ("missing", "no such")],
)
def test_bad_calibration_data_exits_2(cli, tmp_path, digits, bad, message):
    x = np.load(digits / "calib.npz")["input"][:8]
    arrays = {"shape": x[:, :, :16], "empty": x[:0], "nan": np.where(x > 0.9, np.nan, x)}
    path = tmp_path / "bad.npz"
    if bad != "missing":
        np.savez(path, input=arrays[bad].astype(np.float32))
    out = tmp_path / "out.onnx"
    result = cli("quantize", digits / "model.onnx", "-o", out, "--data", path)
    assert result.code == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_options_and_quantized_models_exit_2(cli, tmp_path, digits):
    out = tmp_path / "q.onnx"
    base = ["quantize", digits / "model.onnx", "-o", out, "--data", digits / "calib.npz"]
    assert "matches no node" in cli(*base, "--exclude", "nope").stderr
    assert cli(*base, "--max-drop", "5").code == 2
    assert cli(*base, "--target-cpu", "riscv").code == 2
    assert cli(*base, "--samples", "16", "--bench-runs", "0").code == 0
    again = cli("quantize", out, "-o", tmp_path / "q2.onnx", "--data", digits / "calib.npz")
    assert again.code == 2 and "already quantized" in again.stderr


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_calibration_streams_in_chunks(digits_model, calib, test_set, method):
    """A small memory budget splits calibration into chunks; accuracy stays."""
    options = QuantizeOptions(method=method, samples=64, max_calib_memory_mb=64, bench_runs=0)
    _, summary = quantize_model(digits_model, calib, options, eval_data=test_set)
    assert summary.calibration["chunk_samples"] < summary.calibration["samples"] == 64
    assert summary.calibration["estimated_peak_mb"] <= 64
    assert summary.fidelity["accuracy_fp32"] - summary.fidelity["accuracy_int8"] <= 0.01


def test_prepare_folds_batchnorm_and_upgrades_old_opsets(tmp_path):
    model = conv_net()
    model.opset_import[0].version = 11
    prepared, report = prepare(model)
    assert report.batchnorms_folded == 1
    assert (report.opset_before, report.opset_after) == (11, 13)
    assert not any(n.op_type == "BatchNormalization" for n in prepared.graph.node)
    data = load_data(_npz(tmp_path, model, 8), model)
    np.testing.assert_allclose(run(prepared, data)["logits"], run(model, data)["logits"],
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_int8_measured_slower_is_not_returned_unless_forced(digits_model, calib, monkeypatch):
    monkeypatch.setattr(latency, "bench", fake_bench({}, others=0.5))  # every INT8 variant
    model, summary = quantize_model(digits_model, calib, QuantizeOptions(samples=16, bench_runs=3))
    assert summary.result == "fp32 (int8 not faster)" and summary.latency["verdict"] == "slower"
    assert any(
        w.startswith("INT8 is slower than FP32 on this CPU (0.50x") for w in summary.warnings
    )
    assert model.SerializeToString() == digits_model.SerializeToString()
    options = QuantizeOptions(samples=16, bench_runs=3, force_int8=True)
    forced, summary = quantize_model(digits_model, calib, options)
    assert summary.result == "int8" and any("--force-int8" in w for w in summary.warnings)
    assert any(node.op_type == "QuantizeLinear" for node in forced.graph.node)


def test_the_cli_exits_3_when_it_writes_fp32_because_int8_is_slower(cli, tmp_path, digits,
                                                                   monkeypatch):  # fmt: skip
    monkeypatch.setattr(latency, "bench", fake_bench({}, others=0.5))  # every INT8 variant
    out = tmp_path / "q.onnx"
    line = ["quantize", digits / "model.onnx", "-o", out, "--data", digits / "calib.npz",
            "--samples", "16", "--bench-runs", "3"]  # fmt: skip
    result = cli(*line)
    assert result.code == 3 and "wrote the FP32 model (--force-int8 keeps INT8)" in result.stderr
    assert cli(*line, "--force-int8").code == 0


def test_quantize_pass_in_a_recipe(cli, tmp_path, digits):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("passes:\n  - canonicalize\n  - quantize: {samples: 32, bench_runs: 0}\n")
    out = tmp_path / "slim.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out, "--recipe", recipe,
                 "--data", digits / "calib.npz", "--bench-runs", "0", "--json", "-")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    summary = record["passes"][1]["summary"]
    assert summary["coverage"]["integer"] == 16
    assert record["fidelity"]["logits"]["top1_agreement"] >= 0.99


def _npz(tmp_path, model, count):
    """A random .npz for `model`'s single input."""
    spec = model.graph.input[0].type.tensor_type.shape.dim
    shape = [count, *(d.dim_value for d in spec[1:])]
    path = tmp_path / "data.npz"
    np.savez(path, input=np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    return path
