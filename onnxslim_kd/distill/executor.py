"""Run an ONNX graph as a torch module whose float weights are trainable parameters.

The module keeps the graph as it is (no re-export, no renaming): parameters are keyed by
the ONNX tensor they came from, so writing them back is exact by construction. Weights held
in Constant nodes or aliased through Identity are found too, and train like initializers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

import numpy as np
import onnx
from onnx import numpy_helper
from torch import Tensor, nn

from onnxslim_kd.distill.ops import RULES, OpContext
from onnxslim_kd.distill.ops.dtypes import to_tensor
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.canonicalize import _constant_value
from onnxslim_kd.graph.io import model_inputs
from onnxslim_kd.graph.load import opset_of
from onnxslim_kd.graph.walk import subgraphs


class GraphModule(nn.Module):
    """The top-level graph of `model` as a torch module; `forward` returns its outputs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        super().__init__()
        graph = model.graph
        opset = opset_of(model)
        check_supported(model)
        check_tensor_interface(graph)
        self.input_names = [spec.name for spec in model_inputs(model)]
        self.output_names = [o.name for o in graph.output]
        self.steps = compile_steps(graph, opset)
        stored = stored_tensors(graph)
        trainable = trainable_names(graph, stored, opset)
        self.weights = nn.ParameterList()
        self.weight_names: list[str] = []
        self._constants: dict[str, str] = {}
        for name, array in stored.items():
            tensor = to_tensor(np.array(array))
            if name in trainable:
                self.weights.append(nn.Parameter(tensor))
                self.weight_names.append(name)
            else:
                key = f"constant{len(self._constants)}"
                self.register_buffer(key, tensor, persistent=False)
                self._constants[name] = key

    def named_weights(self) -> dict[str, Tensor]:
        """Trainable tensors by their ONNX name."""
        return dict(zip(self.weight_names, self.weights, strict=True))

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        values = self.run(dict(zip(self.input_names, inputs, strict=True)))
        return tuple(values[name] for name in self.output_names)

    def run(self, feeds: dict[str, Tensor], keep: Collection[str] = ()) -> dict[str, Tensor]:
        """Graph outputs plus the intermediate tensors named in `keep`, by name."""
        values = self.trace(feeds)
        missing = [name for name in keep if name not in values]
        if missing:
            raise InputError(f"distill: the model has no tensor named '{missing[0]}'")
        return {name: values[name] for name in (*self.output_names, *keep)}

    def trace(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every tensor the graph computes, by name (inputs and weights included)."""
        values: dict[str, Tensor] = {**self.named_weights(), **feeds}
        values.update({name: getattr(self, key) for name, key in self._constants.items()})
        return execute(self.steps, values)


Step = tuple[onnx.NodeProto, Callable[[dict[str, Tensor]], Sequence[Tensor]]]


def compile_steps(graph: onnx.GraphProto, opset: int) -> list[Step]:
    """Each non-Constant node with the callable that computes its outputs from the values."""
    steps: list[Step] = []
    for node in graph.node:
        if node.op_type == "Constant":
            continue
        if node.op_type == "If":
            steps.append((node, IfStep(node, opset)))
            continue
        rule, context = RULES.lookup(node.op_type, opset), OpContext(node, opset)

        def apply(values, rule=rule, context=context, node=node) -> Sequence[Tensor]:
            result = rule.fn(context, *[values[name] if name else None for name in node.input])
            return result if isinstance(result, tuple | list) else (result,)

        steps.append((node, apply))
    return steps


def execute(steps: list[Step], values: dict[str, Tensor]) -> dict[str, Tensor]:
    """Run `steps` in order, adding every named output to `values` (returned)."""
    for node, apply in steps:
        for name, value in zip(node.output, apply(values), strict=False):
            if name:
                values[name] = value
    return values


class IfStep:
    """An If node: the branch its condition selects runs, reading outer-scope tensors.

    The condition is evaluated eagerly on every call, so a data-dependent If is exact
    too. Tensors stored inside branches are constants here (they do not train).
    """

    def __init__(self, node: onnx.NodeProto, opset: int) -> None:
        self.node = node
        self.branches = {}
        for attr in node.attribute:
            if attr.name in ("then_branch", "else_branch"):
                branch = attr.g
                check_tensor_interface(branch)
                stored = {k: to_tensor(np.array(v)) for k, v in stored_tensors(branch).items()}
                outputs = [o.name for o in branch.output]
                self.branches[attr.name] = (compile_steps(branch, opset), stored, outputs)

    def __call__(self, values: dict[str, Tensor]) -> list[Tensor]:
        condition = values[self.node.input[0]]
        chosen = "then_branch" if bool(condition.reshape(-1)[0]) else "else_branch"
        steps, stored, outputs = self.branches[chosen]
        device = condition.device
        scope = {**values, **{k: v.to(device) for k, v in stored.items()}}
        found = execute(steps, scope)
        return [found[name] for name in outputs]


#: Ops the executor runs itself: Constant (a stored tensor), If (a branch of its own).
BUILTINS = frozenset({"Constant", "If"})


def _unsupported(node: onnx.NodeProto, opset: int) -> bool:
    if node.domain not in ("", "ai.onnx"):
        return True
    return node.op_type not in BUILTINS and RULES.lookup(node.op_type, opset) is None


def _all_nodes(graph: onnx.GraphProto):
    """The graph's nodes and those of its If branches, depth first."""
    for node in graph.node:
        yield node
        if node.op_type == "If":
            for branch in subgraphs(node):
                yield from _all_nodes(branch)


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Op types of `model` the executor has no rule for (at its opset), in graph order."""
    opset = opset_of(model)
    missing: list[str] = []
    for node in _all_nodes(model.graph):
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        if _unsupported(node, opset) and name not in missing:
            missing.append(name)
    return missing


def check_supported(model: onnx.ModelProto) -> None:
    """Raise InputError naming the first op (and node) the executor has no rule for."""
    opset = opset_of(model)
    for node in _all_nodes(model.graph):
        if _unsupported(node, opset):
            raise InputError(
                f"distill: op '{node.op_type}' (node '{node.name}', domain "
                f"'{node.domain or 'ai.onnx'}', opset {opset}) is not supported by the "
                "torch executor"
            )


def check_tensor_interface(graph: onnx.GraphProto) -> None:
    """Raise InputError for a graph input or output that is not a tensor (sequence, map...)."""
    for value in (*graph.input, *graph.output):
        kind = value.type.WhichOneof("value")
        if kind not in ("tensor_type", None):
            raise InputError(
                f"distill: '{value.name}' is of type {kind.removesuffix('_type')}; the torch "
                "executor runs graphs of tensors only"
            )


def stored_tensors(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Initializers and the outputs of Constant nodes, by tensor name."""
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = _constant_value(node)
            if value is None:
                raise InputError(f"distill: Constant node '{node.name}' holds no dense tensor")
            tensors[node.output[0]] = numpy_helper.to_array(value)
    return tensors


def trainable_names(graph: onnx.GraphProto, stored: dict[str, np.ndarray], opset: int) -> set[str]:
    """Float stored tensors read at a weight position of some op (through Identity aliases)."""
    source = {name: name for name in stored}
    for node in graph.node:  # topological order: an alias of an alias resolves in one pass
        if node.op_type == "Identity" and node.input[0] in source:
            source[node.output[0]] = source[node.input[0]]
    trainable = set()
    for node in graph.node:
        rule = RULES.lookup(node.op_type, opset)
        if rule is None:
            continue
        for position, name in enumerate(node.input):
            origin = source.get(name)
            if origin is None or not np.issubdtype(stored[origin].dtype, np.floating):
                continue
            per_channel = rule.per_channel and stored[origin].size > 1
            if position in rule.weights or per_channel:
                trainable.add(origin)
    return trainable


def to_torch(feeds: dict[str, np.ndarray]) -> dict[str, Tensor]:
    """numpy feeds as torch tensors (shared memory, no copy)."""
    return {name: to_tensor(value) for name, value in feeds.items()}
