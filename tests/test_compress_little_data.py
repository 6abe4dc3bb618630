"""A few dozen unlabelled-or-labelled samples and no --eval-data, as users calibrate:
compress holds part of them out for every figure, and falls back to INT8 alone when the
default recipe misses the budget and INT8 holds it."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def fallback_run(tmp_path_factory, digits):
    from cli.main import main

    out = tmp_path_factory.mktemp("little") / "c.onnx"
    code = main(["compress", str(digits / "model.onnx"), "-o", str(out), "--data",
                 str(digits / "calib.npz"), "--distill-epochs", "1", "--bench-runs", "3",
                 "--quiet"])  # fmt: skip
    return code, json.loads(out.with_name("c.onnx.report.json").read_text())


def test_fidelity_is_measured_on_samples_held_out_of_the_data(fallback_run):
    _, report = fallback_run
    assert report["evaluated_on"] == "51 samples held out of --data (20%)"
    assert report["fidelity_samples"] == 51


def test_a_missed_default_recipe_falls_back_to_int8_alone_and_says_so(fallback_run):
    code, report = fallback_run
    assert code == 0
    assert [p["pass"] for p in report["passes"]] == ["quantize"]
    assert report["fallback"].startswith("the default recipe missed the budget (accuracy drop")
    assert report["accuracy_before"] - report["accuracy_after"] <= 0.01


def test_an_op_the_executor_cannot_run_leaves_distill_and_pruning_out(cli, tmp_path):
    """Gaps in the torch executor (here LpNormalization) must not fail compress: the recipe
    drops distill (and so pruning), says why, and still decomposes and quantizes."""
    import numpy as np
    from onnx import helper

    from onnxslim_kd.graph.save import save
    from tests.builders import conv_net

    model = conv_net()
    model.graph.node.append(helper.make_node("LpNormalization", ["logits"], ["scores"]))
    model.graph.output[0].name = "scores"
    path = save(model, tmp_path / "lp.onnx")
    data = tmp_path / "d.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((40, 3, 8, 8), np.float32))
    result = cli("compress", path, "-o", tmp_path / "c.onnx", "--data", data,
                 "--bench-runs", "2", "--json")  # fmt: skip
    assert result.code in (0, 3), result.stderr
    reason = "no distillation, so no pruning, in the default recipe: op 'LpNormalization'"
    assert reason in result.stderr
    assert [p["pass"] for p in json.loads(result.stdout)["passes"]] == ["decompose", "quantize"]
