"""Distillation end to end: KD recovers a damaged digits student; losses; pass; CLI exit codes."""

from __future__ import annotations

import builtins
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxslim_kd.data import load_data, random_data
from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from onnxslim_kd.graph.walk import clone
from tests.builders import conv_net

torch = pytest.importorskip("torch")

from onnxslim_kd.distill.api import distill  # noqa: E402
from onnxslim_kd.distill.losses import Objective  # noqa: E402
from onnxslim_kd.distill.options import DistillOptions  # noqa: E402
from onnxslim_kd.distill.teachers import Ensemble  # noqa: E402
from onnxslim_kd.pipeline.runner import compress  # noqa: E402


@pytest.fixture(autouse=True)
def _two_threads():
    """The CI box has two shared cores."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def damaged(model: onnx.ModelProto, noise: float = 0.5, seed: int = 0) -> onnx.ModelProto:
    """Every conv/dense weight plus Gaussian noise of `noise` times its std (a lossy compressor)."""
    rng = np.random.default_rng(seed)
    out = clone(model)
    for tensor in out.graph.initializer:
        weight = numpy_helper.to_array(tensor)
        if weight.ndim >= 2:
            weight = weight + noise * weight.std() * rng.standard_normal(weight.shape)
            tensor.CopyFrom(numpy_helper.from_array(weight.astype(np.float32), tensor.name))
    return out


def test_kd_recovers_a_damaged_digits_student(digits):
    teacher = load(digits / "model.onnx")
    student = damaged(teacher)
    test = load_data(digits / "test.npz", teacher)
    train = load_data(digits / "train.npz", teacher, samples=256)

    def accuracy(model: onnx.ModelProto) -> float:
        return float(np.mean(run(model, test)["logits"].argmax(1) == test.labels))

    options = DistillOptions(epochs=2, batch=32, lr=1e-4, augment_shift=0)  # a short, gentle run
    trained, summary = distill(student, [teacher], train, options=options)
    before, after, reference = accuracy(student), accuracy(trained), accuracy(teacher)
    assert before < 0.7 and reference > 0.99
    assert after > before + 0.25, (before, after)
    assert after > reference - 0.05, (after, reference)
    assert summary["writeback_max_rel_diff"] < 1e-4
    assert summary["loss_weights"] == pytest.approx({"kd": 0.9, "ce": 0.1})
    assert summary["val_after"] >= summary["val_before"]


def _tiny_task(samples: int = 96) -> tuple[onnx.ModelProto, onnx.ModelProto, Dataset]:
    teacher = conv_net()
    data = random_data(teacher, batch=samples, seed=1)
    return teacher, damaged(teacher, noise=1.0), data


@pytest.mark.parametrize("loss", ["kd", "ce", "hint", "at", "rkd", "sp", "kd:1,at:500,sp:500"])
def test_each_loss_runs_and_decreases(loss):
    teacher, student, data = _tiny_task()
    labels = run(teacher, data)["logits"].argmax(1)
    data = Dataset(data.inputs, labels, "tiny")
    options = DistillOptions(epochs=6, loss=loss, lr=3e-3, batch=32, val_fraction=0.0)
    _, summary = distill(student, [teacher], data, options=options)
    losses = [epoch["loss"] for epoch in summary["training"]["history"]]
    assert losses[-1] < losses[0], losses
    if loss in ("hint", "at", "sp"):
        assert summary["features"]["maps"] == [["r", "r"]]  # the last 8x8 map
    if loss == "rkd":
        assert summary["features"]["embedding"] == ["f", "f"]


def test_hint_adapter_bridges_channel_counts():
    objective = Objective({"hint": 1.0}, [(4, 8), (6, 6)])
    first, second = objective.terms["hint"].adapters
    assert isinstance(first, torch.nn.Conv2d) and first.weight.shape == (8, 4, 1, 1)
    assert isinstance(second, torch.nn.Identity)


def test_ensemble_averages_softened_probabilities():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 4.0]]])  # two teachers, one sample
    expected = (torch.softmax(logits[0] / 2, 1) + torch.softmax(logits[1] / 2, 1)) / 2
    assert torch.allclose(Ensemble.soft_targets(logits, 2.0), expected)


def test_unlabelled_data_uses_kd_only_and_teacher_agreement():
    teacher, student, data = _tiny_task()
    _, summary = distill(student, [teacher, teacher], data, options=DistillOptions(epochs=1))
    assert summary["loss_weights"] == {"kd": 1.0}
    assert summary["metric"] == "teacher_agreement" and summary["teachers"] == 2


def test_distill_pass_in_a_recipe_uses_the_input_model_as_teacher():
    teacher, _, data = _tiny_task()
    recipe = [{"name": "distill", "epochs": 1, "lr": 1e-3}]
    result = compress(teacher, recipe, data=data, bench_runs=0)
    (record,) = result.passes
    summary = record["summary"]
    assert summary["teachers"] == 1 and summary["writeback_max_rel_diff"] < 1e-4
    # taught by itself, the model can only stay as it is
    assert summary["val_after"] == pytest.approx(1.0)


def _fewer_classes(model: onnx.ModelProto, classes: int) -> onnx.ModelProto:
    """The digits model with its classifier cut to `classes` outputs."""
    out = clone(model)
    for tensor in out.graph.initializer:
        value = numpy_helper.to_array(tensor)
        if value.shape and value.shape[0] == 10 and tensor.name.startswith("fc"):
            tensor.CopyFrom(numpy_helper.from_array(value[:classes].copy(), tensor.name))
    out.graph.output[0].type.tensor_type.shape.dim[1].dim_value = classes
    return out


def test_cli_distills_and_writes_clean_json(cli, tmp_path, digits):
    student = tmp_path / "damaged.onnx"
    save(damaged(load(digits / "model.onnx")), student)
    out = tmp_path / "kd.onnx"
    result = cli("distill", student, "-o", out, "--teacher", digits / "model.onnx",
                 "--data", digits / "train.npz", "--samples", "128", "--epochs", "1",
                 "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["val_after"] >= record["val_before"]
    assert record["training"]["epochs"] == 1
    assert [n.op_type for n in load(out).graph.node] == [
        n.op_type for n in load(student).graph.node
    ]


def test_cli_help_has_examples(cli):
    result = cli("distill", "--help")
    assert result.code == 0 and "examples:" in result.stdout and "--teacher" in result.stdout


def test_missing_torch_exits_2_with_the_pip_command(cli, tmp_path, digits, monkeypatch):
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    out = tmp_path / "out.onnx"
    result = cli("distill", digits / "model.onnx", "-o", out, "--teacher",
                 digits / "model.onnx", "--data", digits / "calib.npz")  # fmt: skip
    assert result.code == 2
    assert "pip install 'onnxslim-kd[distill]'" in result.stderr
    assert result.stderr.count("\n") == 1 and not out.exists()


def test_bad_inputs_exit_2(cli, tmp_path, digits):
    model = digits / "model.onnx"
    five = save(_fewer_classes(load(model), 5), tmp_path / "five.onnx")
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=np.zeros((4, 1, 32, 32), np.float32), other=np.zeros(4))
    out = tmp_path / "out.onnx"
    common = ["-o", out, "--samples", "16", "--epochs", "1"]
    cases = {
        "teacher output is [N,5] per sample but the student's is [N,10]": [
            "distill", model, "--teacher", five, "--data", digits / "calib.npz", *common],
        "no array for model input 'input'": [
            "distill", model, "--teacher", model, "--data", wrong, *common],
        "--alpha: must be a number in [0, 1]": [
            "distill", model, "--teacher", model, "--data", digits / "calib.npz", "--alpha", "2",
            *common],
        "unknown loss 'fitnet'": [
            "distill", model, "--teacher", model, "--data", digits / "calib.npz", "--loss",
            "fitnet", *common],
        "refusing to overwrite": [
            "distill", model, "-o", model, "--teacher", model, "--data", digits / "calib.npz",
            "--samples", "16", "--epochs", "1"],
    }  # fmt: skip
    for message, args in cases.items():
        result = cli(*args)
        assert result.code == 2, (message, result.stderr)
        assert message in result.stderr and result.stderr.count("\n") == 1
        assert not out.exists()


def test_shift_augmentation_moves_images_and_leaves_other_inputs():
    from onnxslim_kd.distill.augment import shifted

    torch.manual_seed(0)
    image = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    ids = torch.arange(4)
    moved = shifted({"image": image, "ids": ids}, 2)
    assert moved["ids"] is ids and moved["image"].shape == image.shape
    padded = torch.nn.functional.pad(image, (2, 2, 2, 2), mode="replicate")
    windows = [padded[:, :, y : y + 6, x : x + 6] for y in range(5) for x in range(5)]
    assert any(torch.equal(moved["image"], w) for w in windows)


def test_flip_and_noise_change_only_images_in_their_layout():
    from onnxslim_kd.distill.augment import augment

    torch.manual_seed(0)
    nhwc = torch.rand(2, 5, 6, 3)  # channels last
    ids = torch.arange(4)
    flips = [augment({"x": nhwc, "ids": ids}, DistillOptions(augment_flip=True, augment_shift=0))
             for _ in range(8)]  # fmt: skip
    assert all(f["ids"] is ids for f in flips)
    kinds = {"flipped" if torch.equal(f["x"], nhwc.flip(2)) else "same" for f in flips}
    assert kinds == {"flipped", "same"}  # about half the batches, mirrored along the width
    assert all(torch.equal(f["x"], nhwc) for f in flips if not torch.equal(f["x"], nhwc.flip(2)))
    noisy = augment({"x": nhwc}, DistillOptions(augment_noise=0.1, augment_shift=0))["x"]
    spread = float((noisy - nhwc).std() / nhwc.std())
    assert noisy.shape == nhwc.shape and 0.08 < spread < 0.12
    with pytest.raises(ValueError, match="augment_noise must be >= 0"):
        DistillOptions(augment_noise=-1)


def test_distill_with_augmentation_queries_the_teacher_per_batch(digits):
    teacher = load(digits / "model.onnx")
    train = load_data(digits / "train.npz", teacher, samples=64)
    options = DistillOptions(epochs=1, batch=32, augment_shift=2, val_fraction=0.0)
    _, summary = distill(damaged(teacher), [teacher], train, options=options)
    assert summary["training"]["steps"] == 2
    assert summary["writeback_max_rel_diff"] < 1e-4


def test_a_student_left_far_below_its_teacher_is_warned_about(cli, tmp_path, digits):
    student = save(damaged(load(digits / "model.onnx"), noise=2.0), tmp_path / "bad.onnx")
    result = cli("distill", student, "-o", tmp_path / "kd.onnx", "--teacher",
                 digits / "model.onnx", "--data", digits / "train.npz", "--samples", "64",
                 "--epochs", "1", "--lr", "1e-5")  # fmt: skip
    assert result.code == 0, result.stderr
    assert "warning: the student ends" in result.stderr and "--epochs 2" in result.stderr
