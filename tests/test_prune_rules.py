"""One hand-built graph per channel-coupling rule: exact shapes and lossless parity."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.prune import PruneOptions, prune
from tests.prune_graphs import Graph, prune_lossless, weights


def _node(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if n.name == name)


def test_conv_bn_relu_conv():
    g = Graph()
    y = g.conv(g.op("Relu", [g.bn(g.conv("input", 4, 8), 8)]), 8, 6)
    pruned, summary = prune_lossless(g.model(y))
    shapes = weights(pruned)
    assert shapes["conv1:1"] == (4, 4, 3, 3) and shapes["conv1:2"] == (4,)
    assert all(shapes[f"batchnormalization1:{i}"] == (4,) for i in range(1, 5))
    assert shapes["conv2:1"] == (6, 4, 3, 3)
    assert [g.status for g in summary.groups] == ["pruned", "skipped"]


def test_residual_add_couples_producers():
    g = Graph()
    a = g.op("Relu", [g.conv("input", 4, 8)])
    s = g.op("Add", [a, g.conv(a, 8, 8)])
    y = g.conv(g.op("Relu", [s]), 8, 3)
    pruned, summary = prune_lossless(g.model(y))
    shapes = weights(pruned)
    assert shapes["conv1:1"] == (4, 4, 3, 3)
    assert shapes["conv2:1"] == (4, 4, 3, 3)
    assert shapes["conv3:1"] == (3, 4, 3, 3)
    pruned_groups = [g for g in summary.groups if g.status == "pruned"]
    assert len(pruned_groups) == 1 and pruned_groups[0].nodes == ["conv1", "conv2"]


def test_concat_offsets_into_consumer():
    g = Graph()
    c = g.op("Concat", [g.conv("input", 4, 6), g.conv("input", 4, 10)], axis=1)
    y = g.conv(c, 16, 3)
    pruned, _ = prune_lossless(g.model(y))
    assert weights(pruned)["conv3:1"] == (3, 8, 3, 3)


def test_depthwise_conv_ties_channels_and_rewrites_group():
    g = Graph()
    a = g.op("Relu", [g.conv("input", 4, 8)])
    d = g.op("Relu", [g.conv(a, 8, 8, group=8)])
    y = g.conv(d, 8, 3)
    pruned, _ = prune_lossless(g.model(y))
    assert weights(pruned)["conv2:1"] == (4, 1, 3, 3)
    assert attribute(_node(pruned, "conv2"), "group") == 4


def test_grouped_conv_keeps_equal_counts_per_group():
    g = Graph()
    grouped = g.conv(g.conv("input", 4, 8), 8, 8, group=2)
    y = g.conv(g.op("Relu", [grouped]), 8, 3)
    pruned, summary = prune_lossless(g.model(y))
    assert weights(pruned)["conv2:1"] == (4, 2, 3, 3)
    assert attribute(_node(pruned, "conv2"), "group") == 2
    keep = np.array(summary.plan["groups"]["conv1"]["keep"])
    assert (keep < 4).sum() == (keep >= 4).sum() == 2


def test_squeeze_excitation_gate():
    g = Graph()
    trunk = g.op("Relu", [g.conv("input", 4, 8)])
    hidden = g.op("Relu", [g.conv(g.op("GlobalAveragePool", [trunk]), 8, 4, k=1)])
    gate = g.op("Sigmoid", [g.conv(hidden, 4, 8, k=1)])
    y = g.conv(g.op("Mul", [trunk, gate]), 8, 3)
    pruned, summary = prune_lossless(g.model(y))
    shapes = weights(pruned)
    assert shapes["conv2:1"] == (2, 4, 1, 1)  # squeeze: its own hidden group
    assert shapes["conv3:1"] == (4, 2, 1, 1)  # excite: coupled with the trunk
    assert shapes["conv4:1"] == (3, 4, 3, 3)
    assert sorted(g.size for g in summary.groups if g.status == "pruned") == [4, 8]


def test_flatten_to_gemm_and_mlp_hidden_units():
    g = Graph(shape=(2, 4, 4, 4))
    flat = g.op("Flatten", [g.op("Relu", [g.conv("input", 4, 6)])], axis=1)
    hidden = g.op("Relu", [g.op("Gemm", [flat, g.weight(10, 96), g.weight(10)], transB=1)])
    y = g.op("Gemm", [hidden, g.weight(10, 5), g.weight(5)])
    pruned, _ = prune_lossless(g.model(y))
    shapes = weights(pruned)
    assert shapes["gemm1:1"] == (5, 48) and shapes["gemm1:2"] == (5,)
    assert shapes["gemm2:1"] == (5, 5)


def test_matmul_on_3d_activations():
    g = Graph(shape=(2, 5, 8))
    hidden = g.op("Relu", [g.op("MatMul", ["input", g.weight(8, 16)])])
    y = g.op("MatMul", [hidden, g.weight(16, 4)])
    pruned, _ = prune_lossless(g.model(y))
    assert weights(pruned) == {"matmul1:1": (8, 8), "matmul2:1": (8, 4)}


def test_split_sizes_are_rewritten():
    g = Graph()
    left, right = g.op(
        "Split", [g.conv("input", 4, 8), g.const(np.array([3, 5]))], outputs=2, axis=1
    )
    y = g.op("Add", [g.conv(left, 3, 2), g.conv(right, 5, 2)])
    pruned, summary = prune_lossless(g.model(y))
    split = _node(pruned, "split1")
    sizes = onnx.numpy_helper.to_array(
        next(t for t in pruned.graph.initializer if t.name == split.input[1])
    )
    groups = summary.plan["groups"]  # the cut conv has one channel space per part
    parts = [len(groups[f"conv1 part {i}/2"]["keep"]) for i in (1, 2)]
    assert sizes.tolist() == parts == [2, 3]  # half of each part, rounded up


def test_a_split_half_added_back_to_its_bottleneck_is_pruned_c2f():
    """YOLO's C2f: conv -> SiLU -> Split in halves; one half feeds a bottleneck whose
    output is added back to it; all of them are concatenated. Every group is pruned."""
    g = Graph(shape=(2, 8, 8, 8))
    c = g.conv("input", 8, 16, k=1)
    x = g.op("Mul", [c, g.op("Sigmoid", [c])])
    a, b = g.op("Split", [x, g.const(np.array([8, 8]))], outputs=2, axis=1)
    m = g.op("Add", [b, g.op("Relu", [g.conv(g.op("Relu", [g.conv(b, 8, 8)]), 8, 8)])])
    y = g.conv(g.op("Concat", [a, b, m], axis=1), 24, 6, k=1)
    pruned, summary = prune_lossless(g.model(y))
    status = {group.id: group.status for group in summary.groups}
    assert status == {
        "conv1 part 1/2": "pruned",
        "conv1 part 2/2": "pruned",
        "conv2": "pruned",
        "conv4": "skipped",
    }, status  # the output's conv
    assert weights(pruned)["conv1:1"] == (8, 8, 1, 1)  # 4 + 4 of 8 + 8
    assert weights(pruned)["conv3:1"] == (4, 4, 3, 3)  # the bottleneck's output: tied to b
    assert weights(pruned)["conv4:1"] == (6, 12, 1, 1)  # a, b, m: 4 channels each


def test_slice_of_channels():
    g = Graph()
    part = g.op("Slice", [g.conv("input", 4, 8), g.const(np.array([2])), g.const(np.array([6])),
                          g.const(np.array([1]))])  # fmt: skip
    y = g.conv(part, 4, 3)
    pruned, _ = prune_lossless(g.model(y))
    assert weights(pruned)["conv1:1"] == (4, 4, 3, 3)
    assert weights(pruned)["conv2:1"][1] == len(_slice_output(pruned))


def _slice_output(model):
    from onnxslim_kd.data import random_data
    from onnxslim_kd.graph.session import make_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output[0].name = _node(model, "slice1").output[0]
    return make_session(probe).run(None, random_data(model).inputs)[0][0]


def test_hardswish_written_out():
    g = Graph()
    x = g.conv("input", 4, 8)
    clipped = g.op("Clip", [g.op("Add", [x, g.const(np.float32(3))]), g.const(np.float32(0)),
                            g.const(np.float32(6))])  # fmt: skip
    act = g.op("Div", [g.op("Mul", [x, clipped]), g.const(np.float32(6))])
    pruned, _ = prune_lossless(g.model(g.conv(act, 8, 3)))
    assert weights(pruned)["conv2:1"] == (3, 4, 3, 3)


def test_prelu_and_per_channel_constants():
    g = Graph()
    x = g.op("PRelu", [g.conv("input", 4, 8), g.weight(8, 1, 1)])
    x = g.op("Mul", [x, g.weight(1, 8, 1, 1)])
    x = g.op("Add", [x, g.weight(8, 1, 1)])
    pruned, _ = prune_lossless(g.model(g.conv(x, 8, 3)))
    shapes = weights(pruned)
    assert shapes["prelu1:1"] == (4, 1, 1) and shapes["mul1:1"] == (1, 4, 1, 1)
    assert shapes["add1:1"] == (4, 1, 1)


def test_pooling_padding_resize_and_spatial_reduce():
    g = Graph(opset=18)
    x = g.op("MaxPool", [g.conv("input", 4, 8)], kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Pad", [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1]))])
    x = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    x = g.op("ReduceMean", [x, g.const(np.array([2, 3]))], keepdims=1)
    pruned, _ = prune_lossless(g.model(g.conv(x, 8, 3, k=1)))
    assert weights(pruned)["conv2:1"] == (3, 4, 1, 1)


def test_reshape_flatten_and_transpose_to_matmul():
    g = Graph()
    x = g.op("ReduceMean", [g.conv("input", 4, 8)], axes=[2, 3], keepdims=1)
    flat = g.op("Reshape", [x, g.const(np.array([2, 8]))])
    a = g.op("Gemm", [flat, g.weight(8, 6)])
    nhwc = g.op("Transpose", [g.conv("input", 4, 8)], perm=[0, 2, 3, 1])
    b = g.op("ReduceMean", [g.op("MatMul", [nhwc, g.weight(8, 6)])], axes=[1, 2], keepdims=0)
    pruned, _ = prune_lossless(g.model(g.op("Add", [a, b])))
    shapes = weights(pruned)
    assert shapes["gemm1:1"] == (4, 6) and shapes["reshape1:1"] == (2,)
    assert shapes["matmul1:1"] == (4, 6)


def test_conv_transpose_and_instance_norm():
    g = Graph()
    x = g.op("Relu", [g.conv("input", 4, 8)])
    up = g.op("ConvTranspose", [x, g.weight(8, 6, 2, 2), g.weight(6)], strides=[2, 2])
    y = g.op("InstanceNormalization", [up, g.weight(6), g.weight(6)])
    pruned, _ = prune_lossless(g.model(g.conv(y, 6, 3)))
    shapes = weights(pruned)
    assert shapes["convtranspose1:1"] == (4, 3, 2, 2)
    assert shapes["instancenormalization1:1"] == (3,)


def test_unknown_op_blocks_its_groups_and_leaves_the_model_alone():
    g = Graph()
    y = g.conv(g.op("LRN", [g.conv("input", 4, 8)], size=3), 8, 3)
    model = g.model(y)
    pruned, summary = prune(model, PruneOptions(ratio=0.5, round_to=1, keep_stem=False))
    reasons = [r for group in summary.groups for r in group.reasons]
    assert "LRN node 'lrn1' is not understood" in reasons
    assert pruned.SerializeToString() == model.SerializeToString()


def _dead_filters(model: onnx.ModelProto, conv: str, channels: list[int]) -> onnx.ModelProto:
    """Zero the filters (not the biases) of `channels`: they output relu(bias), a constant."""
    node = _node(model, conv)
    tensor = next(t for t in model.graph.initializer if t.name == node.input[1])
    value = onnx.numpy_helper.to_array(tensor).copy()
    value[channels] = 0
    tensor.CopyFrom(onnx.numpy_helper.from_array(value, tensor.name))
    bias = next(t for t in model.graph.initializer if t.name == node.input[2])
    bias.CopyFrom(onnx.numpy_helper.from_array(np.full(len(value), 0.7, np.float32), bias.name))
    return model


def _assert_exact(model, pruned):
    from onnxslim_kd.data import random_data
    from onnxslim_kd.graph.validate import compare_models

    fidelity = compare_models(model, pruned, random_data(model, batch=2))
    assert all(f.max_rel_diff <= 1e-5 for f in fidelity.values()), fidelity


def test_constant_channels_fold_into_the_next_bias():
    """Filters exactly zero but biases not: removing them must change nothing."""
    g = Graph(shape=(2, 4, 4, 4))
    x = g.op("Relu", [g.conv("input", 4, 8)])
    y = g.op("Relu", [g.conv(x, 8, 6, k=1)])  # 1x1: the fold is exact
    flat = g.op("Flatten", [g.op("Relu", [g.conv(y, 6, 6, k=1)])])
    out = g.op("Gemm", [flat, g.weight(96, 5)])  # no bias input: one is added
    model = _dead_filters(_dead_filters(g.model(out), "conv1", [0, 2, 4, 6]), "conv3", [1, 3, 5])
    plan = {
        "format": "onnxslim-kd/prune-plan/1",
        "groups": {"conv1": {"keep": [1, 3, 5, 7]}, "conv3": {"keep": [0, 2, 4]}},
    }
    pruned, summary = prune(model, PruneOptions(plan=plan, keep_stem=False, round_to=1))
    assert weights(pruned)["conv2:1"] == (6, 4, 1, 1) and weights(pruned)["gemm1:1"] == (48, 5)
    assert "'conv2': folded 4 constant inputs into its bias" in summary.warnings
    assert "'gemm1': folded 48 constant inputs into its bias" in summary.warnings  # 3 x 4 x 4
    _assert_exact(model, pruned)


def test_padded_consumer_is_reported_not_folded():
    g = Graph()
    model = _dead_filters(
        g.model(g.conv(g.op("Relu", [g.conv("input", 4, 8)]), 8, 3)), "conv1", [0]
    )
    plan = {"format": "onnxslim-kd/prune-plan/1", "groups": {"conv1": {"keep": [1, 2, 3]}}}
    _, summary = prune(model, PruneOptions(plan=plan, keep_stem=False, round_to=1))
    assert "'conv2': constant channels dropped (padding: no exact fold)" in summary.warnings


def _view_by_batch(channel_index: int | None = None, reshaped: str = "x"):
    """conv -> x.view(x.size(0), -1) -> Gemm, the target computed from Shape at run time;
    with `channel_index`, the Shape's channel entry is also read (x.view(b, x.size(1), -1),
    then a mean over the positions); `reshaped="relu"` reshapes another tensor by x's
    sizes."""
    g = Graph(shape=(2, 4, 4, 4))
    x = g.op("Relu", [g.conv("input", 4, 8)])
    shape = g.op("Shape", [x])
    batch = g.op("Gather", [shape, g.const(np.array(0, np.int64))], axis=0)
    pieces = [g.op("Unsqueeze", [batch, g.const(np.array([0], np.int64))]),
              g.const(np.array([-1], np.int64))]  # fmt: skip
    if channel_index is not None:
        channels = g.op("Gather", [shape, g.const(np.array([channel_index], np.int64))], axis=0)
        pieces = [pieces[0], channels, g.const(np.array([-1], np.int64))]
        source = x if reshaped == "x" else g.op("Relu", [x])
        x = g.op("Reshape", [source, g.op("Concat", pieces, axis=0)])
        pooled = g.op("ReduceMean", [x], keepdims=0, axes=[2])
        return g.model(g.op("Gemm", [pooled, g.weight(3, 8), g.weight(3)], transB=1))
    flat = g.op("Reshape", [x, g.op("Concat", pieces, axis=0)])
    return g.model(g.op("Gemm", [flat, g.weight(3, 128), g.weight(3)], transB=1))


def test_a_reshape_target_computed_from_the_batch_size_is_pruned_through():
    pruned, summary = prune_lossless(_view_by_batch())
    assert {g.id: g.status for g in summary.groups}["conv1"] == "pruned"
    assert weights(pruned)["gemm1:1"] == (3, 64)  # 4 kept channels x 16 positions


def test_a_reshape_by_its_own_channel_count_is_pruned_through():
    """x.view(b, x.size(1), -1): the count read off x follows x's pruning."""
    pruned, summary = prune_lossless(_view_by_batch(channel_index=1))
    assert {g.id: g.status for g in summary.groups}["conv1"] == "pruned"
    assert weights(pruned)["gemm1:1"] == (3, 4)


