"""Every output counts: labels belong to one output, each output is judged by a metric
that fits it, and a destroyed regression output fails the budget."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from onnxslim_kd.graph.walk import clone
from onnxslim_kd.report.comparison import compare_before_after
from onnxslim_kd.report.fidelity import top1_agreement
from onnxslim_kd.report.gate import accuracy_drop, weak_outputs, within_budget
from onnxslim_kd.report.outputs import output_roles
from tests.builders import conv_net
from tests.real_exports import face_like


@pytest.fixture(scope="module")
def face():
    return face_like(conv_net())


@pytest.fixture(scope="module")
def faces() -> Dataset:
    rng = np.random.default_rng(0)
    images = rng.standard_normal((32, 3, 8, 8)).astype(np.float32)
    return Dataset({"input": images}, rng.integers(0, 2, 32), "faces")


def test_labels_belong_to_the_output_with_their_class_count(face, faces):
    roles = output_roles(face, run(face, faces), faces.labels)
    assert roles.label_output == "face" and roles.class_like == ["face"]
    assert roles.regression == ["box", "landmarks"] and not roles.warnings


def test_ambiguous_labels_are_ignored_with_a_warning_naming_the_outputs(face, faces):
    ten_classes = np.arange(32) % 10  # only landmarks is [N, 10]: unambiguous
    assert output_roles(face, run(face, faces), ten_classes).label_output == "landmarks"
    three = np.arange(32) % 3  # box [N,4] and landmarks [N,10] fit, neither has 3 classes
    roles = output_roles(face, run(face, faces), three)
    assert roles.label_output is None
    assert "labels (3 classes) ignored: they could describe 'box', 'landmarks'" in roles.warnings[0]
    assert (
        output_roles(face, run(face, faces), np.arange(32) % 12)
        .warnings[0]
        .startswith("labels (12 classes) ignored: they could describe no output")
    )
    assert output_roles(face, run(face, faces), faces.labels, "box").label_output == "box"
    with pytest.raises(InputError, match="--label-output 'boxes' is not an output"):
        output_roles(face, run(face, faces), faces.labels, "boxes")


def test_a_destroyed_box_output_fails_the_budget_while_the_classes_hold(face, faces):
    broken = clone(face)
    weight = next(t for t in broken.graph.initializer if t.name == "box.w")
    weight.raw_data = (-np.frombuffer(weight.raw_data, np.float32) + 0.5).tobytes()
    comparison = compare_before_after(face, broken, faces, runs=0)
    assert comparison.accuracy_before == comparison.accuracy_after
    assert accuracy_drop(comparison) == (0.0, "accuracy drop")
    assert [name for name, _ in weak_outputs(comparison, 20.0)] == ["box"]
    assert not within_budget(comparison, 0.01, 20.0)
    assert within_budget(compare_before_after(face, face, faces, runs=0), 0.0, 20.0)


def test_agreement_of_sequence_and_dense_outputs_is_per_position_and_a_fraction():
    rng = np.random.default_rng(0)
    sequence = rng.standard_normal((4, 7, 5))  # [N, T, C]
    moved = sequence.copy()
    moved[0, :3] = moved[0, :3][:, ::-1]  # change the arg-max of at most 3 of 28 positions
    expected = np.mean(sequence.argmax(2) == moved.argmax(2))
    assert top1_agreement(sequence, moved) == pytest.approx(expected) and expected >= 25 / 28
    dense = rng.standard_normal((2, 3, 4, 4))  # [N, C, H, W]
    assert top1_agreement(dense, dense) == 1.0
    assert 0.0 <= top1_agreement(dense, -dense) <= 1.0


def test_compare_reports_accuracy_only_on_the_labelled_output(cli, tmp_path, face, faces):
    model = save(face, tmp_path / "face.onnx")
    data = tmp_path / "faces.npz"
    np.savez(data, input=faces.inputs["input"], labels=faces.labels)
    result = cli("compare", model, model, "--data", data, "--json")
    assert result.code == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["face"]["accuracy_reference"] is not None
    assert "accuracy_reference" not in outputs["box"] and outputs["box"]["top1_agreement"] is None


def test_distill_teaches_every_output_with_a_loss_that_fits_it(face):
    """A student with scaled-down heads: after distillation every output follows the
    teacher, the box and landmark regressions included (not only the class output)."""
    pytest.importorskip("torch")
    from onnxslim_kd.distill.api import distill
    from onnxslim_kd.distill.options import DistillOptions
    from onnxslim_kd.graph.validate import compare_models

    student = clone(face)
    for tensor in student.graph.initializer:
        if tensor.name in ("box.w", "landmarks.w", "face_logits.w", "conv.w"):
            tensor.raw_data = (np.frombuffer(tensor.raw_data, np.float32) * 0.3).tobytes()
    rng = np.random.default_rng(0)
    data = Dataset({"input": rng.standard_normal((256, 3, 8, 8)).astype(np.float32)})
    before = compare_models(face, student, data)
    options = DistillOptions(epochs=15, lr=1e-2, batch=32)
    trained, summary = distill(student, [face], data, options=options)
    after = compare_models(face, trained, data)
    assert summary["loss_weights"] == {"kd": 1.0, "outputs": 1.0}
    assert summary["outputs"]["trained_first"] == 2  # 'face', the class output, for kd
    for name in ("box", "landmarks", "face"):
        assert after[name].sqnr_db > before[name].sqnr_db + 10, (name, before, after)
    assert [o.name for o in trained.graph.output] == ["box", "landmarks", "face"]
