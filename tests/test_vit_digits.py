"""The vit_digits sample (a trained vision transformer) as a user holds it: its documented
accuracy, a dynamic batch, and attention heads and MLP units pruned on the exported graph."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.report.fidelity import accuracy

#: Measured with onnxruntime on samples/digits/test.npz (README): 534 of 540.
ACCURACY = 534 / 540


def test_the_model_is_the_documented_transformer(vit_digits):
    model = onnx.load(vit_digits / "model.onnx")
    ops = Counter(node.op_type for node in model.graph.node)
    assert (ops["Softmax"], ops["LayerNormalization"], ops["Erf"]) == (4, 9, 4)
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert model.graph.input[0].name == "input" and dims[1:] == [1, 32, 32]
    assert isinstance(dims[0], str)
    params = sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) > 0)
    assert params == pytest.approx(206_026, abs=32)


def test_the_model_reads_the_test_digits_at_its_documented_accuracy(vit_digits):
    model = load(vit_digits / "model.onnx")
    test = load_data(vit_digits.parent / "digits/test.npz", model)
    logits = run(model, test)["logits"]
    assert logits.shape == (540, 10)
    assert accuracy(logits, test.labels) == pytest.approx(ACCURACY)


def test_prune_halves_every_block_by_heads_and_mlp_units(cli, tmp_path, vit_digits):
    out = tmp_path / "p.onnx"
    result = cli("prune", vit_digits / "model.onnx", "-o", out, "--ratio", "0.5",
                 "--data", vit_digits.parent / "digits/calib.npz", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    summary = json.loads(result.stdout)
    pruned = {g["id"]: (g["size"], g["kept"], g["unit"]) for g in summary["groups"]
              if g["status"] == "pruned"}  # fmt: skip
    for block in range(4):
        prefix = f"/blocks/blocks.{block}"
        assert pruned[f"{prefix}/attention/query/MatMul heads"] == (4, 2, 16)
        assert pruned[f"{prefix}/mlp/mlp.0/MatMul"] == (256, 128, 1)
    assert len(pruned) == 8
    assert summary["macs_before"] / summary["macs_after"] > 1.95
    model = load(out)
    check(model)
    assert model.graph.input[0].type == onnx.load(vit_digits / "model.onnx").graph.input[0].type
    test = load_data(vit_digits.parent / "digits/test.npz", model).subset(7)
    assert run(model, test)["logits"].shape == (7, 10)