def test_a_channel_count_read_off_x_sizes_the_reshape_of_its_twin():
    """relu(x).view(b, x.size(1), -1): the count is frozen, then the Reshape's own channel
    entry is rewritten to the kept count."""
    pruned, summary = prune_lossless(_view_by_batch(channel_index=1, reshaped="relu"))
    assert {g.id: g.status for g in summary.groups}["conv1"] == "pruned"
    assert weights(pruned)["gemm1:1"] == (3, 4)


def test_a_channel_count_used_as_a_value_blocks_the_channels():
    """sum(x) / x.size(1): the count is computed with, not a size; pruning would change it."""
    g = Graph(shape=(2, 4, 4, 4))
    x = g.op("Relu", [g.conv("input", 4, 8)])
    count = g.op("Gather", [g.op("Shape", [x]), g.const(np.array(1, np.int64))], axis=0)
    total = g.op("ReduceSum", [x, g.const(np.array([1], np.int64))], keepdims=0)
    model = g.model(g.op("Div", [total, g.op("Cast", [count], to=1)]))
    _, summary = prune(model, PruneOptions(ratio=0.5))
    conv = next(g for g in summary.groups if g.id == "conv1")
    assert conv.status == "skipped" and "passes on the channel count" in conv.reasons[0]


def _conv_to_recurrent(op_type: str, gates: int, hidden: int = 5, directions: int = 2):
    """conv -> relu -> [W, N, C] columns -> a bidirectional recurrent layer (CRNN)."""
    g = Graph(shape=(2, 4, 1, 6))
    features = g.op("Relu", [g.conv("input", 4, 8)])
    squeezed = g.op("Squeeze", [features, g.const(np.array([2]))])
    columns = g.op("Transpose", [squeezed], perm=[2, 0, 1])
    w = g.weight(directions, gates * hidden, 8)
    r = g.weight(directions, gates * hidden, hidden)
    b = g.weight(directions, 2 * gates * hidden)
    direction = "bidirectional" if directions == 2 else "forward"
    y = g.op(op_type, [columns, w, r, b], hidden_size=hidden, direction=direction)
    return g.model(y)


