"""A tiny graph-building vocabulary for the per-rule pruning tests, and the parity check."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.graph.io import resolve_shapes
from onnxslim_kd.graph.validate import check, compare_models
from onnxslim_kd.prune.analysis import analyze
from onnxslim_kd.prune.budget import keep_lookup
from onnxslim_kd.prune.layout import kept_positions
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.prune.unfuse import standard_attention


class Graph:
    """Append nodes with random weights; `model()` closes the graph on one output."""

    def __init__(self, shape=(2, 4, 8, 8), opset: int = 17) -> None:
        self.rng = np.random.default_rng(0)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.shape = list(shape)
        self.opset = opset
        self.counts: dict[str, int] = {}

    def _name(self, prefix: str) -> str:
        """conv1, conv2, ... numbered per op type, so tests can name nodes."""
        self.counts[prefix] = self.counts.get(prefix, 0) + 1
        return f"{prefix}{self.counts[prefix]}"

    def const(self, array) -> str:
        name = self._name("w")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape) -> str:
        return self.const(self.rng.standard_normal(shape).astype(np.float32))

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs) -> str | list[str]:
        name = self._name(op_type.lower())
        outs = [f"{name}_out{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if outputs == 1 else outs

    def conv(self, x: str, c_in: int, c_out: int, k: int = 3, group: int = 1, **attrs) -> str:
        w = self.weight(c_out, c_in // group, k, k)
        b = self.weight(c_out)
        return self.op("Conv", [x, w, b], group=group, pads=[k // 2] * 4, **attrs)

    def bn(self, x: str, c: int) -> str:
        params = [
            self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32)),
            self.weight(c),
            self.weight(c),
            self.const(self.rng.uniform(0.5, 1.5, c).astype(np.float32)),
        ]
        return self.op("BatchNormalization", [x, *params])

    def model(self, output: str) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "g",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, self.shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            initializer=self.inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])
        model = onnx.shape_inference.infer_shapes(model)  # fills in the output's shape
        del model.graph.value_info[:]
        onnx.checker.check_model(model)
        return model


def zero_removed(model: onnx.ModelProto, plan: dict, shapes: dict | None = None) -> onnx.ModelProto:
    """The unpruned model with every weight, bias and per-channel parameter of the removed
    channels set to zero (divisors excepted): pruning it must change nothing."""
    canonical, _ = canonicalize(model)
    concrete = resolve_shapes(canonical, shapes or {})
    canonical, _ = standard_attention(canonical, concrete)  # as prune does
    an = analyze(canonical, resolve_shapes(canonical, shapes or {}))
    by_origin = {an.spaces[r].origin: r for r in an.spaces.roots()}
    kept = {by_origin[gid]: np.array(entry["keep"]) for gid, entry in plan["groups"].items()}
    lookup = keep_lookup(an, kept)
    tensors = {t.name: t for t in canonical.graph.initializer}
    for item in an.slices:
        node = canonical.graph.node[item.node]
        if node.op_type == "Div" and item.input_index == 1:
            continue
        tensor = tensors[node.input[item.input_index]]
        value = numpy_helper.to_array(tensor).copy()
        removed = np.setdiff1d(np.arange(item.layout.size), kept_positions(item.layout, lookup))
        index = [slice(None)] * value.ndim
        index[item.axis] = removed
        value[tuple(index)] = 0
        tensor.CopyFrom(numpy_helper.from_array(value, tensor.name))
    return canonical


def prune_lossless(
    model: onnx.ModelProto, ratio: float = 0.5, shapes: dict | None = None, **options
):
    """Prune with exact counts (no rounding, stem included) and check parity against the
    zeroed original within 1e-5 relative; return the pruned model and summary. `shapes`
    fixes dynamic inputs for the analysis; parity is checked at those shapes."""
    settings = {"round_to": 1, "keep_stem": False, **options}
    pruned, summary = prune(model, PruneOptions(ratio=ratio, **settings), shapes=shapes)
    check(pruned)
    zeroed = zero_removed(model, summary.plan, shapes)
    fidelity = compare_models(zeroed, pruned, random_data(model, shapes, batch=2))
    for result in fidelity.values():
        assert result.max_rel_diff <= 1e-5, fidelity
    return pruned, summary


def weights(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Shapes of every initializer fed to a node, keyed by 'node name:input index'."""
    shapes = {t.name: tuple(t.dims) for t in model.graph.initializer}
    return {
        f"{node.name}:{i}": shapes[name]
        for node in model.graph.node
        for i, name in enumerate(node.input)
        if name in shapes
    }
