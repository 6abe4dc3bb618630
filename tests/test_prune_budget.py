"""Importance criteria, budgets, exclusions and plans of the prune pass."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnxslim_kd as sk
from onnxslim_kd.data import random_data
from onnxslim_kd.errors import InputError
from onnxslim_kd.prune.prune import PruneOptions, prune
from tests.prune_graphs import Graph, prune_lossless, weights


def _chain(widths=(16, 24), scale_rows=None):
    """input(4) -> conv(16) -> relu -> conv(24) -> relu -> conv(3); row i of the first conv
    scaled by scale_rows[i] so the L1 ranking is known."""
    g = Graph()
    x = g.op("Relu", [g.conv("input", 4, widths[0])])
    x = g.op("Relu", [g.conv(x, widths[0], widths[1])])
    model = g.model(g.conv(x, widths[1], 3))
    if scale_rows is not None:
        w = model.graph.initializer[0]
        value = numpy_helper.to_array(w) * np.asarray(scale_rows, np.float32)[:, None, None, None]
        w.CopyFrom(numpy_helper.from_array(value.astype(np.float32), w.name))
    return model


def _keep(summary, group="conv1"):
    return summary.plan["groups"][group]["keep"]


def test_l1_keeps_the_largest_filters():
    scale = np.ones(16)
    scale[[1, 5, 9, 13]] = 100.0
    _, summary = prune_lossless(_chain(scale_rows=scale), ratio=0.75)
    assert _keep(summary) == [1, 5, 9, 13]


@pytest.mark.parametrize("criterion", ["l1", "l2", "fpgm", "bn", "random"])
def test_every_data_free_criterion_prunes_losslessly(criterion):
    pruned, summary = prune_lossless(_chain(), criterion=criterion)
    assert weights(pruned)["conv2:1"] == (12, 8, 3, 3)
    assert summary.macs_after < summary.macs_before


def test_random_is_seeded():
    def keep(seed):
        options = PruneOptions(criterion="random", round_to=1, seed=seed, keep_stem=False)
        return _keep(prune(_chain(), options)[1])

    assert keep(3) == keep(3) != keep(4)


def test_bn_criterion_uses_gamma():
    g = Graph()
    x = g.op("Relu", [g.bn(g.conv("input", 4, 8), 8)])
    model = g.model(g.conv(x, 8, 3))
    gamma = next(t for t in model.graph.initializer if t.name == model.graph.node[1].input[1])
    gamma.CopyFrom(numpy_helper.from_array(np.arange(1, 9, dtype=np.float32), gamma.name))
    _, summary = prune_lossless(model, criterion="bn")
    assert _keep(summary) == [4, 5, 6, 7]


def test_activation_criteria_need_data_and_use_it(digits):
    model = sk.load(digits / "model.onnx")
    with pytest.raises(InputError, match="criterion 'apoz' needs calibration data"):
        prune(model, PruneOptions(criterion="apoz"))
    data = sk.load_data(digits / "calib.npz", model, samples=64)
    for criterion in ("apoz", "mean-act"):
        pruned, summary = prune(model, PruneOptions(criterion=criterion), data)
        sk.check(pruned)
        assert summary.macs_after < summary.macs_before / 2


def test_round_to_multiples_of_8():
    _, summary = prune(_chain(widths=(40, 24)), PruneOptions(ratio=0.3, keep_stem=False))
    assert [g.kept for g in summary.groups if g.status == "pruned"] == [32, 16]


def test_global_ranking_removes_the_total_and_respects_the_cap():
    def kept(max_ratio):
        options = PruneOptions(ratio=0.4, global_ranking=True, max_ratio=max_ratio,
                               round_to=1, keep_stem=False)  # fmt: skip
        summary = prune(_chain(), options)[1]
        return {g.id: g.kept for g in summary.groups if g.status == "pruned"}

    free = kept(0.8)
    assert (16 - free["conv1"]) + (24 - free["conv2"]) == int(0.4 * 40)
    assert kept(0.25) == {"conv1": 12, "conv2": 18}  # each group capped at a quarter


def test_target_macs_is_met(digits):
    model = sk.load(digits / "model.onnx")
    _, summary = prune(model, PruneOptions(target_macs=0.5))
    assert summary.macs_after <= 0.5 * summary.macs_before
    assert summary.macs_after >= 0.35 * summary.macs_before  # not overshooting wildly


def test_ratio_zero_returns_the_input_unchanged(digits):
    model = sk.load(digits / "model.onnx")
    pruned, summary = prune(model, PruneOptions(ratio=0.0))
    assert pruned.SerializeToString() == model.SerializeToString()
    assert summary.params_after == summary.params_before


def test_exclusions_by_name_regex_and_op_type():
    model = _chain()
    _, by_name = prune(model, PruneOptions(exclude=["conv2"], round_to=1, keep_stem=False))
    assert {g.id: g.status for g in by_name.groups}["conv2"] == "skipped"
    _, by_regex = prune(model, PruneOptions(exclude=["conv[12]"], round_to=1, keep_stem=False))
    assert not [g for g in by_regex.groups if g.status == "pruned"]
    _, by_type = prune(model, PruneOptions(exclude=["Conv"], round_to=1, keep_stem=False))
    assert all("excluded by 'Conv'" in g.reasons for g in by_type.groups)
    _, nothing = prune(model, PruneOptions(exclude=["nope"], round_to=1))
    assert "exclusion 'nope' matches no node" in nothing.warnings


def test_stem_is_kept_by_default():
    _, summary = prune(_chain(), PruneOptions(round_to=1))
    assert {g.id: g.reasons for g in summary.groups}["conv1"] == ["stem conv kept (keep_stem)"]


@pytest.mark.parametrize("options, message", [
    ({"ratio": 1.0}, "ratio must be in \\[0, 1\\)"),
    ({"ratio": -0.1}, "ratio must be in"),
    ({"target_macs": 0.0}, "target_macs must be in"),
    ({"criterion": "magic"}, "unknown criterion 'magic'"),
    ({"round_to": 0}, "round_to must be >= 1"),
])  # fmt: skip
def test_bad_options(options, message):
    with pytest.raises(InputError, match=message):
        PruneOptions(**options)


def test_cli_plan_round_trip_with_an_edited_plan(cli, tmp_path, digits):
    out, plan = tmp_path / "p.onnx", tmp_path / "plan.json"
    result = cli("prune", digits / "model.onnx", "-o", out, "--plan-out", plan, "--json", "-")
    assert result.code == 0, result.stderr
    record = json.loads(plan.read_text())
    group = record["groups"]["/stages/stages.0/conv1/Conv"]
    group["keep"] = list(range(8))
    plan.write_text(json.dumps(record))
    again = tmp_path / "q.onnx"
    result = cli("prune", digits / "model.onnx", "-o", again, "--plan", plan, "--json", "-")
    assert result.code == 0, result.stderr
    conv = next(n for n in sk.load(again).graph.node if n.name == "/stages/stages.0/conv1/Conv")
    weight = next(t for t in sk.load(again).graph.initializer if t.name == conv.input[1])
    assert list(weight.dims) == [8, 32, 3, 3]


@pytest.mark.parametrize("args, message", [
    (["--ratio", "1.5"], "--ratio: must be a number in [0, 1), got '1.5'"),
    (["--criterion", "apoz"], "needs calibration data"),
    (["--plan", "missing.json"], "no such plan file"),
])  # fmt: skip
def test_cli_bad_input_exits_2(cli, tmp_path, digits, args, message):
    out = tmp_path / "p.onnx"
    result = cli("prune", digits / "model.onnx", "-o", out, *args)
    assert result.code == 2 and message in result.stderr
    assert not out.exists()


def test_cli_prune_then_compress_recipe(cli, tmp_path, digits):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("passes:\n  - canonicalize\n  - prune: {ratio: 0.25, criterion: l2}\n")
    out = tmp_path / "c.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out, "--recipe", recipe,
                 "--data", digits / "calib.npz", "--bench-runs", "5", "--max-drop", "1",
                 "--json", "-")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["passes"][1]["summary"]["groups_pruned"] == 8
    assert record["after"]["macs"] < record["before"]["macs"]
    assert onnx.load(str(out)).graph.output[0].name == "logits"


def test_mean_compensation_with_data_brings_outputs_closer(digits):
    model = sk.load(digits / "model.onnx")
    calib = sk.load_data(digits / "calib.npz", model)
    test = sk.load_data(digits / "test.npz", model)
    plain, _ = prune(model, PruneOptions(ratio=0.1, compensate=False), calib)
    compensated, summary = prune(model, PruneOptions(ratio=0.1), calib)
    assert any("mean-compensated inputs into its bias" in w for w in summary.warnings)
    sqnr_plain = sk.compare_models(model, plain, test)["logits"].sqnr_db
    sqnr_compensated = sk.compare_models(model, compensated, test)["logits"].sqnr_db
    assert sqnr_compensated > sqnr_plain + 1.0


def _mlp_with_dead_units(dead: list[int]):
    """[2, 5, 8] -> MatMul(8 -> 16) -> Add -> Relu -> MatMul(16 -> 8) -> Add, as torch
    exports Linear; the `dead` hidden units have zero weights and a positive bias, so they
    output that bias whatever the input."""
    g = Graph(shape=(2, 5, 8))
    w1 = g.rng.standard_normal((8, 16)).astype(np.float32)
    b1 = g.rng.standard_normal(16).astype(np.float32)
    w1[:, dead], b1[dead] = 0.0, 0.5
    hidden = g.op("Relu", [g.op("Add", [g.const(b1), g.op("MatMul", ["input", g.const(w1)])])])
    return g.model(g.op("Add", [g.op("MatMul", [hidden, g.weight(16, 8)]), g.weight(8)]))


def test_constant_units_fold_exactly_into_the_bias_add_after_a_matmul():
    model = _mlp_with_dead_units(dead=[1, 6, 9, 14])
    pruned, summary = prune(model, PruneOptions(ratio=0.25, round_to=1))
    assert [(g.size, g.kept) for g in summary.groups if g.status == "pruned"] == [(16, 12)]
    assert summary.plan["groups"]["matmul1"]["keep"] == [0, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 15]
    assert any("'matmul2': folded 4 constant inputs into its bias" in w for w in summary.warnings)
    data = random_data(model, {"input": [2, 5, 8]}, seed=3)
    assert sk.compare_models(model, pruned, data)["add2_out0"].max_abs_diff < 1e-5
    unfolded, _ = prune(model, PruneOptions(ratio=0.25, round_to=1, compensate=False))
    assert sk.compare_models(model, unfolded, data)["add2_out0"].max_abs_diff > 0.1


def test_mean_compensation_that_measures_worse_is_not_applied(vit_digits):
    """On the ViT sample, mean replacement of half the heads and MLP units moves the logits
    further from the original than dropping them: the pruned model is the plain one."""
    model = sk.load(vit_digits / "model.onnx")
    calib = sk.load_data(vit_digits.parent / "digits/calib.npz", model)
    plain, _ = prune(model, PruneOptions(ratio=0.5, compensate=False), calib)
    chosen, summary = prune(model, PruneOptions(ratio=0.5), calib)
    (note,) = [w for w in summary.warnings if "compensat" in w]
    assert note.startswith("mean compensation not applied: it measured further from the ")
    assert {t.name for t in chosen.graph.initializer} == {t.name for t in plain.graph.initializer}
    test = sk.load_data(vit_digits.parent / "digits/test.npz", model).subset(64)
    assert sk.compare_models(plain, chosen, test)["logits"].max_abs_diff == 0
