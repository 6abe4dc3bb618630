"""`compress`: the recipe runner, its verification, its report and its table."""

from __future__ import annotations

import json

import numpy as np
import pytest

import onnxslim_kd as sk
from onnxslim_kd.errors import BrokenModelError, InputError
from onnxslim_kd.graph.save import save
from onnxslim_kd.pipeline.recipe import build_passes, read_recipe
from onnxslim_kd.pipeline.registry import PASSES, Pass, PassResult, register_pass
from tests.builders import conv_net


def _recipe(tmp_path, text: str):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return path


def test_recipe_run_prints_table_and_writes_report(cli, tmp_path, digits):
    out = tmp_path / "digits.slim.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out,
                 "--recipe", _recipe(tmp_path, "passes: [canonicalize]\n"),
                 "--data", digits / "calib.npz", "--eval-data", digits / "test.npz",
                 "--bench-runs", "10")  # fmt: skip
    assert result.code == 0, result.stderr
    assert "| params" in result.stdout and "latency p50 (batch 1)" in result.stdout
    report = json.loads((tmp_path / "digits.slim.onnx.report.json").read_text())
    assert [p["pass"] for p in report["passes"]] == ["canonicalize"]
    assert report["fidelity"]["logits"]["top1_agreement"] == 1.0
    assert report["accuracy_before"] == report["accuracy_after"] > 0.95
    assert report["fidelity_samples"] == 540
    assert report["environment"]["onnxruntime"]
    assert sk.load(out).graph.input[0].name == "input"


def test_constant_weights_model_through_compress(cli, tmp_path):
    source = save(
        conv_net(weights_as_constants=True, alias_with_identity=True), tmp_path / "m.onnx"
    )
    before = source.read_bytes()
    out = tmp_path / "m.slim.onnx"
    result = cli("compress", source, "-o", out, "--bench-runs", "0", "--json", "-")
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    summary = record["passes"][0]["summary"]
    assert summary["constants_lifted"] == 1 and summary["identities_resolved"] == 1
    assert record["fidelity"]["logits"]["max_abs_diff"] == 0.0
    assert source.read_bytes() == before
    assert not [n for n in sk.load(out).graph.node if n.op_type in ("Constant", "Identity")]


def test_refuses_to_overwrite_input(cli, tmp_path):
    source = save(conv_net(), tmp_path / "m.onnx")
    before = source.read_bytes()
    result = cli("compress", source, "-o", source, "--bench-runs", "0")
    assert result.code == 2 and "refusing to overwrite" in result.stderr
    assert source.read_bytes() == before


@pytest.mark.parametrize("suffix, text", [
    (".yaml", "passes:\n  - canonicalize\n"),
    (".yml", "passes:\n  - name: canonicalize\n"),
    (".toml", '[[passes]]\nname = "canonicalize"\n'),
])  # fmt: skip
def test_recipe_formats(tmp_path, suffix, text):
    path = tmp_path / f"recipe{suffix}"
    path.write_text(text)
    assert read_recipe(path) == [{"name": "canonicalize"}]


