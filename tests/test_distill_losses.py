"""The dml and fsp losses: exact values on hand-made tensors, the feature plan they need,
and short digits runs in which each one repairs a damaged student."""

from __future__ import annotations

import math

import numpy as np
import pytest

from onnxslim_kd.data import load_data, random_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from tests.builders import conv_net

torch = pytest.importorskip("torch")

from onnxslim_kd.distill.api import distill  # noqa: E402
from onnxslim_kd.distill.executor import GraphModule  # noqa: E402
from onnxslim_kd.distill.features import plan_features  # noqa: E402
from onnxslim_kd.distill.losses import (  # noqa: E402
    AttentionMaps,
    CrossLayerFlow,
    FlowOfSolution,
    MutualKL,
    Signals,
    gram,
    sections,
)
from onnxslim_kd.distill.options import DistillOptions  # noqa: E402
from onnxslim_kd.prune.prune import PruneOptions, prune  # noqa: E402
from tests.test_distill import damaged  # noqa: E402


def _dml(student_logits: list[float], teacher_probs: list[float], t: float) -> float:
    signals = Signals(torch.tensor([student_logits]), torch.tensor([teacher_probs]), t)
    return float(MutualKL()(signals))


def test_dml_matches_a_hand_computation_and_is_symmetric():
    # student softmax([2 ln 3, 0] / 2) = [0.75, 0.25] against a uniform teacher, T = 2
    by_hand = 4 * (
        0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(teacher || student)
        + 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # KL(student || teacher)
    )  # fmt: skip
    forward = _dml([2 * math.log(3), 0.0], [0.5, 0.5], 2.0)
    swapped = _dml([0.0, 0.0], [0.75, 0.25], 2.0)  # student uniform, teacher [0.75, 0.25]
    assert forward == pytest.approx(by_hand, rel=1e-5)
    assert swapped == pytest.approx(by_hand, rel=1e-5)


def test_dml_is_zero_only_when_the_distributions_agree():
    logits = [1.0, -0.5, 2.0]
    same = torch.softmax(torch.tensor(logits) / 3, 0).tolist()
    assert _dml(logits, same, 3.0) == pytest.approx(0.0, abs=1e-6)
    assert _dml(logits, [1 / 3] * 3, 3.0) > 1e-3


def test_gram_is_channels_by_channels_over_positions():
    first = torch.tensor([[1.0, 2, 3, 4], [0, 1, 0, 1]]).reshape(1, 2, 2, 2)
    second = torch.tensor([[1.0, 1, 1, 1], [2, 0, 0, 2], [1, 0, 0, 0]]).reshape(1, 3, 2, 2)
    expected = torch.tensor([[[2.5, 2.5, 0.25], [0.5, 0.5, 0.0]]])
    assert torch.allclose(gram(first, second), expected)


def test_gram_average_pools_the_larger_map_to_the_smaller_size():
    torch.manual_seed(0)
    large, small = torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)
    pooled = torch.nn.functional.avg_pool2d(large, 2)
    assert gram(large, small).shape == (2, 3, 5)
    assert torch.allclose(gram(large, small), gram(pooled, small))
    assert torch.allclose(gram(small, large), gram(small, pooled))


def test_sections_pair_within_fsp_and_across_fspx():
    maps = [torch.zeros(1, 1, s, s) for s in (8, 8, 4, 4, 2)]
    groups = sections(maps)
    assert groups == [[0, 1], [2, 3], [4]]
    assert FlowOfSolution([]).flows(groups) == [(0, 1), (2, 3)]
    assert CrossLayerFlow([]).flows(groups) == [(1, 3), (3, 4)]


def _map_signals(student_maps: list, teacher_maps: list) -> Signals:
    logits = torch.zeros(2, 3)
    return Signals(logits, torch.softmax(logits, 1), 1.0, None, student_maps, teacher_maps)