@pytest.mark.parametrize(("op_type", "gates"), [("LSTM", 4), ("GRU", 3), ("RNN", 1)])
def test_recurrent_layers_take_pruned_input_features(op_type, gates):
    pruned, _ = prune_lossless(_conv_to_recurrent(op_type, gates))
    assert weights(pruned)[f"{op_type.lower()}1:1"] == (2, gates * 5, 4)
    assert weights(pruned)[f"{op_type.lower()}1:2"] == (2, gates * 5, 5)  # hidden units stay


def test_constant_inputs_of_a_recurrent_layer_fold_into_its_input_bias():
    model = _dead_filters(_conv_to_recurrent("LSTM", 4), "conv1", [0, 2, 4, 6])
    plan = {"format": "onnxslim-kd/prune-plan/1", "groups": {"conv1": {"keep": [1, 3, 5, 7]}}}
    pruned, summary = prune(model, PruneOptions(plan=plan, keep_stem=False, round_to=1))
    assert weights(pruned)["lstm1:1"] == (2, 20, 4)
    assert "'lstm1': folded 4 constant inputs into its bias" in summary.warnings
    _assert_exact(model, pruned)


def test_concat_prunes_the_inputs_whose_channels_lie_on_its_axis():
    """One input's channels are on the Concat axis, the other's (transposed) are not: the
    first is pruned as a segment, only the second is blocked."""
    g = Graph(shape=(2, 4, 4, 4))
    direct = g.op("Relu", [g.conv("input", 4, 8)])
    moved = g.op("Transpose", [g.op("Relu", [g.conv("input", 4, 4)])], perm=[0, 3, 2, 1])
    joined = g.op("Concat", [direct, moved], axis=1)
    pruned, summary = prune_lossless(g.model(g.conv(joined, 12, 3)))
    assert weights(pruned)["conv1:1"] == (4, 4, 3, 3) and weights(pruned)["conv3:1"] == (3, 8, 3, 3)
    reasons = {r for group in summary.groups for r in group.reasons}
    assert "Concat 'concat1' joins it on another axis" in reasons


def test_a_weight_tied_between_layers_stays_one_tensor():
    """Two MLP blocks read the same W1/W2 (an exporter shares equal weights): pruning keeps
    the same hidden units in both, so the weights stay shared and params only fall."""
    g = Graph(shape=(2, 8))
    w1, w2 = g.weight(8, 16), g.weight(16, 8)
    zeros = g.const(np.zeros(16, np.float32))  # a uniform tensor shared by unrelated layers
    first = g.op("MatMul", [g.op("Relu", [g.op("Add", [g.op("MatMul", ["input", w1]), zeros])]),
                            w2])  # fmt: skip
    second = g.op("MatMul", [g.op("Relu", [g.op("Add", [g.op("MatMul", [first, w1]), zeros])]),
                             w2])  # fmt: skip
    model = g.model(second)
    pruned, summary = prune_lossless(model)
    shapes = weights(pruned)
    assert shapes["matmul1:1"] == shapes["matmul3:1"] == (8, 8)
    assert pruned.graph.node[0].input[1] == pruned.graph.node[4].input[1]  # one tensor
    assert summary.params_after < summary.params_before
