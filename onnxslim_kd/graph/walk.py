"""Small read-only vocabulary over ONNX graphs shared by every pass."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import onnx


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """Graphs held in a node's attributes (If branches, Loop/Scan bodies)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every nested subgraph, depth first."""
    yield graph
    for node in graph.node:
        for sub in subgraphs(node):
            yield from all_graphs(sub)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every stored tensor: initializers and tensor attributes, in all subgraphs."""
    for graph in all_graphs(model.graph):
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    yield from attr.tensors


def used_names(graph: onnx.GraphProto) -> set[str]:
    """Names read by any node of the graph or its subgraphs (outer-scope reads included)."""
    names: set[str] = set()
    for g in all_graphs(graph):
        for node in g.node:
            names.update(name for name in node.input if name)
        names.update(out.name for out in g.output)
    return names


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """Map each tensor name to the top-level nodes that read it."""
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                readers[name].append(node)
    return readers


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    """Map each tensor name to the top-level node that writes it."""
    return {name: node for node in graph.node for name in node.output if name}


def rename_input(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Make every reader of `old` (in all subgraphs) read `new` instead."""
    for g in all_graphs(graph):
        for node in g.node:
            for i, name in enumerate(node.input):
                if name == old:
                    node.input[i] = new


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The Python value of a node attribute, or `default` when absent."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def clone(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy, so passes never mutate the model they were given."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def node_label(node: onnx.NodeProto, index: int) -> str:
    """A node's name, or its op type and position for unnamed nodes."""
    return node.name or f"{node.op_type}#{index}"
