"""Fresh names for nodes and tensors a pass adds, so they never collide with existing ones."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import all_graphs


class NameScope:
    """Hands out names unused anywhere in a model (nodes, tensors, subgraphs included)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.taken: set[str] = set()
        for graph in all_graphs(model.graph):
            self.taken.update(t.name for t in graph.initializer)
            for values in (graph.input, graph.output, graph.value_info):
                self.taken.update(v.name for v in values)
            for node in graph.node:
                self.taken.add(node.name)
                self.taken.update(node.input)
                self.taken.update(node.output)

    def fresh(self, base: str) -> str:
        """`base` itself when free, else `base_1`, `base_2`, ...; the name is then taken."""
        name, suffix = base, 0
        while name in self.taken:
            suffix += 1
            name = f"{base}_{suffix}"
        self.taken.add(name)
        return name