@pytest.mark.parametrize("text, message", [
    ("passes:\n  - shrink\n", "unknown pass 'shrink'"),
    ("passes:\n  - canonicalize: {ratio: 0.5}\n", "pass 'canonicalize' has no option 'ratio'"),
    ("steps: []\n", "a recipe needs a 'passes' list"),
    ("passes: [\n", "not a valid recipe"),
])  # fmt: skip
def test_bad_recipes_exit_2(cli, tmp_path, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    source = save(conv_net(), tmp_path / "m.onnx")
    out = tmp_path / "out.onnx"
    result = cli("compress", source, "-o", out, "--recipe", recipe)
    assert result.code == 2 and message in result.stderr
    assert not out.exists()


class _RenameOutput(Pass):
    """A deliberately wrong pass: it renames the graph output."""

    name = "test-rename-output"

    def run(self, model, context):
        out = sk.canonicalize(model)[0]
        old = out.graph.output[0].name
        out.graph.output[0].name = "renamed"
        for node in out.graph.node:
            node.output[:] = ["renamed" if o == old else o for o in node.output]
        return PassResult(out)


def test_a_pass_that_breaks_the_interface_is_caught():
    register_pass(_RenameOutput)
    try:
        with pytest.raises(BrokenModelError, match="changed the model's outputs"):
            sk.compress(conv_net(), [{"name": "test-rename-output"}], bench_runs=0)
    finally:
        del PASSES["test-rename-output"]


def test_library_api_mirrors_the_cli(digits):
    model = sk.load(digits / "model.onnx")
    data = sk.load_data(digits / "test.npz", model, samples=100)
    result = sk.compress(model, data=data, bench_runs=5)
    assert result.comparison.accuracy_after == result.comparison.accuracy_before
    assert len(data) == 100 and np.isfinite(result.comparison.latency.latencies[1].median_ms)
    assert sk.inspect(result.model).params == 694_922


def test_build_passes_rejects_bad_options_before_running():
    with pytest.raises(InputError, match="unknown pass"):
        build_passes([{"name": "canonicalize"}, {"name": "nope"}])


def test_budget_missed_exits_3_and_still_saves(cli, tmp_path, digits):
    out = tmp_path / "pruned.onnx"
    recipe = _recipe(tmp_path, "passes:\n  - prune: {ratio: 0.5}\n")
    result = cli("compress", digits / "model.onnx", "-o", out, "--recipe", recipe,
                 "--eval-data", digits / "test.npz", "--max-drop", "0.01",
                 "--bench-runs", "0")  # fmt: skip
    assert result.code == 3
    assert "budget not met: accuracy drop" in result.stderr
    assert "> --max-drop 0.01 (the closest result was saved)" in result.stderr
    assert out.is_file() and (tmp_path / "pruned.onnx.report.json").is_file()


def test_resume_reuses_finished_stages(tmp_path, digits):
    from onnxslim_kd.pipeline.checkpoint import Checkpoints

    model = sk.load(digits / "model.onnx")
    recipe = [{"name": "canonicalize"}, {"name": "prune", "ratio": 0.25}]
    checkpoints = Checkpoints(tmp_path / "work", model, None)
    first = sk.compress(model, recipe, bench_runs=0, checkpoints=checkpoints)
    assert not any(r.get("resumed") for r in first.passes)
    again = sk.compress(model, recipe, bench_runs=0, checkpoints=checkpoints)
    assert [r.get("resumed") for r in again.passes] == [True, True]
    assert again.model.SerializeToString() == first.model.SerializeToString()
    changed = [{"name": "canonicalize"}, {"name": "prune", "ratio": 0.5}]
    third = sk.compress(model, changed, bench_runs=0, checkpoints=checkpoints)
    assert [bool(r.get("resumed")) for r in third.passes] == [True, False]


def test_html_report_is_self_contained(cli, tmp_path, digits):
    html = tmp_path / "report.html"
    recipe = _recipe(tmp_path, "passes:\n  - prune: {ratio: 0.25}\n")
    result = cli("compress", digits / "model.onnx", "-o", tmp_path / "o.onnx", "--recipe",
                 recipe, "--eval-data", digits / "test.npz", "--max-drop", "1",
                 "--bench-runs", "5", "--html", html, "--markdown", tmp_path / "r.md")  # fmt: skip
    assert result.code == 0, result.stderr
    page = html.read_text()
    assert page.count("data:image/png;base64,") == 3  # stage latency, channels, op-type time
    assert "http" not in page.replace("http-equiv", "")
    assert "| latency p50 (batch 1)" in (tmp_path / "r.md").read_text()


def test_html_banner_says_when_the_recipe_fell_back():
    from onnxslim_kd.report.html import render_html

    note = "the default recipe missed the budget (accuracy drop 0.4185); kept INT8 alone"
    verdict = {"exit_code": 0, "passed": True, "reasons": [],
               "budget": {"max_drop": 0.02, "min_sqnr": 20.0},
               "measured": {"drop": 0.0, "drop_metric": "accuracy drop"}}  # fmt: skip
    page = render_html({"input": "m.onnx", "verdict": verdict, "fallback": note}, [])
    banner = page[page.index('<div class="verdict"') :]
    assert "PASSED (exit 0)" in banner
    assert f"<li>{note}</li></ul></div>" in banner


def test_html_report_plots_the_search():
    from onnxslim_kd.report.html import render_html

    structure = {"label": "1/2 res, MACs x0.12", "keep_macs": 0.125, "downsample": 2,
                 "macs": 13_000_000, "predicted_speedup": 9.4}  # fmt: skip
    candidate = {"label": structure["label"], "speedup": 9.1, "quality": 0.985,
                 "within_budget": True}  # fmt: skip
    search = {"target_speedup": 8.0, "structures": [structure], "candidates": [candidate]}
    page = render_html({"input": "m.onnx", "search": search}, [])
    assert page.count("data:image/png;base64,") == 2  # untuned structures, tuned candidates
    assert "<td>1/2 res, MACs x0.12</td><td>9.10x</td><td>98.50%</td>" in page


def test_unreached_target_within_budget_says_so_and_exits_4(cli, tmp_path, digits):
    out = tmp_path / "o.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out, "--data",
                 digits / "calib.npz", "--samples", "64", "--target-speedup", "50",
                 "--max-trials", "0", "--no-downsample", "--bench-runs", "5",
                 "--max-drop", "1")  # fmt: skip
    assert result.code == 4, result.stderr
    assert (
        "onnxslim-kd: target 50x not reached within the budget: the fastest candidate in budget is"
        in result.stderr
        and "per-round speed-up" in result.stderr
        and "(no pruning)" in result.stderr
    )
    search = json.loads(out.with_name("o.onnx.report.json").read_text())["search"]
    assert search["reached_target"] is False and search["chosen"] == "no pruning"
    assert [c["label"] for c in search["candidates"]] == ["no pruning"]


