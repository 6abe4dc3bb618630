"""Spatial pruning: the stem conv's stride rises, outputs keep their shape, or it is skipped."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.prune import PruneOptions, prune
from tests.builders import conv_net
from tests.prune_graphs import Graph


def _stem_strides(model: onnx.ModelProto) -> list[int]:
    return list(attribute(model.graph.node[0], "strides", [1, 1]))


@pytest.fixture(scope="module")
def digits_model(digits):
    return load(digits / "model.onnx")


def test_downsample_halves_resolution_and_keeps_outputs(digits_model):
    out, summary = prune(digits_model, PruneOptions(ratio=0.0, downsample=2))
    check(out)
    assert _stem_strides(out) == [2, 2]
    assert summary.spatial["resolution_before"] == [32, 32]
    assert summary.spatial["resolution_after"] == [16, 16]
    assert summary.spatial["skipped"] is None
    # every conv (the stem too) runs on a quarter of the positions; the classifier does not
    classifier = 128 * 10
    assert summary.macs_before == 105_153_792
    assert summary.macs_after == (105_153_792 - classifier) // 4 + classifier
    assert summary.params_after == summary.params_before
    logits = run(out, random_data(out, batch=3))["logits"]
    assert logits.shape == (3, 10)
    assert _stem_strides(digits_model) == [1, 1]  # the input model is untouched
    # recorded shapes are re-inferred: stale 32x32 ones made onnxruntime reject later passes
    recorded = {v.name: v.type.tensor_type.shape.dim for v in out.graph.value_info}
    assert [d.dim_value for d in recorded["/stem/stem.0/Conv_output_0"]][1:] == [32, 16, 16]


def test_target_macs_counts_the_resolution_change(digits_model):
    _, gentle = prune(digits_model, PruneOptions(target_macs=0.3, downsample=2))
    assert not any(g.status == "pruned" for g in gentle.groups)  # 1/4 already <= 0.3
    assert gentle.macs_after == 26_289_408
    strong, summary = prune(
        digits_model, PruneOptions(target_macs=0.125, downsample=2, global_ranking=True)
    )
    check(strong)
    assert any(g.status == "pruned" for g in summary.groups)
    assert 0.09 * summary.macs_before < summary.macs_after <= 0.125 * summary.macs_before
    assert model_stats(strong).macs == summary.macs_after


def test_resolution_dependent_output_is_skipped_with_reason():
    g = Graph(shape=(1, 4, 8, 8))
    x = g.conv("input", 4, 4)
    flat = g.op("Flatten", [x])
    logits = g.op("Gemm", [flat, g.weight(3, 4 * 8 * 8)], transB=1)
    model = g.model(logits)
    out, summary = prune(model, PruneOptions(ratio=0.0, downsample=2))
    assert summary.spatial["skipped"].startswith(f"output '{logits}' would change shape from")
    assert "downsample skipped: output" in summary.warnings[0]
    assert _stem_strides(out) == [1, 1]
    feeds = random_data(model)
    np.testing.assert_array_equal(run(out, feeds)[logits], run(model, feeds)[logits])


def test_no_conv_reading_the_input_is_skipped():
    model = conv_net()
    model.graph.node.insert(0, onnx.helper.make_node("Relu", ["input"], ["r0"], name="pre"))
    model.graph.node[1].input[0] = "r0"
    _, summary = prune(model, PruneOptions(ratio=0.0, downsample=2))
    assert summary.spatial["skipped"] == "no single Conv reads the graph input"


def test_downsample_must_be_positive():
    with pytest.raises(Exception, match="downsample must be >= 1, got 0"):
        PruneOptions(downsample=0)


def test_cli_reports_the_resolution_change(cli, digits, tmp_path):
    out = tmp_path / "small.onnx"
    result = cli("prune", str(digits / "model.onnx"), "-o", str(out), "--downsample", "2",
                 "--ratio", "0")  # fmt: skip
    assert result.code == 0
    assert "resolution after /stem/stem.0/Conv: [32, 32] -> [16, 16]" in result.stdout
    assert _stem_strides(load(out)) == [2, 2]


def test_half_resolution_stage_runs_through_the_rest_of_the_pipeline(digits_model, digits):
    """The search's half-resolution candidate: every later pass must accept the model
    (stale 32x32 shapes once made onnxruntime reject it after distill -> quantize)."""
    from onnxslim_kd.data import load_data
    from onnxslim_kd.pipeline.runner import compress

    data = load_data(digits / "train.npz", digits_model, samples=64)
    recipe = [{"name": "prune", "ratio": 0.0, "downsample": 2},
              {"name": "distill", "epochs": 1, "augment_shift": 2},
              {"name": "decompose", "measure": True}, {"name": "quantize"}]  # fmt: skip
    result = compress(digits_model, recipe, data=data, bench_runs=0)
    assert [p["pass"] for p in result.passes] == ["prune", "distill", "decompose", "quantize"]
    assert run(result.model, random_data(result.model, batch=2))["logits"].shape == (2, 10)
