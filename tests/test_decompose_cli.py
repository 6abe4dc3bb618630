"""`onnxslim-kd decompose` and the `decompose` recipe pass on the digits sample."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.report.fidelity import accuracy


def test_decompose_writes_a_valid_model_and_json_summary(cli, tmp_path, digits):
    out = tmp_path / "digits.lr.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, "--energy", "0.9", "--json")
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["strategy"] == "--energy 0.9" and record["output"] == str(out)
    layers = {d["name"]: d for d in record["layers"]}
    assert len(layers) == 16  # every Conv and the Gemm: all candidates are listed
    assert layers["/stem/stem.0/Conv"]["reason"] == "tiny layer (32x1x3x3 weight)"
    decomposed = [d for d in record["layers"] if d["decomposed"]]
    assert record["layers_decomposed"] == len(decomposed) > 0
    assert record["macs_after"] == record["macs_before"] - sum(
        d["macs_before"] - d["macs_after"] for d in decomposed
    )

    before, after = load(digits / "model.onnx"), load(out)
    check(after)
    assert after.metadata_props == before.metadata_props
    assert after.graph.input == before.graph.input and after.graph.output == before.graph.output
    new_names = {n.name for n in after.graph.node}
    kept = [
        n for n in before.graph.node if n.name not in layers or not layers[n.name]["decomposed"]
    ]
    assert all(n in after.graph.node for n in kept)  # untouched nodes are byte-identical
    first = decomposed[0]["name"]
    assert {f"{first}/tucker_in", f"{first}/tucker_core", f"{first}/tucker_out"} <= new_names

    test = load_data(digits / "test.npz", before)
    assert accuracy(run(before, test)["logits"], test.labels) == pytest.approx(537 / 540)
    assert accuracy(run(after, test)["logits"], test.labels) >= 0.96  # 0.974 measured


def test_measure_times_every_profitable_layer(cli, tmp_path, digits):
    out = tmp_path / "digits.lr.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, "--energy", "0.8", "--measure",
                 f"--json={tmp_path / 's.json'}", "--quiet")  # fmt: skip
    assert result.code == 0 and result.stdout == ""
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["measured"] is True
    for layer in record["layers"]:
        profitable = layer["macs_before"] is not None and not (layer["reason"] or "").startswith(
            ("rank", "tiny")
        )
        assert (layer["speedup"] is not None) == profitable
        if layer["decomposed"]:
            assert layer["speedup"] >= 1.05
        elif profitable:
            assert layer["reason"].startswith("measured ")


def test_exclude_and_method(cli, tmp_path, digits):
    out = tmp_path / "digits.lr.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, "--rank-ratio", "0.25",
                 "--exclude", "*stages.5*", "Gemm", "--method", "tucker", "--json")  # fmt: skip
    layers = {d["name"]: d for d in json.loads(result.stdout)["layers"]}
    assert layers["/stages/stages.5/conv1/Conv"]["reason"] == "excluded by --exclude"
    assert layers["/fc/Gemm"]["reason"] == "excluded by --exclude"
    shortcut = layers["/stages/stages.2/shortcut/shortcut.0/Conv"]
    assert shortcut["reason"] == "svd layer, but --method tucker"
    assert layers["/stages/stages.4/conv2/Conv"]["decomposed"]
    assert layers["/stages/stages.4/conv2/Conv"]["ranks"] == [32, 32]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--energy", "1.5"], "--energy: must be a number in (0, 1], got '1.5'"),
        (["--rank-ratio", "0"], "--rank-ratio: must be a number in (0, 1], got '0'"),
        (["--rank-ratio", "-0.5"], "--rank-ratio: must be a number in (0, 1], got '-0.5'"),
        (["--target-macs", "2"], "--target-macs: must be a number in (0, 1], got '2'"),
        (["--energy", "0.9", "--vbmf"], "not allowed with argument --energy"),
        (["--method", "cp"], "invalid choice: 'cp'"),
        (["--rank-ratio", "half"], "--rank-ratio: expected a number, got 'half'"),
        (["--shape", "input=1xax32"], "expected NAME=D1xD2x..."),
        (["--max-drop", "0.02"], "--max-drop needs --data to measure the outputs on"),
        (["--max-drop", "2"], "--max-drop"),
    ],
)
def test_bad_options_exit_2_with_one_line(cli, tmp_path, digits, args, message):
    out = tmp_path / "out.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, *args)
    assert result.code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_refuses_to_overwrite_its_input(cli, tmp_path, digits):
    model = tmp_path / "m.onnx"
    model.write_bytes((digits / "model.onnx").read_bytes())
    result = cli("decompose", model, "-o", model, "--rank-ratio", "0.5")
    assert result.code == 2 and "refusing to overwrite" in result.stderr
    assert model.read_bytes() == (digits / "model.onnx").read_bytes()


def test_recipe_pass(cli, tmp_path, digits):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("passes:\n  - decompose: {rank_ratio: 0.5, exclude: ['*stem*']}\n")
    out = tmp_path / "out.onnx"
    result = cli("compress", digits / "model.onnx", "-o", out, "--recipe", recipe,
                 "--data", digits / "calib.npz", "--bench-runs", "0", "--max-drop", "1",
                 "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    (step,) = json.loads(result.stdout)["passes"]
    assert step["pass"] == "decompose" and step["summary"]["layers_decomposed"] > 0
    assert step["macs_after"] == step["summary"]["macs_after"]
    onnx.checker.check_model(str(out))

    recipe.write_text("passes:\n  - decompose: {energy: 2}\n")
    result = cli("compress", digits / "model.onnx", "-o", out, "--recipe", recipe)
    assert result.code == 2 and "energy must be in [0, 1], got 2" in result.stderr


def test_decompose_never_mutates_its_input(digits):
    from onnxslim_kd.decompose import decompose, make_selector

    model = load(digits / "model.onnx")
    before = model.SerializeToString()
    out, _ = decompose(model, make_selector(rank_ratio=0.25))
    assert model.SerializeToString() == before
    assert np.isfinite(run(out, load_data(digits / "calib.npz", model).subset(8))["logits"]).all()


def test_works_after_pruning_and_before_quantization(cli, tmp_path, digits):
    pruned, low_rank, int8 = (tmp_path / f"{n}.onnx" for n in ("pruned", "lr", "int8"))
    assert cli("prune", digits / "model.onnx", "-o", pruned, "--ratio", "0.25", "-q").code == 0
    result = cli("decompose", pruned, "-o", low_rank, "--rank-ratio", "0.25", "--json")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["layers_decomposed"] > 0
    result = cli("quantize", low_rank, "-o", int8, "--data", digits / "calib.npz",
                 "--samples", "32", "--bench-runs", "0", "-q")  # fmt: skip
    assert result.code == 0, result.stderr
    check(load(int8))


def test_with_data_every_output_is_measured_and_a_loss_is_warned_about(cli, tmp_path, digits):
    out = tmp_path / "d.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, "--vbmf", "--data",
                 digits / "calib.npz", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    fidelity = json.loads(result.stdout)["fidelity"]["logits"]
    assert fidelity["top1_agreement"] < 0.99  # VBMF ranks without fine-tuning lose a lot
    assert "'logits' top-1 agreement" in result.stderr
    assert f"distillation recovers it: onnxslim-kd distill {out} -o {out}.kd.onnx" in result.stderr


def test_max_drop_keeps_the_layers_that_cost_the_outputs_most_at_full_rank(cli, tmp_path, digits):
    """--vbmf alone drops the digits far below the teacher (previous test); with a budget
    the most damaging layers keep their full rank and the rest are still factorised."""
    out = tmp_path / "d.onnx"
    result = cli("decompose", digits / "model.onnx", "-o", out, "--vbmf", "--data",
                 digits / "calib.npz", "--max-drop", "0.02", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    budget, kept = record["budget"], record["kept_full_rank"]
    assert budget["ok"] and budget["metric"] == "accuracy" and budget["drop"] <= 0.02
    chosen = next(entry for entry in record["fallback"] if entry["reverted"] == len(kept))
    assert {k: v for k, v in chosen.items() if k != "reverted"} == budget
    assert all(not entry["ok"] for entry in record["fallback"] if entry["reverted"] < len(kept))
    layers = {d["name"]: d for d in record["layers"]}
    assert kept and all(not layers[name]["decomposed"] for name in kept)
    assert all(layers[n]["reason"].startswith("kept full rank for the budget") for n in kept)
    assert record["layers_decomposed"] > 0 and record["macs_after"] < record["macs_before"]
    assert f"budget met on 'logits' (accuracy); {len(kept)} layers kept full rank" in result.stderr

    model, factorised = load(digits / "model.onnx"), load(out)
    check(factorised)
    calib = load_data(digits / "calib.npz", model).subset(64)  # what the budget is held on
    before = accuracy(run(model, calib)["logits"], calib.labels)
    after = accuracy(run(factorised, calib)["logits"], calib.labels)
    assert after == pytest.approx(before - budget["drop"]) and after >= before - 0.02
