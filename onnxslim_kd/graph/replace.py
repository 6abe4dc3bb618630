"""Swap nodes for subgraphs in place, keeping the order and every other node untouched."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import used_names


def replace_nodes(
    graph: onnx.GraphProto,
    replacements: dict[str, tuple[list[onnx.NodeProto], list[onnx.TensorProto]]],
) -> None:
    """Replace each top-level node, keyed by its first output, by `(nodes, initializers)`.

    The new nodes take the old node's place (the graph stays topologically sorted), and
    initializers the replaced nodes read that nothing reads any more are dropped, from
    the graph inputs too (old exports list initializers as inputs).
    """
    if not replacements:
        return
    read_before: set[str] = set()
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        new = replacements.get(node.output[0]) if node.output else None
        if new is None:
            nodes.append(node)
            continue
        read_before.update(node.input)
        nodes.extend(new[0])
        graph.initializer.extend(new[1])
    del graph.node[:]
    graph.node.extend(nodes)
    initializers = {t.name for t in graph.initializer}
    orphans = (read_before & initializers) - used_names(graph)
    for values in (graph.initializer, graph.input):
        for value in [v for v in values if v.name in orphans]:
            values.remove(value)
