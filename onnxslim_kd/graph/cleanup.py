"""Remove nodes and initializers nothing reads (like onnx-graphsurgeon's cleanup)."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import used_names


def cleanup(graph: onnx.GraphProto) -> tuple[int, int]:
    """Drop dead nodes and unread initializers; return (nodes removed, initializers removed).

    Operates on the proto in place rather than round-tripping through a graphsurgeon
    Graph, so names, doc strings and value_info of everything kept stay byte-identical.
    """
    nodes_removed = 0
    while True:
        live = used_names(graph)
        dead = [n for n in graph.node if not any(o in live for o in n.output if o)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
        nodes_removed += len(dead)
    live = used_names(graph) | {inp.name for inp in graph.input}
    unread = [t for t in graph.initializer if t.name not in live]
    for tensor in unread:
        graph.initializer.remove(tensor)
    return nodes_removed, len(unread)
