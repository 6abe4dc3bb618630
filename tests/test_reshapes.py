"""Run-time Reshape targets written as constants: fixed sizes, 0 for a copied symbolic
size, -1 for at most one unknown; the dynamic axes still vary."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.graph.equivalence import mismatch, reference_runs
from onnxslim_kd.graph.reshapes import constant_reshape_targets
from onnxslim_kd.graph.session import make_session
from tests.builders import make_model


def head_split(allowzero: int | None = None, width: str | int = 8) -> onnx.ModelProto:
    """x [b, t, 8] -> Reshape to [b, t, 2, 4] with b, t read at run time, as torch's legacy
    exporter writes `x.view(B, T, heads, D)` after `B, T, _ = x.shape`."""
    node = helper.make_node
    consts = {"zero": np.array(0, np.int64), "one": np.array(1, np.int64),
              "axes": np.array([0], np.int64), "heads": np.array([2, 4], np.int64)}  # fmt: skip
    extra = {} if allowzero is None else {"allowzero": allowzero}
    nodes = [
        node("Shape", ["x"], ["shape"], name="shape"),
        node("Gather", ["shape", "zero"], ["b"], name="gather_b"),
        node("Gather", ["shape", "one"], ["t"], name="gather_t"),
        node("Unsqueeze", ["b", "axes"], ["b1"], name="unsqueeze_b"),
        node("Unsqueeze", ["t", "axes"], ["t1"], name="unsqueeze_t"),
        node("Concat", ["b1", "t1", "heads"], ["target"], name="concat", axis=0),
        node("Reshape", ["x", "target"], ["y"], name="split", **extra),
    ]
    return make_model(
        nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "t", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, None, None])],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )  # fmt: skip


def _target(model: onnx.ModelProto) -> list[int]:
    reshape = next(n for n in model.graph.node if n.op_type == "Reshape")
    init = next(t for t in model.graph.initializer if t.name == reshape.input[1])
    return numpy_helper.to_array(init).tolist()


@pytest.mark.parametrize("allowzero", [None, 0, 1])
def test_a_run_time_head_split_becomes_constant_and_keeps_both_dynamic_axes(allowzero):
    model = head_split(allowzero)
    folded, count = constant_reshape_targets(model)
    assert count == 1 and _target(folded) == [0, 0, 2, 4]
    assert [n.op_type for n in folded.graph.node] == ["Reshape"]  # the shape chain is gone
    onnx.checker.check_model(folded)
    session = make_session(folded)
    for shape in ((1, 3, 8), (5, 7, 8)):
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        (y,) = session.run(None, {"x": x})
        np.testing.assert_array_equal(y, x.reshape(shape[0], shape[1], 2, 4))
    assert mismatch(folded, reference_runs(model, {"x": [1, 3, 8]})) is None


def test_one_size_it_cannot_name_becomes_minus_one_and_two_keep_the_run_time_target():
    # width unknown too: [b, t, 2, 4] still has all sizes named (b, t copied, 2, 4 fixed)
    model = head_split(width="w")
    folded, count = constant_reshape_targets(model)
    assert count == 1 and _target(folded) == [0, 0, 2, 4]
    graph = model.graph
    # read b and t off another tensor: the output's sizes are no longer the input's own
    graph.input.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["m", "n"]))
    next(n for n in graph.node if n.op_type == "Shape").input[0] = "z"
    _, count = constant_reshape_targets(model)
    assert count == 0
    # only t from the other tensor: one unknown size, written as -1
    graph.node.insert(0, helper.make_node("Shape", ["x"], ["own"], name="own"))
    next(n for n in graph.node if n.name == "gather_b").input[0] = "own"
    folded, count = constant_reshape_targets(model)
    assert count == 1 and _target(folded) == [0, -1, 2, 4]


def test_a_constant_target_is_left_as_it_is():
    model = head_split()
    folded, _ = constant_reshape_targets(model)
    again, count = constant_reshape_targets(folded)
    assert count == 0 and again == folded
