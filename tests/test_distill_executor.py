"""The torch student: parity with onnxruntime, trainable weights, exact write-back."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from onnx import helper, numpy_helper  # noqa: E402

from onnxslim_kd.data import random_data  # noqa: E402
from onnxslim_kd.distill.executor import GraphModule, to_torch  # noqa: E402
from onnxslim_kd.distill.writeback import write_back  # noqa: E402
from onnxslim_kd.errors import InputError  # noqa: E402
from onnxslim_kd.graph.canonicalize import canonicalize  # noqa: E402
from onnxslim_kd.graph.load import load  # noqa: E402
from onnxslim_kd.graph.session import make_session  # noqa: E402
from tests.builders import conv_net, make_model  # noqa: E402

RTOL = 1e-5


def _relative_diff(model: onnx.ModelProto, module: GraphModule, feeds: dict) -> float:
    """max |ORT - torch| / max |ORT| over all outputs."""
    reference = make_session(model).run(None, feeds)
    with torch.no_grad():
        ours = module(*to_torch(feeds).values())
    return max(
        float(np.abs(r - o.numpy()).max() / np.abs(r).max())
        for r, o in zip(reference, ours, strict=True)
    )


def _digits_feeds(digits, count: int = 16) -> dict[str, np.ndarray]:
    return {"input": np.load(digits / "test.npz")["input"][:count]}


def test_digits_parity_and_every_float_weight_trains(digits):
    model = load(digits / "model.onnx")
    module = GraphModule(model)
    assert _relative_diff(model, module, _digits_feeds(digits)) < RTOL
    assert set(module.weight_names) == {t.name for t in model.graph.initializer}
    assert sum(w.numel() for w in module.weights) == 694_922
    module(*to_torch(_digits_feeds(digits, 4)).values())[0].square().sum().backward()
    assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in module.weights)


ZOO_CASES = [
    ("resnet18", "legacy"),
    ("mobilenet_v3_small", "dynamo"),
    ("efficientnet_b0", "legacy"),
    ("convnext_tiny", "legacy"),
    ("convnext_tiny", "dynamo"),
    ("shufflenet_v2_x1_0", "legacy"),
    ("shufflenet_v2_x1_0", "dynamo"),
]


@pytest.mark.zoo
@pytest.mark.parametrize(("name", "exporter"), ZOO_CASES)
def test_zoo_parity(zoo, name, exporter):
    """Residuals, depthwise/grouped convs, SE blocks, LayerNorm+GELU, channel shuffle."""
    model = load(zoo(name, exporter))
    module = GraphModule(model)
    assert _relative_diff(model, module, random_data(model, batch=2).inputs) < RTOL
    # per-channel constants (ConvNeXt's layer scale, LayerNorm affine) are trainable too
    assert len(module.weight_names) > 0.5 * len(model.graph.initializer)


@pytest.mark.parametrize("canonical", [False, True])
def test_weights_in_constant_nodes_and_identity_aliases(canonical):
    model = conv_net(weights_as_constants=True, alias_with_identity=True)
    if canonical:
        model, _ = canonicalize(model)
    module = GraphModule(model)
    assert {"conv.w", "fc.w", "bn.scale", "bn.bias"} <= set(module.weight_names)
    assert not {"bn.mean", "bn.var"} & set(module.weight_names)  # statistics stay fixed
    feeds = random_data(model, batch=3).inputs
    assert _relative_diff(model, module, feeds) < RTOL
    _train_one_step(module, feeds)
    trained = write_back(model, module)
    assert _relative_diff(trained, module, feeds) < RTOL
    assert _skeleton(trained) == _skeleton(model)


def _train_one_step(module: GraphModule, feeds: dict) -> None:
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    module(*to_torch(feeds).values())[0].square().mean().backward()
    optimizer.step()


def _skeleton(model: onnx.ModelProto) -> bytes:
    """The model with every stored tensor's values removed: structure, names, dtypes, dims."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    tensors = list(copy.graph.initializer)
    tensors += [n.attribute[0].t for n in copy.graph.node if n.op_type == "Constant"]
    for tensor in tensors:
        tensor.ClearField("raw_data")
        tensor.ClearField("float_data")
    return copy.SerializeToString()