def test_target_options_need_data(cli, tmp_path, digits):
    result = cli("compress", digits / "model.onnx", "-o", tmp_path / "o.onnx",
                 "--target-speedup", "4")  # fmt: skip
    assert result.code == 2 and "need --data and no --recipe" in result.stderr


def test_search_measures_candidates_and_honours_the_budget(digits):
    """One strength, one KD epoch on 200 samples: the search still times, trains and decides."""
    from onnxslim_kd.pipeline.search import search

    model = sk.load(digits / "model.onnx")
    train = sk.load_data(digits / "train.npz", model, samples=200)
    test = sk.load_data(digits / "test.npz", model, samples=200)
    found = search(model, train, test, target_speedup=50.0, max_drop=0.0, distill_epochs=1,
                   bench_runs=10, strengths=(0.5,), downsample=(1, 2))  # fmt: skip
    assert [s.label for s in found.structures] == ["MACs x0.50", "1/2 res, MACs x0.12"]
    assert 0.4 * 105_153_792 < found.structures[0].macs <= 0.5 * 105_153_792
    assert 0.1 * 105_153_792 < found.structures[1].macs <= 0.125 * 105_153_792
    assert all(s.predicted > 0 for s in found.structures)  # timed; no speed asserted here
    # no structure reaches 50x, so the fastest one is fine-tuned first
    first = found.candidates[0]
    assert first.structure is max(found.structures, key=lambda s: s.predicted)
    # half resolution is distilled as a stage of its own before channels are pruned
    assert [r["pass"] for r in first.result.passes] == [
        "prune", "distill", "prune", "decompose", "distill", "quantize"
    ]  # fmt: skip
    assert first.result.passes[0]["summary"]["spatial"]["resolution_after"] == [16, 16]
    assert found.met == any(c.within_budget for c in found.candidates)
    record = found.as_dict()
    assert record["reached_target"] is False
    assert [c["label"] for c in record["candidates"]] == [c.label for c in found.candidates]


