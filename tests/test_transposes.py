"""dynamo's K^T through a merged batch axis (Reshape -> Transpose -> Reshape) as one
Transpose, only where the inferred shapes prove it."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.transposes import direct_transposes
from tests.builders import make_model


def merged_transpose(split_back: list[int] | None = None) -> onnx.ModelProto:
    """k [b, 4, t, 8] -> [-1, t, 8] -> Transpose [0, 2, 1] -> back to [b, 4, 8, t] (sizes read
    at run time as dynamo writes them), or to the constant `split_back`."""
    node = helper.make_node
    consts = {"merged": np.array([-1], np.int64), "last": np.array([-1], np.int64),
              "end": np.array([np.iinfo(np.int64).max], np.int64),
              "before_last": np.array([-2], np.int64),
              "start": np.array([np.iinfo(np.int64).min], np.int64)}  # fmt: skip
    nodes = [
        node("Shape", ["k"], ["shape"], name="shape"),
        node("Slice", ["shape", "last", "end"], ["d"], name="d"),
        node("Slice", ["shape", "before_last", "last"], ["t"], name="t"),
        node("Slice", ["shape", "start", "before_last"], ["lead"], name="lead"),
        node("Concat", ["merged", "t", "d"], ["merge_to"], name="merge_to", axis=0),
        node("Reshape", ["k", "merge_to"], ["k3"], name="merge"),
        node("Transpose", ["k3"], ["k3t"], name="swap", perm=[0, 2, 1]),
        node("Concat", ["lead", "d", "t"], ["split_to"], name="split_to", axis=0),
        node("Reshape", ["k3t", "split_to"], ["kt"], name="split"),
    ]
    if split_back is not None:
        consts["fixed"] = np.array(split_back, np.int64)
        nodes[-1].input[1] = "fixed"
    return make_model(
        nodes, [helper.make_tensor_value_info("k", TensorProto.FLOAT, ["b", 4, "t", 8])],
        [helper.make_tensor_value_info("kt", TensorProto.FLOAT, [None] * 4)],
        [numpy_helper.from_array(v, k) for k, v in consts.items()],
    )  # fmt: skip


def test_the_merged_batch_transpose_is_one_transpose_at_any_batch_and_length():
    model = merged_transpose()
    direct, count = direct_transposes(model)
    assert count == 1
    assert [(n.op_type, list(n.attribute[0].ints)) for n in direct.graph.node] == [
        ("Transpose", [0, 1, 3, 2])
    ]
    assert direct.graph.node[0].output[0] == "kt"
    for shape in ((1, 4, 3, 8), (5, 4, 7, 8)):
        k = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        (got,) = make_session(direct).run(None, {"k": k})
        (want,) = make_session(model).run(None, {"k": k})
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(got, k.transpose(0, 1, 3, 2))


def test_a_chain_that_does_not_restore_the_leading_axes_is_left():
    # [b * 4, 8, t] split as [b * 2, 2, 8, t]: not a transpose of k's last two axes
    model = merged_transpose(split_back=[-1, 2, 8, 3])
    _, count = direct_transposes(model)
    assert count == 0