def test_write_back_is_exact_and_changes_only_values(digits):
    model = load(digits / "model.onnx")
    module = GraphModule(model)
    feeds = _digits_feeds(digits, 8)
    _train_one_step(module, feeds)
    trained = write_back(model, module)
    assert _skeleton(trained) == _skeleton(model)
    assert trained.metadata_props == model.metadata_props
    assert trained.opset_import == model.opset_import
    assert trained.graph.input == model.graph.input and trained.graph.output == model.graph.output
    changed = [
        a.name
        for a, b in zip(trained.graph.initializer, model.graph.initializer, strict=True)
        if not np.array_equal(numpy_helper.to_array(a), numpy_helper.to_array(b))
    ]
    assert len(changed) == len(model.graph.initializer)
    assert _relative_diff(trained, module, feeds) < RTOL
    for name, weight in module.named_weights().items():  # bit-exact values
        stored = next(t for t in trained.graph.initializer if t.name == name)
        assert np.array_equal(numpy_helper.to_array(stored), weight.detach().numpy())


def test_unsupported_op_is_named():
    model = make_model(
        [helper.make_node("Det", ["x"], ["y"], name="determinant")],
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [3, 3])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [])],
    )
    with pytest.raises(InputError, match="op 'Det' \\(node 'determinant'"):
        GraphModule(model)


def test_if_runs_the_branch_its_condition_selects_on_every_call():
    """A data-dependent If (sum of the input > 0) reading an outer initializer and a
    Constant of its own, against onnxruntime for inputs that take each branch."""
    scale = numpy_helper.from_array(np.array([2.0, 3.0], np.float32), "scale")
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["then_out"])], "then", [],
        [helper.make_tensor_value_info("then_out", onnx.TensorProto.FLOAT, [None, 2])],
    )  # fmt: skip
    else_graph = helper.make_graph(
        [helper.make_node("Constant", [], ["bias"], value_floats=[10.0, 20.0]),
         helper.make_node("Sub", ["x", "bias"], ["else_out"])], "else", [],
        [helper.make_tensor_value_info("else_out", onnx.TensorProto.FLOAT, [None, 2])],
    )  # fmt: skip
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["positive"]),
        helper.make_node("If", ["positive"], ["y"], then_branch=then_graph, else_branch=else_graph),
    ]
    model = make_model(
        nodes, [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["n", 2])],
        [scale, numpy_helper.from_array(np.array(0.0, np.float32), "zero")], opset=17,
    )  # fmt: skip
    module = GraphModule(model)
    for sign in (1.0, -1.0):
        feeds = {"x": sign * np.abs(np.random.default_rng(0).standard_normal((3, 2), np.float32))}
        (reference,) = make_session(model).run(None, feeds)
        with torch.no_grad():
            (ours,) = module(*to_torch(feeds).values())
        np.testing.assert_allclose(ours.numpy(), reference, rtol=1e-6)


class _Encoder(torch.nn.Module):
    """A transformer encoder layer (GELU MLP, LayerNorm) then multi-head attention."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.TransformerEncoderLayer(
            32, 4, 64, dropout=0.0, batch_first=True, activation="gelu"
        )
        self.attention = torch.nn.MultiheadAttention(32, 4, batch_first=True)

    def forward(self, x):
        y = self.layer(x)
        return self.attention(y, y, y)[0]


@pytest.mark.parametrize("dynamo", [False, True], ids=["legacy", "dynamo"])
def test_attention_blocks_as_exported(tmp_path, dynamo):
    """MatMul + Softmax + Transpose/Reshape head splitting, LayerNorm, Gelu, as both
    exporters write them; the dynamo export keeps the sequence length dynamic."""
    torch.manual_seed(0)
    path = tmp_path / "encoder.onnx"
    sequence = torch.export.Dim("sequence") if dynamo else None
    torch.onnx.export(
        _Encoder().eval(), (torch.randn(2, 10, 32),), str(path), dynamo=dynamo,
        input_names=["x"], output_names=["y"],
        dynamic_axes=None if dynamo else {"x": {0: "batch"}},
        dynamic_shapes=({1: sequence},) if dynamo else None,
    )  # fmt: skip
    model = load(path)
    assert {"Softmax", "LayerNormalization", "MatMul"} <= {n.op_type for n in model.graph.node}
    module = GraphModule(model)
    for length in (10, 7) if dynamo else (10,):
        feeds = {"x": np.random.default_rng(length).standard_normal((2, length, 32), np.float32)}
        assert _relative_diff(model, module, feeds) < RTOL
