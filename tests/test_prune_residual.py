"""A transformer's residual width: the patch embedding, class token, position embeddings,
every residual Add, the LayerNorms and the head prune together; exact except for the
LayerNorms' statistics, which are pruned only when asked (`prune_norms`)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.validate import check
from onnxslim_kd.prune.prune import PruneOptions, prune
from tests.prune_graphs import Graph, prune_lossless

SHAPES = {"input": [2, 1, 16, 16]}


def _vit(norms: bool, dynamo: bool, style: str = "view"):
    torch = pytest.importorskip("torch")
    from tests.attention_blocks import TinyViT, export_image

    torch.manual_seed(0)
    return export_image(TinyViT(norms=norms, style=style), dynamo=dynamo)


def _statuses(summary) -> dict[str, tuple[str, int, int, bool]]:
    return {g.id: (g.status, g.size, g.kept, g.exact) for g in summary.groups}


@pytest.mark.parametrize("dynamo", [False, True])
def test_the_residual_width_prunes_exactly_through_embeddings_token_and_adds(dynamo):
    """Without LayerNorms everything on the residual stream is exact: zero-channel parity
    through x.flatten(2), torch.cat with the expanded class token, the position
    embeddings, both blocks' residual Adds and x[:, 0] into the head."""
    model = _vit(norms=False, dynamo=dynamo)
    pruned, summary = prune_lossless(model, shapes=SHAPES)
    embed = next(g for g in summary.groups if g.size == 16)
    assert (embed.status, embed.kept, embed.exact) == ("pruned", 8, True)
    tensors = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    assert (1, 1, 8) in tensors.values() and (1, 17, 8) in tensors.values()  # token, positions
    feeds = random_data(pruned, {"input": [5, 1, 16, 16]}).inputs
    (logits,) = make_session(pruned).run(None, feeds)
    assert logits.shape == (5, 10)


@pytest.mark.parametrize("dynamo", [False, True])
def test_the_residual_width_read_off_the_input_to_size_heads_is_frozen(dynamo):
    """timm's `B, N, C = x.shape`: C sizes the head split (C // heads) and the merge back;
    pruning the residual keeps those sizes (they are the projections'), exactly."""
    model = _vit(norms=False, dynamo=dynamo, style="timm")
    assert "Shape" in {n.op_type for n in model.graph.node}
    pruned, summary = prune_lossless(model, shapes=SHAPES)
    embed = next(g for g in summary.groups if g.size == 16)
    assert (embed.status, embed.kept) == ("pruned", 8)
    heads = [g for g in summary.groups if g.unit == 4]
    assert len(heads) == 2 and all(g.status == "pruned" for g in heads)
    feeds = random_data(pruned, {"input": [3, 1, 16, 16]}).inputs
    (logits,) = make_session(pruned).run(None, feeds)
    assert logits.shape == (3, 10)


@pytest.mark.parametrize("dynamo", [False, True])
def test_layer_norms_keep_the_residual_width_unless_asked(dynamo):
    model = _vit(norms=True, dynamo=dynamo)
    _, kept = prune(model, PruneOptions(ratio=0.5, keep_stem=False), shapes=SHAPES)
    embed = next(g for g in kept.groups if g.size == 16)
    assert embed.status == "skipped" and "pruning them is not exact" in embed.reasons[0]
    assert any(g.status == "pruned" for g in kept.groups)  # heads and MLP still prune
    pruned, summary = prune(
        model, PruneOptions(ratio=0.5, keep_stem=False, prune_norms=True), shapes=SHAPES
    )
    check(pruned)
    embed = next(g for g in summary.groups if g.size == 16)
    assert (embed.status, embed.kept, embed.exact) == ("pruned", 8, False)
    assert any("needs fine-tuning" in w for w in summary.warnings)
    assert summary.params_after < kept.params_after


def test_a_pruned_layer_norm_normalises_over_the_kept_channels():
    """MatMul -> LayerNorm -> MatMul: the pruned model computes the LayerNorm of the kept
    channels with their scale and bias, exactly as numpy does."""
    g = Graph(shape=(2, 5, 6))
    hidden = g.op("MatMul", ["input", g.weight(6, 8)])
    scale, bias = g.weight(8), g.weight(8)
    normed = g.op("LayerNormalization", [hidden, scale, bias], axis=-1, epsilon=1e-5)
    model = g.model(g.op("MatMul", [normed, g.weight(8, 3)]))
    pruned, summary = prune(model, PruneOptions(ratio=0.5, round_to=1, prune_norms=True))
    keep = np.array(summary.plan["groups"]["matmul1"]["keep"])
    values = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    w1, w2 = (values[n.input[1]] for n in model.graph.node if n.op_type == "MatMul")
    x = random_data(model, batch=2).inputs["input"]
    h = (x @ w1)[..., keep]
    h = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-5)
    expected = (h * values[scale][keep] + values[bias][keep]) @ w2[keep]
    (out,) = make_session(pruned).run(None, {"input": x})
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)


def test_a_layer_norm_over_channels_and_other_axes_blocks():
    g = Graph(shape=(2, 4, 5))
    hidden = g.op("Transpose", [g.op("MatMul", ["input", g.weight(5, 8)])], perm=[0, 2, 1])
    normed = g.op("LayerNormalization", [hidden, g.weight(8, 4), g.weight(8, 4)], axis=1)
    model = g.model(g.op("ReduceMean", [normed], axes=[1], keepdims=0))
    _, summary = prune(model, PruneOptions(ratio=0.5, prune_norms=True))
    group = summary.groups[0]
    assert group.status == "skipped" and "with other axes" in group.reasons[0]


def test_a_gather_of_channels_blocks_them():
    g = Graph(shape=(2, 5, 6))
    hidden = g.op("MatMul", ["input", g.weight(6, 8)])
    picked = g.op("Gather", [hidden, g.const(np.array([0, 2], np.int64))], axis=2)
    _, summary = prune(g.model(picked), PruneOptions(ratio=0.5))
    assert "picks channels" in summary.groups[0].reasons[0]