@pytest.mark.parametrize(("speedup", "reached", "rounds"), [(2.01, True, 80), (1.5, False, 10)])
def test_a_trial_reaches_the_target_unless_measurably_below_it(
    monkeypatch, digits, speedup, reached, rounds
):
    """Every stage timed at `speedup` +- 1% against a target of 2: 2.01x straddles it, so
    the trial is timed to the cap (8 x 10 rounds) and reaches it, as check would pass it;
    1.5x is below it on the first 10 rounds, so exit 4's reason gives the interval."""
    from onnxslim_kd.bench import latency
    from onnxslim_kd.pipeline.search import search
    from tests.timings import fake_bench

    monkeypatch.setattr(latency, "bench", fake_bench({}, others=speedup))
    model = sk.load(digits / "model.onnx")
    train = sk.load_data(digits / "train.npz", model, samples=200)
    found = search(model, train, None, target_speedup=2.0, max_drop=1.0, bench_runs=10,
                   strengths=(1.0,), downsample=(1,))  # fmt: skip
    (trial,) = found.as_dict()["candidates"]
    assert (trial["label"], trial["reaches_target"]) == ("no pruning", reached)
    assert found.as_dict()["reached_target"] is reached
    assert trial["speedup"] == pytest.approx(speedup, rel=1e-3)
    low, high = trial["speedup_interval"]
    assert low < speedup < high and found.chosen.result.comparison.latency.runs == rounds


def _structure(keep, predicted, downsample=1):
    from onnxslim_kd.pipeline.search import Structure

    return Structure(keep, downsample, predicted)


def _failed(structure):
    from onnxslim_kd.pipeline.search import Candidate

    return Candidate(structure, structure.predicted, 0.5, 0.5, False, result=None)


def test_next_trial_prefers_the_gentlest_structure_meeting_the_target():
    from onnxslim_kd.pipeline.search import Candidate, _next_trial

    gentle, middle, strong = _structure(0.5, 2.0), _structure(0.25, 7.0, 2), _structure(0.1, 11.0)
    structures = [gentle, middle, strong]
    assert _next_trial(structures, [], target=6.0) is middle
    assert _next_trial(structures, [], target=20.0) is strong  # none meets it: the fastest
    # after a miss only gentler structures qualify, the fastest of them first
    assert _next_trial(structures, [_failed(middle)], target=6.0) is gentle
    assert _next_trial(structures, [_failed(middle), _failed(gentle)], target=6.0) is None
    # a trial in budget but slower than predicted: only stronger structures qualify
    slow = Candidate(middle, 5.0, 0.99, 0.0, True, result=None)
    assert _next_trial(structures, [slow], target=6.0) is strong
    assert _next_trial(structures, [slow, _failed(strong)], target=6.0) is None