@pytest.mark.parametrize("cls", [FlowOfSolution, CrossLayerFlow])
def test_fsp_trains_the_adapters_and_is_zero_for_the_teachers_own_maps(cls):
    torch.manual_seed(0)
    teacher = [torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4), torch.randn(2, 6, 2, 2)]
    assert float(cls([(4, 4), (4, 4), (6, 6)])(_map_signals(teacher, teacher))) == 0.0
    student = [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
    loss = cls([(3, 4), (3, 4), (5, 6)])
    value = loss(_map_signals(student, teacher))
    value.backward()
    assert float(value.detach()) > 0
    used = {1, 2} if cls is CrossLayerFlow else {0, 1}
    for index, adapter in enumerate(loss.adapters):
        assert adapter.weight.shape[:2] == (teacher[index].shape[1], student[index].shape[1])
        has_grad = adapter.weight.grad is not None and bool(adapter.weight.grad.abs().sum() > 0)
        assert has_grad == (index in used), index


def test_fsp_asks_the_plan_for_each_sections_first_map():
    model = conv_net()
    module = GraphModule(model)
    feeds = {"input": torch.from_numpy(random_data(model, batch=2).inputs["input"])}
    maps = {s: plan_features(module, module, feeds, [], s).maps for s in (False, True)}
    assert maps == {False: [("r", "r")], True: [("c", "c"), ("r", "r")]}


def test_new_loss_names_have_weights_and_reach_the_cli_help(cli):
    weights = DistillOptions(loss="fsp").loss_weights(labelled=True)
    assert weights == pytest.approx({"kd": 0.9, "ce": 0.1, "fsp": 50.0})
    assert DistillOptions(loss="dml").loss_weights(labelled=False) == {"kd": 1.0, "dml": 1.0}
    help_text = cli("distill", "--help").stdout
    assert all(name in help_text for name in ("dml", "fsp", "fspx", "attn"))


@pytest.mark.parametrize("loss", ["dml", "fsp", "fspx"])
def test_each_new_loss_repairs_a_damaged_digits_student(digits, loss):
    torch.set_num_threads(2)
    teacher = load(digits / "model.onnx")
    student = damaged(teacher)
    test = load_data(digits / "test.npz", teacher, samples=270)
    train = load_data(digits / "train.npz", teacher, samples=256)

    def accuracy(model) -> float:
        return float(np.mean(run(model, test)["logits"].argmax(1) == test.labels))

    options = DistillOptions(epochs=2, batch=32, loss=loss, lr=1e-4, augment_shift=0)
    trained, summary = distill(student, [teacher], train, options=options)
    before, after = accuracy(student), accuracy(trained)
    assert after > before + 0.2, (before, after)
    assert loss in summary["loss_weights"]
    # the adapters trained but stay out of the graph
    assert [t.name for t in trained.graph.initializer] == [
        t.name for t in student.graph.initializer
    ]


def test_attention_maps_compare_head_averaged_rows_by_kl():
    """Teacher: 2 heads whose rows average to [0.5, 0.5] and [0.9, 0.1]; student: one head
    with [0.75, 0.25] on both rows (head counts differ, as after head pruning)."""
    teacher = torch.tensor([[[[0.2, 0.8], [0.9, 0.1]], [[0.8, 0.2], [0.9, 0.1]]]])
    student = torch.tensor([[[[0.75, 0.25], [0.75, 0.25]]]])

    def kl(p, q):
        return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))

    by_hand = (kl([0.5, 0.5], [0.75, 0.25]) + kl([0.9, 0.1], [0.75, 0.25])) / 2
    signals = Signals(torch.zeros(1, 2), torch.ones(1, 2) / 2, 1.0,
                      student_attention=[student], teacher_attention=[teacher])  # fmt: skip
    assert float(AttentionMaps()(signals)) == pytest.approx(by_hand, rel=1e-5)
    same = Signals(torch.zeros(1, 2), torch.ones(1, 2) / 2, 1.0,
                   student_attention=[teacher], teacher_attention=[teacher])  # fmt: skip
    assert float(AttentionMaps()(same)) == pytest.approx(0.0, abs=1e-7)


def test_the_plan_pairs_every_attention_softmax_of_the_vit_sample(vit_digits, tmp_path):
    teacher = load(vit_digits / "model.onnx")
    student, _ = prune(teacher, PruneOptions(ratio=0.5))
    feeds = {"input": torch.from_numpy(random_data(teacher, batch=2).inputs["input"])}
    plan = plan_features(GraphModule(student), GraphModule(teacher), feeds, [])
    softmaxes = [n.output[0] for n in teacher.graph.node if n.op_type == "Softmax"]
    assert plan.attention == [(name, name) for name in softmaxes] and len(softmaxes) == 4


def test_attn_distills_a_head_pruned_vit_and_says_so(vit_digits):
    torch.set_num_threads(2)
    teacher = load(vit_digits / "model.onnx")
    student, _ = prune(teacher, PruneOptions(ratio=0.5))
    train = load_data(vit_digits.parent / "digits/train.npz", teacher, samples=256)
    options = DistillOptions(epochs=2, batch=32, loss="attn", augment_shift=0)
    _, summary = distill(student, [teacher], train, options=options)
    assert summary["loss_weights"] == pytest.approx({"kd": 0.9, "ce": 0.1, "attn": 1.0})
    assert summary["val_after"] >= summary["val_before"]


def test_attn_without_attention_in_the_graph_is_refused(digits):
    from onnxslim_kd.errors import InputError

    teacher = load(digits / "model.onnx")
    train = load_data(digits / "train.npz", teacher, samples=64)
    with pytest.raises(InputError, match="the attn loss needs attention probabilities"):
        distill(teacher, [teacher], train, options=DistillOptions(epochs=1, loss="attn"))


def test_hint_matches_every_residual_stream_of_a_width_pruned_vit_through_adapters(vit_digits):
    """Each block's residual Adds give [B, T, C] hidden states; with the residual width
    pruned (64 -> 32) the hint loss bridges them with 1x1 adapters and trains."""
    torch.set_num_threads(2)
    teacher = load(vit_digits / "model.onnx")
    student, _ = prune(teacher, PruneOptions(ratio=0.5, prune_norms=True))
    feeds = {"input": torch.from_numpy(random_data(teacher, batch=2).inputs["input"])}
    plan = plan_features(GraphModule(student), GraphModule(teacher), feeds, [])
    residual = [n.output[0] for n in teacher.graph.node
                if n.op_type == "Add" and n.name.endswith(("/Add", "/Add_1"))
                and "/blocks/" in n.name and n.name.count("/") == 3]  # fmt: skip
    tokens = [pair for pair in plan.maps if pair[0] in residual]
    assert len(residual) == 8 and tokens == [(name, name) for name in residual]
    assert {plan.channels[plan.maps.index(pair)] for pair in tokens} == {(32, 64)}
    train = load_data(vit_digits.parent / "digits/train.npz", teacher, samples=128)
    options = DistillOptions(epochs=2, batch=32, loss="kd:1,hint:1", augment_shift=0,
                             val_fraction=0.0)  # fmt: skip
    _, summary = distill(student, [teacher], train, options=options)
    losses = [epoch["loss"] for epoch in summary["training"]["history"]]
    assert all(math.isfinite(value) for value in losses) and losses[-1] < losses[0]
    assert [list(pair) for pair in tokens] == [
        pair for pair in summary["features"]["maps"] if pair[0] in residual
    ]
