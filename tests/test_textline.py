"""The textline sample (a trained CTC recogniser with attention and LayerNorm between
convolutions) as a user holds it: label sequences scored by character accuracy, a
dynamic width, and every command that measures it."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.report.fidelity import accuracy, ctc_decode

#: Measured with onnxruntime on test.npz (README): exact match 98.25 %, characters 99.55 %.
CHAR_ACCURACY = 0.99546


def _render_module(folder):
    spec = importlib.util.spec_from_file_location("textline_render", folder / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_lines_are_the_ones_render_makes(textline):
    images, labels = _render_module(textline).render_split("calib")
    with np.load(textline / "calib.npz") as shipped:
        np.testing.assert_array_equal(shipped["input"], images)
        np.testing.assert_array_equal(shipped["labels"], labels)


def test_the_model_reads_the_test_lines_at_its_documented_accuracy(textline):
    model = load(textline / "model.onnx")
    test = load_data(textline / "test.npz", model)
    logprobs = run(model, test)["logprobs"]
    assert logprobs.shape == (400, 32, 37)  # [N, W/4, blank + 36 characters]
    assert accuracy(logprobs, test.labels, axis=2) == pytest.approx(CHAR_ACCURACY, abs=5e-5)
    read = ctc_decode(logprobs, len(test.labels))
    exact = np.mean(
        [r == [c for c in row if c >= 0] for r, row in zip(read, test.labels.tolist(), strict=True)]
    )
    assert exact == pytest.approx(0.9825)


def test_width_is_dynamic(textline):
    model = load(textline / "model.onnx")
    test = load_data(textline / "test.npz", model).subset(4)
    wide = np.concatenate([test.inputs["input"], np.ones_like(test.inputs["input"])], axis=3)
    logprobs = run(model, type(test)({"input": wide}))["logprobs"]
    assert logprobs.shape == (4, 64, 37)


def test_quantize_budgets_the_character_accuracy(cli, tmp_path, textline):
    out = tmp_path / "q.onnx"
    result = cli("quantize", textline / "model.onnx", "-o", out, "--data", textline / "calib.npz",
                 "--eval-data", textline / "test.npz", "--bench-runs", "0", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    budget = record["budget"]
    assert budget["metric"] == "accuracy" and budget["output"] == "logprobs" and budget["ok"]
    assert budget["reference"] == pytest.approx(CHAR_ACCURACY, abs=5e-5)
    assert budget["drop"] <= 0.01
    assert record["fidelity"]["accuracy_fp32"] == budget["reference"]
    assert record["fidelity"]["accuracy_int8"] == budget["candidate"]
    assert record["evaluated_on"] == "the evaluation data"
    assert record["coverage"]["dq_float"] == 0  # every conv and projection runs in integers
    quantized = load(out)
    check(quantized)
    assert quantized.graph.input[0].type == load(textline / "model.onnx").graph.input[0].type
    test = load_data(textline / "test.npz", quantized)
    assert accuracy(run(quantized, test)["logprobs"], test.labels) == budget["candidate"]


def test_compare_reports_the_character_accuracy_of_both(cli, tmp_path, textline):
    out = tmp_path / "q.onnx"
    assert cli("quantize", textline / "model.onnx", "-o", out, "--data", textline / "calib.npz",
               "--bench-runs", "0", "--quiet").code == 0  # fmt: skip
    result = cli("compare", textline / "model.onnx", out, "--data", textline / "test.npz", "--json")
    assert result.code == 0, result.stderr
    entry = json.loads(result.stdout)["outputs"]["logprobs"]
    assert entry["accuracy_reference"] == pytest.approx(CHAR_ACCURACY, abs=5e-5)
    assert entry["accuracy_reference"] - entry["accuracy_candidate"] <= 0.01
    assert entry["top1_agreement"] > 0.99  # per time step


def test_compress_holds_the_character_accuracy_budget(cli, tmp_path, textline):
    """The whole default recipe on a CTC recogniser, trained on the 256 calibration lines:
    whatever it keeps (here pruning + distillation on so few lines misses two points, so
    INT8 alone), the character accuracy on the test lines stays within the budget, and
    the result still reads lines of another width."""
    pytest.importorskip("torch")
    out = tmp_path / "c.onnx"
    result = cli("compress", textline / "model.onnx", "-o", out, "--data", textline / "calib.npz",
                 "--eval-data", textline / "test.npz", "--max-drop", "0.02", "--bench-runs", "3",
                 "--quiet")  # fmt: skip
    assert result.code == 0, result.stderr
    report = json.loads(out.with_name("c.onnx.report.json").read_text())
    assert report["accuracy_before"] == pytest.approx(CHAR_ACCURACY, abs=5e-5)
    assert report["accuracy_before"] - report["accuracy_after"] <= 0.02
    assert report["verdict"]["passed"]
    compressed = load(out)
    check(compressed)
    test = load_data(textline / "test.npz", compressed)
    assert accuracy(run(compressed, test)["logprobs"], test.labels) == report["accuracy_after"]
    wide = np.concatenate([test.inputs["input"][:2]] * 2, axis=3)
    assert run(compressed, type(test)({"input": wide}))["logprobs"].shape == (2, 64, 37)


def test_prune_removes_whole_attention_heads_and_keeps_the_width_dynamic(textline):
    """The mixing block's heads (Q/K/V views computed from x.size(2) // heads at run time)
    are pruned whole: 4 heads of 24 become 2 in every projection, and the result still
    reads lines of any width."""
    from onnxslim_kd.prune.prune import PruneOptions, prune

    model = load(textline / "model.onnx")
    calib = load_data(textline / "calib.npz", model).subset(16)
    pruned, summary = prune(model, PruneOptions(ratio=0.5), calib)
    heads = next(g for g in summary.groups if g.id.endswith("heads"))
    assert (heads.size, heads.kept, heads.status) == (4, 2, "pruned")
    widths = {n.name: n.input[1] for n in pruned.graph.node if n.op_type == "MatMul"}
    sizes = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    for projection in ("query", "key", "value"):
        assert sizes[widths[f"/mixing/attention/{projection}/MatMul"]] == (96, 48)
    assert sizes[widths["/mixing/attention/out/MatMul"]] == (48, 96)
    check(pruned)
    wide = np.concatenate([calib.inputs["input"][:2]] * 2, axis=3)
    assert run(pruned, type(calib)({"input": wide}))["logprobs"].shape == (2, 64, 37)
