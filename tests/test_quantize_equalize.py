"""Cross-layer equalization: Conv pairs rescaled exactly in float, their channel ranges
evened out, the pairs it must not touch left byte-identical, and the per-tensor INT8
weight error it removes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.validate import run
from onnxslim_kd.graph.walk import clone
from onnxslim_kd.quantize.equalize import describe_equalization, equalize
from tests.builders import make_model

IN_CHANNELS = 16


@dataclass
class Net:
    """A small Conv graph on x [n, 16, 8, 8], weights He-scaled so outputs stay near 1;
    each Conv's output channels get ranges spread over 10^-2..10^1 unless told otherwise,
    the unevenness equalization is for."""

    nodes: list[onnx.NodeProto] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=lambda: {"x": IN_CHANNELS})
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))

    def conv(
        self, name: str, x: str, out: int, *, group: int = 1, kernel: int = 3,
        weight: str = "", uneven: bool = True,
    ) -> str:  # fmt: skip
        """Same-size Conv `name` (output `name`) with its own weight and bias, or `weight`'s;
        `uneven=False` keeps every output channel's weights on one scale."""
        if not weight:
            weight = f"{name}.w"
            spread = 10 ** self.rng.uniform(-2, 1, (out, 1, 1, 1)) if uneven else 1.0
            shape = (out, self.channels[x] // group, kernel, kernel)
            fan_in = np.prod(shape[1:])
            self.weights[weight] = self.rng.standard_normal(shape) * spread / np.sqrt(fan_in)
        self.weights[f"{name}.b"] = self.rng.standard_normal(out)
        inputs, pads = [x, weight, f"{name}.b"], [kernel // 2] * 4
        self.nodes.append(
            helper.make_node("Conv", inputs, [name], name=name, group=group, pads=pads)
        )
        self.channels[name] = out
        return name

    def act(self, name: str, x: str, op: str) -> str:
        """Relu, LeakyRelu, Clip (ReLU6) or SiLU (Sigmoid * Mul) of `x`, output `name`."""
        make = helper.make_node
        if op == "LeakyRelu":
            self.nodes.append(make(op, [x], [name], name=name, alpha=0.1))
        elif op == "Clip":
            self.weights |= {"zero": np.zeros(()), "six": np.full((), 6.0)}
            self.nodes.append(make(op, [x, "zero", "six"], [name], name=name))
        elif op == "SiLU":
            self.nodes += [make("Sigmoid", [x], [f"{name}.gate"], name=f"{name}.gate"),
                           make("Mul", [x, f"{name}.gate"], [name], name=name)]  # fmt: skip
        else:
            self.nodes.append(make(op, [x], [name], name=name))
        self.channels[name] = self.channels[x]
        return name

    def model(self, *outputs: str) -> onnx.ModelProto:
        def info(name: str, channels: int) -> onnx.ValueInfoProto:
            return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["n", channels, 8, 8])

        return make_model(
            self.nodes, [info("x", IN_CHANNELS)], [info(o, self.channels[o]) for o in outputs],
            [numpy_helper.from_array(v.astype(np.float32), k) for k, v in self.weights.items()],
        )  # fmt: skip


def pair(
    between: str = "Relu", first_group: int = 1, second_group: int = 1, second_kernel: int = 3
) -> onnx.ModelProto:
    """x -> a -> between -> b, both C -> C channels with the given groups (C: depthwise);
    only `a` has uneven channels, as a trained depthwise conv does."""
    net = Net()
    a = net.act("act", net.conv("a", "x", IN_CHANNELS, group=first_group), between)
    kind = {"group": second_group, "kernel": second_kernel}
    return net.model(net.conv("b", a, IN_CHANNELS, **kind, uneven=False))


def mobilenet() -> onnx.ModelProto:
    """Depthwise 3x3 -> Relu -> pointwise 1x1."""
    return pair(first_group=IN_CHANNELS, second_kernel=1)


def chain() -> onnx.ModelProto:
    """x -> a -> Relu -> b (depthwise) -> LeakyRelu -> c: two pairs sharing b."""
    net = Net()
    b = net.conv("b", net.act("r1", net.conv("a", "x", 8), "Relu"), 8, group=8)
    return net.model(net.conv("c", net.act("r2", b, "LeakyRelu"), 6))


def fan_out() -> onnx.ModelProto:
    """a's output feeds two Convs."""
    net = Net()
    a = net.conv("a", "x", 8)
    return net.model(net.conv("b1", a, 8), net.conv("b2", a, 8))


def shared_weight() -> onnx.ModelProto:
    """x -> a -> Relu -> b -> Relu -> c, b and c reading one weight tensor."""
    net = Net()
    b = net.conv("b", net.act("r1", net.conv("a", "x", 8), "Relu"), 8)
    return net.model(net.conv("c", net.act("r2", b, "Relu"), 8, weight="b.w"))


def exposed() -> onnx.ModelProto:
    """x -> a -> Relu -> b, the Relu's output also a graph output."""
    net = Net()
    relu = net.act("act", net.conv("a", "x", 8), "Relu")
    return net.model(net.conv("b", relu, 8), relu)


def _inputs(seed: int = 1) -> Dataset:
    shape = (4, IN_CHANNELS, 8, 8)
    return Dataset({"x": np.random.default_rng(seed).standard_normal(shape, np.float32)})


def _tensor(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _weight(model: onnx.ModelProto, name: str) -> np.ndarray:
    return numpy_helper.to_array(_tensor(model, name))


def _interface(model: onnx.ModelProto) -> tuple[list[str], list[str]]:
    return [v.name for v in model.graph.input], [v.name for v in model.graph.output]


def _ranges(weight: np.ndarray, axis: int) -> np.ndarray:
    return np.abs(weight).max(axis=tuple(i for i in range(weight.ndim) if i != axis))


EXACT = {
    "conv-relu-conv": (pair(), ["a->b"]),
    "depthwise-relu-pointwise": (mobilenet(), ["a->b"]),
    "pointwise-relu-depthwise": (pair(second_group=IN_CHANNELS), ["a->b"]),
    "conv-leakyrelu-conv": (pair("LeakyRelu"), ["a->b"]),
    "three-conv-chain": (chain(), ["a->b", "b->c"]),
}


@pytest.mark.parametrize("name", EXACT)
def test_equalization_is_exact_in_float_and_evens_the_ranges(name):
    model, pairs = EXACT[name]
    equalized, record = equalize(model)
    onnx.checker.check_model(equalized, full_check=True)
    assert _interface(equalized) == _interface(model)
    data, output = _inputs(), model.graph.output[0].name
    np.testing.assert_allclose(
        run(equalized, data)[output], run(model, data)[output], rtol=1e-4, atol=1e-5
    )
    assert record.pairs == pairs and record.skipped == {} and record.rounds >= 2
    assert record.unevenness_after < record.unevenness_before


@pytest.mark.parametrize("second_group", [1, IN_CHANNELS])
def test_a_single_pair_ends_with_equal_ranges_per_channel(second_group):
    equalized, record = equalize(pair(second_group=second_group))
    first = _ranges(_weight(equalized, "a.w"), 0)
    second = _ranges(_weight(equalized, "b.w"), 1 if second_group == 1 else 0)
    np.testing.assert_allclose(first, second, rtol=1e-4)
    assert record.rounds == 2  # the second finds nothing left to move
    assert describe_equalization(record.as_dict()).startswith("1 Conv pairs in 2 rounds")


def test_a_chain_converges_with_both_pairs_equalized():
    equalized, record = equalize(chain())
    assert record.rounds < 20  # converged, not stopped
    for first, second, axis in (("a.w", "b.w", 0), ("b.w", "c.w", 1)):
        np.testing.assert_allclose(
            _ranges(_weight(equalized, first), 0),
            _ranges(_weight(equalized, second), axis),
            rtol=1e-3,
        )


REFUSED = {
    "relu6": (pair("Clip"), {"a->b": "Clip between: not positively homogeneous"}),
    "silu": (pair("SiLU"), {"a->b": "Mul between: not positively homogeneous"}),
    "fan-out": (fan_out(), {"a->b1": "fans out", "a->b2": "fans out"}),
    "shared-weight": (shared_weight(), {"a->b": "weight shared", "b->c": "weight shared"}),
    "graph-output": (exposed(), {"a->b": "graph output"}),
    "grouped": (pair(second_group=2), {"a->b": "group 2 conv: neither plain nor depthwise"}),
}


@pytest.mark.parametrize("name", REFUSED)
def test_refused_pairs_keep_their_weights_byte_identical(name):
    model, skipped = REFUSED[name]
    equalized, record = equalize(model)
    assert record.pairs == [] and record.rounds == 0
    assert record.skipped == skipped
    assert [t.SerializeToString() for t in equalized.graph.initializer] == [
        t.SerializeToString() for t in model.graph.initializer
    ]
    assert record.as_dict()["range_ratio_after"] is None
    assert describe_equalization(record.as_dict()) == (
        f"no Conv pair to equalize ({len(skipped)} skipped)"
    )


def test_the_input_model_is_not_mutated():
    model = chain()
    before = model.SerializeToString()
    equalized, _ = equalize(model)
    assert model.SerializeToString() == before != equalized.SerializeToString()


def test_dead_channels_stay_finite():
    """A's output channel 2 and B's input channel 5 all zero: both channels keep scale 1."""
    model = pair()
    for name, index in (("a.w", np.s_[2]), ("b.w", np.s_[:, 5])):
        values = _weight(model, name).copy()
        values[index] = 0
        _tensor(model, name).CopyFrom(numpy_helper.from_array(values, name))
    equalized, record = equalize(model)
    assert record.pairs == ["a->b"]
    assert all(np.isfinite(numpy_helper.to_array(t)).all() for t in equalized.graph.initializer)
    for name, index in (("a.w", np.s_[[2, 5]]), ("b.w", np.s_[:, [2, 5]])):
        np.testing.assert_allclose(_weight(equalized, name)[index], _weight(model, name)[index])
    data = _inputs()
    np.testing.assert_allclose(
        run(equalized, data)["b"], run(model, data)["b"], rtol=1e-4, atol=1e-5
    )


def _int8_weights(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    """`model` with weight `name` rounded to per-tensor symmetric INT8 and back:
    round(W / step) * step with step = max|W| / 127."""
    result = clone(model)
    weight = _weight(result, name)
    step = np.abs(weight).max() / 127
    _tensor(result, name).CopyFrom(numpy_helper.from_array(np.round(weight / step) * step, name))
    return result


@pytest.mark.parametrize("build", [pair, mobilenet])
def test_per_tensor_int8_first_weights_lose_less_after_equalization(build):
    """Float activations, A's weights INT8: the pair's relative output error drops."""
    model = build()
    equalized, _ = equalize(model)
    data = _inputs()
    reference = run(model, data)["b"]
    errors = [
        np.linalg.norm(run(_int8_weights(m, "a.w"), data)["b"] - reference)
        / np.linalg.norm(reference)
        for m in (model, equalized)
    ]
    assert errors[1] < errors[0] / 1.4


@pytest.mark.parametrize("asked", [True, False])
def test_quantize_equalizes_only_when_asked_and_reports_it(cli, tmp_path, asked):
    """`quantize --equalize` rescales the pair before calibration and says so in the JSON
    and the table; without it the record is null and the weights are the original's."""
    import json

    path = tmp_path / "m.onnx"
    onnx.save(mobilenet(), path)
    np.savez(tmp_path / "d.npz", x=_inputs(2).inputs["x"].repeat(10, 0))
    out = tmp_path / "q.onnx"
    flags = ["--equalize"] if asked else []
    result = cli("quantize", path, "-o", out, "--data", tmp_path / "d.npz", "--bench-runs", "0",
                 "--force-int8", "--max-drop", "1", "--min-sqnr", "-100", "--json", "-",
                 *flags)  # fmt: skip
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)["equalization"]
    if not asked:
        assert record is None
        return
    assert record["pairs"] == ["a->b"]
    assert record["range_ratio_after"] < record["range_ratio_before"]
    table = cli("quantize", path, "-o", tmp_path / "t.onnx", "--data", tmp_path / "d.npz",
                "--bench-runs", "0", "--force-int8", "--equalize")  # fmt: skip
    (row,) = [line for line in table.stdout.splitlines() if line.startswith("| equalization")]
    assert [cell.strip() for cell in row.split("|")[1:3]] == [
        "equalization",
        describe_equalization(record),
    ]
