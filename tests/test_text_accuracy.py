"""Label sequences (a text recogniser's): greedy CTC reading, character accuracy, and the
output the labels belong to."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.data.validate import validate_dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import model_inputs
from onnxslim_kd.report.fidelity import accuracy, ctc_decode, edit_distance, text_accuracy
from onnxslim_kd.report.outputs import output_roles


def one_hot_steps(paths: list[list[int]], classes: int = 5) -> np.ndarray:
    """[N, T, C] scores whose arg-max at each step is the given class."""
    return np.eye(classes, dtype=np.float32)[np.array(paths)]


def test_decoding_merges_repeats_and_drops_blanks():
    scores = one_hot_steps([[1, 1, 0, 1, 2, 2], [0, 0, 3, 0, 0, 0]])
    assert ctc_decode(scores, samples=2) == [[1, 1, 2], [3]]


def test_time_major_scores_read_like_batch_major():
    scores = one_hot_steps([[1, 1, 0, 1, 2, 2], [0, 0, 3, 0, 0, 4]])
    time_major = scores.transpose(1, 0, 2)  # [T, N, C], as torch's CTC layout
    assert ctc_decode(time_major, samples=2) == ctc_decode(scores, samples=2) == [[1, 1, 2], [3, 4]]


def test_class_axis_other_than_last():
    scores = one_hot_steps([[2, 0, 3]]).transpose(0, 2, 1)  # [N, C, T]
    assert ctc_decode(scores, samples=1, axis=1) == [[2, 3]]


def test_edit_distance():
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [1, 3]) == 1
    assert edit_distance([], [4, 4]) == 2
    assert edit_distance([1, 2, 3, 4], [2, 1, 3, 5]) == 3


def test_character_accuracy_is_one_minus_normalized_edit_distance():
    scores = one_hot_steps([[1, 0, 2, 0, 3], [1, 0, 2, 0, 0], [0, 0, 0, 0, 0]])
    labels = np.array([[1, 2, 3, -1], [1, 2, 4, 4], [3, -1, -1, -1]])
    # exact; 2 edits over 4 characters; nothing read of 1 character
    assert text_accuracy(scores, labels) == pytest.approx((1.0 + 0.5 + 0.0) / 3)
    assert accuracy(scores, labels) == text_accuracy(scores, labels)


def test_scores_that_do_not_fit_sequence_labels_give_none():
    labels = np.array([[1, 2], [3, -1]])
    assert accuracy(np.zeros((2, 5), np.float32), labels) is None
    assert accuracy(np.zeros((3, 4, 5), np.float32), labels) is None  # no axis holds 2 samples


def recogniser_with_a_second_output() -> onnx.ModelProto:
    """image [N, 8] -> per-step log-probabilities [N, 4, 6] and a [N, 2] side output."""
    nodes = [
        helper.make_node("Reshape", ["image", "steps_shape"], ["steps"]),
        helper.make_node("MatMul", ["steps", "w"], ["logits"]),
        helper.make_node("LogSoftmax", ["logits"], ["logprobs"], axis=-1),
        helper.make_node("MatMul", ["image", "side_w"], ["side"]),
    ]
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        nodes, "recogniser",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["N", 4, 6]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, ["N", 2])],
        [onnx.numpy_helper.from_array(np.array([-1, 4, 2], np.int64), "steps_shape"),
         onnx.numpy_helper.from_array(rng.standard_normal((2, 6)).astype(np.float32), "w"),
         onnx.numpy_helper.from_array(rng.standard_normal((8, 2)).astype(np.float32), "side_w")],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_sequence_labels_belong_to_the_per_step_output():
    model = recogniser_with_a_second_output()
    outputs = {"logprobs": np.zeros((3, 4, 6), np.float32), "side": np.zeros((3, 2), np.float32)}
    roles = output_roles(model, outputs, np.array([[1, 5, -1], [2, -1, -1], [3, 3, 4]]))
    assert roles.label_output == "logprobs"
    assert roles.class_axes["logprobs"] == 2
    assert roles.warnings == []


def test_sequence_labels_with_ids_past_every_output_are_ignored_with_a_warning():
    model = recogniser_with_a_second_output()
    outputs = {"logprobs": np.zeros((3, 4, 6), np.float32), "side": np.zeros((3, 2), np.float32)}
    roles = output_roles(model, outputs, np.array([[1, 9, -1], [2, -1, -1], [3, 3, 4]]))
    assert roles.label_output is None
    assert roles.warnings == [
        "labels (10 classes) ignored: they could describe no output; name one with --label-output"
    ]


def test_validation_takes_sequence_labels_and_refuses_other_shapes():
    model = recogniser_with_a_second_output()
    inputs = {"image": np.zeros((3, 8), np.float32)}
    validate_dataset(Dataset(inputs, np.array([[1, -1], [2, 3], [4, -1]])), model_inputs(model))
    refused = r"label sequences \[N, L\] padded with -1, found int64 \[3, 2, 1\]"
    with pytest.raises(InputError, match=refused):
        validate_dataset(Dataset(inputs, np.zeros((3, 2, 1), np.int64)), model_inputs(model))
    with pytest.raises(InputError, match="2 labels for 3 samples"):
        validate_dataset(Dataset(inputs, np.array([[1], [2]])), model_inputs(model))
