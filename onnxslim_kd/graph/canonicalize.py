"""Bring third-party exports into the one form every pass expects.

Weights live in initializers (not Constant nodes, which onnxruntime's quantizer
refuses), no Identity aliases an initializer (torch's legacy exporter emits them for
de-duplicated tensors), exact constant sub-expressions are folded, and value_info
carries inferred shapes. Names, inputs, outputs, metadata and opset are untouched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.reference import ReferenceEvaluator

from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.load import opset_of
from onnxslim_kd.graph.shape_inference import infer_shapes
from onnxslim_kd.graph.walk import attribute, clone, rename_input

#: Ops whose result on constants is bit-exact in numpy: data movement and shape logic.
EXACT_FOLDABLE = ops_where(fold="exact")
#: Arithmetic that is exact only on integer tensors (shape computations).
INTEGER_FOLDABLE = ops_where(fold="integer")


@dataclass
class CanonicalizeReport:
    """What canonicalization changed, for the pass summary."""

    constants_lifted: int = 0
    identities_resolved: int = 0
    nodes_folded: int = 0
    dead_nodes_removed: int = 0
    initializers_removed: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def canonicalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, CanonicalizeReport]:
    """Return a canonical copy of `model` and a report of what changed."""
    out = clone(model)
    graph = out.graph
    report = CanonicalizeReport()
    report.constants_lifted = lift_constants(graph)
    report.identities_resolved = resolve_identities(graph)
    report.nodes_folded = fold_constants(graph, opset_of(out))
    report.dead_nodes_removed, report.initializers_removed = cleanup(graph)
    return infer_shapes(out), report


def lift_constants(graph: onnx.GraphProto) -> int:
    """Turn top-level Constant nodes into initializers of the same name."""
    outputs = {o.name for o in graph.output}
    lifted = 0
    for node in list(graph.node):
        if node.op_type != "Constant" or node.domain not in ("", "ai.onnx"):
            continue
        if node.output[0] in outputs:
            continue
        value = _constant_value(node)
        if value is None:
            continue
        graph.initializer.append(value)
        graph.node.remove(node)
        lifted += 1
    return lifted


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node produces, named after its output; None if sparse/string."""
    name = node.output[0]
    attr = node.attribute[0]
    if attr.name == "value":
        tensor = onnx.TensorProto()
        tensor.CopyFrom(attr.t)
        tensor.name = name
        return tensor
    scalars = {
        "value_float": np.float32,
        "value_floats": np.float32,
        "value_int": np.int64,
        "value_ints": np.int64,
    }
    if attr.name in scalars:
        array = np.array(attribute(node, attr.name), dtype=scalars[attr.name])
        return numpy_helper.from_array(array, name)
    return None


def resolve_identities(graph: onnx.GraphProto) -> int:
    """Remove Identity nodes that merely alias an initializer; readers use it directly."""
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    resolved = 0
    for node in list(graph.node):
        if node.op_type != "Identity" or node.input[0] not in initializers:
            continue
        if node.output[0] in outputs:
            continue
        rename_input(graph, node.output[0], node.input[0])
        graph.node.remove(node)
        resolved += 1
    return resolved


def fold_constants(graph: onnx.GraphProto, opset: int) -> int:
    """Evaluate nodes whose inputs are all constant, when the result is exact."""
    constants = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    folded = 0
    for node in list(graph.node):
        if not _exactly_foldable(node, constants) or any(o in outputs for o in node.output):
            continue
        results = _evaluate(node, constants, opset)
        for name, value in zip(node.output, results, strict=True):
            tensor = numpy_helper.from_array(np.asarray(value), name)
            graph.initializer.append(tensor)
            constants[name] = tensor
        graph.node.remove(node)
        folded += 1
    return folded


def _exactly_foldable(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto]) -> bool:
    if node.domain not in ("", "ai.onnx") or not node.input:
        return False
    inputs = [name for name in node.input if name]
    if not all(name in constants for name in inputs):
        return False
    if node.op_type in EXACT_FOLDABLE:
        return True
    if node.op_type in INTEGER_FOLDABLE:
        return all(_is_integer(constants[name]) for name in inputs)
    return False


def _is_integer(tensor: onnx.TensorProto) -> bool:
    return np.issubdtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type), np.integer)


def _evaluate(node: onnx.NodeProto, constants: dict[str, onnx.TensorProto], opset: int) -> list:
    """Run one node with onnx's reference evaluator at the model's opset."""
    inputs = [constants[name] for name in dict.fromkeys(node.input) if name]
    outputs = [onnx.ValueInfoProto(name=name) for name in node.output]
    graph = onnx.helper.make_graph([node], "fold", [], outputs, initializer=inputs)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])
    return ReferenceEvaluator(model).run(None, {})
