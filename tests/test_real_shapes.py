"""Dynamic H/W and a static batch of 1, as real exports come: every command runs on them,
takes concrete sizes from the data, and keeps the interface (and other sizes) working."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.graph.batch import free_batch
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.stats import model_stats
from tests.builders import conv_net, make_model
from tests.real_exports import dynamic_spatial, static_batch


@pytest.fixture(scope="module")
def dynamic_digits(digits, tmp_path_factory):
    """The digits model with dynamic H and W, like a detector export."""
    path = tmp_path_factory.mktemp("dyn") / "dyn.onnx"
    return save(dynamic_spatial(load(digits / "model.onnx")), path)


def _dims(path) -> list:
    model = onnx.load(str(path))
    return [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]


def _runs_at(path, *sizes) -> None:
    session = ort.InferenceSession(str(path))
    for h, w in sizes:
        (logits,) = session.run(None, {"input": np.zeros((2, 1, h, w), np.float32)})
        assert logits.shape == (2, 10)


def test_inspect_never_refuses_a_dynamic_model(cli, dynamic_digits, digits):
    result = cli("inspect", dynamic_digits, "--json")
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["macs"] is None and "--data" in record["macs_unknown"]
    assert record["params"] == model_stats(load(digits / "model.onnx")).params
    assert "MACs   | unknown" in cli("inspect", dynamic_digits).stdout
    with_data = json.loads(cli("inspect", dynamic_digits, "--data", digits / "calib.npz",
                               "--json").stdout)  # fmt: skip
    assert with_data["macs"] == model_stats(load(digits / "model.onnx")).macs
    assert with_data["shapes_used"] == {"input": [1, 1, 32, 32]}


@pytest.mark.parametrize("command", [
    ["prune", "--ratio", "0.3"],
    ["decompose", "--rank-ratio", "0.5"],
])  # fmt: skip
def test_passes_take_sizes_from_the_data_and_keep_the_axes_dynamic(
    cli, tmp_path, dynamic_digits, digits, command
):
    out = tmp_path / "out.onnx"
    result = cli(command[0], dynamic_digits, "-o", out, "--data", digits / "calib.npz",
                 *command[1:], "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["macs_after"] < record["macs_before"]
    assert _dims(out) == ["batch", 1, "h", "w"]
    _runs_at(out, (32, 32), (40, 48))


def test_params_count_constant_node_weights_like_initializers():
    assert model_stats(conv_net(weights_as_constants=True)).params == model_stats(conv_net()).params


def test_a_fixed_batch_is_freed_exactly():
    model = static_batch(conv_net())
    freed = free_batch(model)
    assert freed is not None
    shape = next(t for t in freed.graph.initializer if t.name == "view_shape")
    assert numpy_helper.to_array(shape).tolist() == [0, -1]
    x = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    one = ort.InferenceSession(model.SerializeToString())
    many = ort.InferenceSession(freed.SerializeToString())
    expected = np.concatenate([one.run(None, {"input": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_allclose(many.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-6)
    assert free_batch(conv_net()) is not None  # a dynamic batch comes back as it is


def test_a_batch_computed_at_run_time_is_not_freed():
    """Reshape to Concat([1], [-1]): not a constant, so the copy fails at 2x and is refused."""
    one, rest = (numpy_helper.from_array(np.array([v], np.int64), n) for v, n in ((1, "one"),
                 (-1, "rest")))  # fmt: skip
    model = make_model(
        [helper.make_node("Concat", ["one", "rest"], ["target"], axis=0),
         helper.make_node("Reshape", ["x", "target"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [one, rest],
    )  # fmt: skip
    assert free_batch(model) is None


def test_distill_trains_a_static_batch_student_on_mini_batches(cli, tmp_path):
    student = save(static_batch(conv_net()), tmp_path / "s.onnx")
    data = tmp_path / "d.npz"
    np.savez(data, input=np.random.default_rng(0).standard_normal((40, 3, 8, 8), np.float32))
    out = tmp_path / "k.onnx"
    result = cli("distill", student, "-o", out, "--teacher", student, "--data", data,
                 "--epochs", "1", "--batch", "16", "--json")  # fmt: skip
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["batching"] == {"fixed_batch": 1, "freed": True,
                                                     "trained_at": None}  # fmt: skip
    written = onnx.load(str(out))
    assert (
        _dims(out)[0] == 1 and written.graph.output[0].type.tensor_type.shape.dim[0].dim_value == 1
    )
    view = next(t for t in written.graph.initializer if t.name == "view_shape")
    assert numpy_helper.to_array(view).tolist() == [1, -1]  # the interface is the original's


def test_compress_runs_end_to_end_on_a_static_batch_of_1(cli, tmp_path, digits):
    model = save(static_batch(load(digits / "model.onnx")), tmp_path / "b1.onnx")
    out = tmp_path / "c.onnx"
    result = cli("compress", model, "-o", out, "--data", digits / "calib.npz",
                 "--samples", "96", "--distill-epochs", "1", "--bench-runs", "0")  # fmt: skip
    assert result.code in (0, 3), result.stderr
    assert _dims(out) == [1, 1, 32, 32]
    session = ort.InferenceSession(str(out))
    assert session.run(None, {"input": np.zeros((1, 1, 32, 32), np.float32)})[0].shape == (1, 10)
