"""Attention heads are pruned whole: hand-built blocks and torch exports (legacy and dynamo,
timm-, Hugging Face- and SDPA-style), lossless against the zeroed original."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import check
from onnxslim_kd.prune.budget import rounded_keep
from onnxslim_kd.prune.prune import PruneOptions, prune
from tests.prune_graphs import Graph, prune_lossless, weights

HEADS, SIZE = 4, 2
WIDTH = HEADS * SIZE


def _split(g: Graph, t: str, computed: bool) -> str:
    """[B, T, C] -> [B, T, heads, size]: a constant target, or one built at run time from
    the tensor's batch and sequence sizes as torch's legacy exporter writes x.view(b, t, h, -1)."""
    if not computed:
        return g.op("Reshape", [t, g.const(np.array([0, 0, HEADS, SIZE], np.int64))])
    shape = g.op("Shape", [t])
    sizes = [
        g.op("Unsqueeze", [g.op("Gather", [shape, g.const(np.array(axis, np.int64))], axis=0),
                           g.const(np.array([0], np.int64))])
        for axis in (0, 1)
    ]  # fmt: skip
    pieces = [*sizes, g.const(np.array([HEADS], np.int64)), g.const(np.array([-1], np.int64))]
    return g.op("Reshape", [t, g.op("Concat", pieces, axis=0)])


def _attention(computed: bool = False, mask: bool = False, opset: int = 17) -> onnx.ModelProto:
    """Q/K/V projections with biases, softmax(Q K^T / sqrt(d) [+ mask]) V, the heads merged
    back and an output projection: matmul1-3 project, matmul4/5 are the activation
    products, matmul6 the output projection."""
    g = Graph(shape=(2, 5, WIDTH), opset=opset)

    def project() -> str:
        return g.op("Add", [g.op("MatMul", ["input", g.weight(WIDTH, WIDTH)]), g.weight(WIDTH)])

    q = g.op("Transpose", [_split(g, project(), computed)], perm=[0, 2, 1, 3])
    k = g.op("Transpose", [_split(g, project(), computed)], perm=[0, 2, 3, 1])
    v = g.op("Transpose", [_split(g, project(), computed)], perm=[0, 2, 1, 3])
    scores = g.op("Div", [g.op("MatMul", [q, k]), g.const(np.float32(np.sqrt(SIZE)))])
    if mask:
        causal = np.triu(np.full((5, 5), -1e4, np.float32), 1)
        scores = g.op("Add", [scores, g.const(causal)])
    probs = g.op("Softmax", [scores], axis=-1 if opset >= 13 else 3)
    context = g.op("Transpose", [g.op("MatMul", [probs, v])], perm=[0, 2, 1, 3])
    merged = g.op("Reshape", [context, g.const(np.array([0, 0, WIDTH], np.int64))])
    return g.model(g.op("MatMul", [merged, g.weight(WIDTH, 3)]))


def _heads_group(summary):
    return next(g for g in summary.groups if g.id.endswith("heads"))


@pytest.mark.parametrize(
    "computed, mask, opset", [(False, False, 17), (True, True, 17), (False, True, 11)]
)
def test_heads_are_pruned_whole_through_qkv_scores_and_the_output_projection(computed, mask, opset):
    pruned, summary = prune_lossless(_attention(computed, mask, opset))
    shapes = weights(pruned)
    for projection in ("matmul1", "matmul2", "matmul3"):
        assert shapes[f"{projection}:1"] == (WIDTH, WIDTH // 2)
    assert shapes["matmul6:1"] == (WIDTH // 2, 3)
    group = _heads_group(summary)
    assert (group.size, group.kept, group.status) == (HEADS, HEADS // 2, "pruned")
    assert group.nodes == ["matmul1", "matmul2", "matmul3"]
    kept = np.array(summary.plan["groups"][group.id]["keep"])
    assert len(kept) == HEADS // 2 and kept.max() < HEADS  # heads, not channels


def test_the_activation_products_lose_the_pruned_heads_macs():
    model = _attention()
    pruned, _ = prune_lossless(model)
    shapes = {"input": [2, 5, WIDTH]}
    before = model_stats(model, shapes).macs_per_node
    after = model_stats(pruned, shapes).macs_per_node
    for product in ("matmul4", "matmul5"):
        assert after[product] * 2 == before[product]


def test_a_softmax_over_the_heads_blocks_them():
    g = Graph(shape=(2, 5, WIDTH))
    projected = g.op("MatMul", ["input", g.weight(WIDTH, WIDTH)])
    heads = g.op("Transpose", [_split(g, projected, False)], perm=[0, 2, 1, 3])
    scores = g.op("MatMul", [heads, g.op("Transpose", [heads], perm=[0, 1, 3, 2])])
    y = g.op("ReduceMean", [g.op("Softmax", [scores], axis=1)], axes=[1], keepdims=0)
    _, summary = prune(g.model(y), PruneOptions(ratio=0.5, round_to=1))
    group = _heads_group(summary)
    assert group.status == "skipped" and "normalises the channel axis" in group.reasons[0]


def test_head_counts_round_in_channels():
    assert rounded_keep(8, 3, 8, unit=2) == 4  # 4 heads of 2 = 8 channels
    assert rounded_keep(8, 3, 8, unit=64) == 3  # a head is already 64 channels


def _export(style: str, dynamo: bool) -> onnx.ModelProto:
    torch = pytest.importorskip("torch")
    from tests.attention_blocks import Block, export

    torch.manual_seed(0)
    return export(Block(16, 4, style), torch.randn(2, 5, 16), dynamo=dynamo)


@pytest.mark.parametrize(
    "style, dynamo",
    [("view", False), ("hf", False), ("sdpa", False), ("view", True), ("hf", True),
     ("sdpa", True), ("fused", False), ("fused", True), ("timm", False), ("timm", True)],
)  # fmt: skip
def test_exported_attention_prunes_heads_and_keeps_dynamic_batch_and_sequence(style, dynamo):
    model = _export(style, dynamo)
    pruned, summary = prune_lossless(model, shapes={"x": [2, 5, 16]})
    group = _heads_group(summary)
    assert (group.size, group.kept, group.status) == (4, 2, "pruned")
    hidden = next(g for g in summary.groups if g.size == 32)
    assert (hidden.kept, hidden.status) == (16, "pruned")  # the MLP's hidden units
    assert summary.params_after < summary.params_before
    # the head splits and merges sized at run time are constants now, batch and sequence copied
    assert any(w.endswith("Reshape targets computed at run time made constant")
               for w in summary.warnings)  # fmt: skip
    feeds = random_data(pruned, {"x": [3, 7, 16]}).inputs
    (out,) = make_session(pruned).run(None, feeds)
    assert out.shape == (3, 7, 16)


def test_dynamo_sdpa_k_transposed_through_the_merged_batch_is_one_transpose():
    """The dynamo exporter's SDPA decomposition reshapes K to [B * heads, T, D] to transpose
    it; written as one Transpose (verified), its heads prune like the others."""
    model = _export("sdpa", True)
    _, summary = prune(model, PruneOptions(ratio=0.5), shapes={"x": [2, 5, 16]})
    assert "1 K^T through a merged batch axis written as one Transpose" in summary.warnings
    assert (_heads_group(summary).kept, _heads_group(summary).status) == (2, "pruned")


def test_tied_projection_weights_stay_shared():
    """An exporter that shares one weight between Q and K keeps sharing it after pruning."""
    model = _attention()
    tensors = {t.name: t for t in model.graph.initializer}
    q, k = (next(n for n in model.graph.node if n.name == name) for name in ("matmul1", "matmul2"))
    unused, k.input[1] = k.input[1], q.input[1]
    del model.graph.initializer[:]
    model.graph.initializer.extend(t for name, t in tensors.items() if name != unused)
    pruned, _ = prune_lossless(model)
    shared = {n.input[1] for n in pruned.graph.node if n.name in ("matmul1", "matmul2")}
    assert len(shared) == 1
    value = numpy_helper.to_array(next(t for t in pruned.graph.initializer if t.name in shared))
    assert value.shape == (WIDTH, WIDTH // 2)


def test_data_driven_head_scores_read_the_heads_outputs():
    """mean-act ranks heads by their share of softmax(Q K^T) V: the two heads whose value
    projections are scaled down are the two pruned."""
    model = _attention()
    tensors = {t.name: t for t in model.graph.initializer}
    value = next(n for n in model.graph.node if n.name == "matmul3").input[1]
    weight = numpy_helper.to_array(tensors[value]).copy()
    weight[:, : 2 * SIZE] *= 1e-3  # heads 0 and 1 barely contribute
    tensors[value].CopyFrom(numpy_helper.from_array(weight, value))
    data = random_data(model, batch=8)
    _, summary = prune(model, PruneOptions(ratio=0.5, round_to=1, criterion="mean-act"), data)
    group = _heads_group(summary)
    assert summary.plan["groups"][group.id]["keep"] == [2, 3]


def test_heads_multiplied_by_an_untracked_tensor_are_kept():
    """Q's heads times K^T read straight off the input (no projection to prune with them):
    removing heads of Q alone would break the product, so they stay, with the reason."""
    g = Graph(shape=(2, 5, WIDTH))
    q = g.op("Transpose", [_split(g, g.op("MatMul", ["input", g.weight(WIDTH, WIDTH)]), False)],
             perm=[0, 2, 1, 3])  # fmt: skip
    k = g.op("Transpose", [_split(g, "input", False)], perm=[0, 2, 3, 1])
    y = g.op("ReduceMean", [g.op("MatMul", [q, k])], axes=[1], keepdims=0)
    pruned, summary = prune(g.model(y), PruneOptions(ratio=0.5, round_to=1))
    group = _heads_group(summary)
    assert group.status == "skipped" and "untracked tensor" in group.reasons[0]
    check(pruned)


def _encoder(layers: int = 2, masked: bool = False):
    torch = pytest.importorskip("torch")

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    encoder = torch.nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
    if not masked:
        return encoder

    class Causal(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, x):
            steps = x.shape[1]
            mask = torch.triu(torch.full((steps, steps), float("-inf")), diagonal=1)
            return self.encoder(x, mask=mask)

    return Causal()


@pytest.mark.parametrize("dynamo", [False, True])
def test_multihead_attention_is_written_in_standard_form_and_its_heads_prune(dynamo):
    """nn.MultiheadAttention (packed in-projection, heads merged into the batch axis) is
    rewritten, verified by running, and pruned losslessly; the layers nn.TransformerEncoder
    copied (whose equal weights the legacy exporter shares) keep sharing them."""
    torch = pytest.importorskip("torch")
    from tests.attention_blocks import export

    model = export(_encoder(), torch.randn(2, 5, 32), dynamo=dynamo)
    pruned, summary = prune_lossless(model, shapes={"x": [2, 5, 32]})
    (heads,) = [g for g in summary.groups if g.id.endswith("heads")]  # tied: one group
    assert (heads.size, heads.kept, heads.unit, heads.status) == (4, 2, 8, "pruned")
    assert len(heads.nodes) == 6  # Q, K and V of both layers
    notes = [w for w in summary.warnings if "written in standard form" in w]
    assert len(notes) == 2
    assert summary.params_after < summary.params_before
    feeds = random_data(pruned, {"x": [3, 7, 32]}).inputs
    (out,) = make_session(pruned).run(None, feeds)
    assert out.shape == (3, 7, 32)


def test_a_masked_multihead_attention_is_left_packed_with_the_reason():
    """A causal mask the standard form does not add: the rewrite computes other values, so
    the block stays as exported and says why; the MLP still prunes."""
    torch = pytest.importorskip("torch")
    from tests.attention_blocks import export

    model = export(_encoder(layers=1, masked=True), torch.randn(2, 5, 32))
    pruned, summary = prune(model, PruneOptions(ratio=0.5), shapes={"x": [2, 5, 32]})
    check(pruned)
    assert not any(g.id.endswith("heads") for g in summary.groups)
    (note,) = [w for w in summary.warnings if "left packed" in w]
    assert note.endswith("the standard form computes other values (a mask or another op)")
    assert any(g.size == 64 and g.status == "pruned" for g in summary.groups)


@pytest.mark.parametrize("dynamo", [False, True])
def test_a_fused_qkv_projection_is_written_as_three_and_says_so(dynamo):
    """timm's qkv(x).reshape(B, N, 3, heads, D).permute(2, 0, 3, 1, 4): three projections,
    each a third of the weight and bias, named after the fused one."""
    model = _export("fused", dynamo)
    pruned, summary = prune(model, PruneOptions(ratio=0.5), shapes={"x": [2, 5, 16]})
    (note,) = [w for w in summary.warnings if "written as three" in w]
    fused = next(n for n in model.graph.node if n.op_type == "MatMul").name
    assert note == f"fused Q/K/V projection '{fused}' written as three, to prune its heads"
    matmuls = {n.name: n for n in pruned.graph.node if n.op_type == "MatMul"}
    assert {f"{fused}.{p}" for p in "qkv"} <= set(matmuls)
    assert fused not in matmuls
    shapes = {t.name: tuple(t.dims) for t in pruned.graph.initializer}
    assert all(shapes[matmuls[f"{fused}.{p}"].input[1]] == (16, 8) for p in "qkv")