def test_library_exports_every_pass_without_importing_torch():
    import subprocess
    import sys

    code = "import sys, onnxslim_kd as sk; sk.prune; sk.decompose; sk.quantize_model; " \
           "sk.distill; print('torch' in sys.modules)"  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_html_report_shows_the_verdict_the_passes_and_the_training(cli, tmp_path, digits):
    """A budget missed (-max-drop 0 after pruning): the banner says so with the numbers,
    the pass table, the distillation curve and only the changed groups are there."""
    pytest.importorskip("torch")
    html = tmp_path / "report.html"
    recipe = _recipe(
        tmp_path,
        "passes:\n  - prune: {ratio: 0.5}\n"
        "  - distill: {epochs: 2, lr: 0.0001, augment_shift: 0}\n",
    )
    result = cli("compress", digits / "model.onnx", "-o", tmp_path / "o.onnx", "--recipe",
                 recipe, "--data", digits / "calib.npz", "--eval-data", digits / "test.npz",
                 "--max-drop", "0", "--bench-runs", "3", "--html", html)  # fmt: skip
    assert result.code == 3, result.stderr
    page = html.read_text()
    assert "BUDGET MISSED (exit 3)" in page and "budget: --max-drop 0.0, --min-sqnr 20.0 dB" in page
    assert "budget not met: accuracy drop" in page
    assert "<h2>Passes</h2>" in page and "<h2>Distillation</h2>" in page
    assert page.count("data:image/png;base64,") == 4  # latency, channels, training, op time
    report = json.loads((tmp_path / "o.onnx.report.json").read_text())
    assert report["verdict"]["exit_code"] == 3 and not report["verdict"]["passed"]
    assert report["verdict"]["measured"]["drop"] > 0
    assert "<th>fidelity vs its input</th><th>vs the original</th>" in page
    prune, distill = report["passes"]
    assert prune["fidelity_vs_original"] == prune["fidelity_vs_previous"]  # its input
    assert distill["fidelity_vs_original"] != distill["fidelity_vs_previous"]  # the teacher


def test_the_built_in_recipe_prunes_the_residual_width_only_when_asked(cli, tmp_path, vit_digits):
    from onnxslim_kd.pipeline.search import default_recipe

    (plain,) = [s for s in default_recipe(0.5) if s["name"] == "prune"]
    (asked,) = [s for s in default_recipe(0.5, prune_norms=True) if s["name"] == "prune"]
    assert "prune_norms" not in plain and asked == {**plain, "prune_norms": True}
    (distill,) = [s for s in default_recipe(0.5, prune_norms=True) if s["name"] == "distill"]
    assert distill["lr"] == 2e-3
    digits = vit_digits.parent / "digits"
    result = cli("compress", vit_digits / "model.onnx", "-o", tmp_path / "c.onnx",
                 "--data", digits / "calib.npz", "--prune-norms", "--distill-epochs", "1",
                 "--bench-runs", "0", "--max-drop", "1", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    prune_pass = json.loads(result.stdout)["passes"][0]["summary"]
    embed = next(g for g in prune_pass["groups"] if g["id"] == "/patch_embed/Conv")
    assert embed["status"] == "pruned" and not embed["exact"]


@pytest.mark.parametrize("prune_norms", [None, False])
def test_search_prunes_the_residual_width_only_when_the_target_needs_it(vit_digits, prune_norms):
    """Keeping the ViT's residual width, heads and MLP units stop near 0.2 of the MACs, far
    from 50x: once no structure keeping it is left, the search times stronger ones that
    prune it too and fine-tunes the next of them 5x longer; with prune_norms=False it stops."""
    from onnxslim_kd.pipeline.search import search

    model = sk.load(vit_digits / "model.onnx")
    digits = vit_digits.parent / "digits"
    train = sk.load_data(digits / "train.npz", model, samples=64)
    test = sk.load_data(digits / "test.npz", model, samples=64)
    found = search(model, train, test, target_speedup=50.0, max_drop=1.0, distill_epochs=1,
                   bench_runs=10, strengths=(0.2, 0.1), downsample=(1,), max_trials=2,
                   prune_norms=prune_norms)  # fmt: skip
    trials = [c.label for c in found.candidates]
    if prune_norms is False:
        assert trials == ["MACs x0.20"] and not any(s.prune_norms for s in found.structures)
        return
    assert trials == ["MACs x0.20", "MACs x0.10, residual width pruned"]
    kept, pruned = (c.structure for c in found.candidates)
    assert pruned.macs < kept.macs and pruned.prune_norms and not kept.prune_norms
    distill = [p for p in found.candidates[1].result.passes if p["pass"] == "distill"]
    assert [p["options"]["epochs"] for p in distill] == [5]
    assert found.as_dict()["structures"][-1]["prune_norms"] is True
