"""A channel count read off a tensor to size other tensors: frozen to its value.

Exporters of `B, T, C = x.shape; q.view(B, T, heads, C // heads)` (timm, our ViT sample)
read the residual width C only to compute the head size and the merged width of the
attention output; those belong to the projections, not to the residual. Replacing the
read with the number it had keeps every such target exact while the residual width is
pruned. A Reshape of the pruned channels themselves stays exact too: its rule rewrites
the target's channel entry with the kept count (after this edit, as it comes later in
the graph), and every other entry holds another axis' size, which pruning keeps.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import KeepLookup
from onnxslim_kd.prune.rules.base import Rule

#: Ops a size passes through on its way to a Reshape target (scalar arithmetic with
#: constants, and the Concat that assembles the target).
_SIZE_OPS = {"Unsqueeze", "Squeeze", "Cast", "Div", "Mul", "Floor", "Identity", "Concat"}


def sized_reshapes(an: Analysis, reader: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    """The Reshapes whose targets the size `reader` takes ends in, through `_SIZE_OPS`
    whose other inputs (but a Concat's) are constants; None where it goes anywhere else."""
    reshapes, frontier, seen = [], [reader.output[0]], set()
    while frontier:
        name = frontier.pop()
        for node in an.readers.get(name, []):
            if node.op_type == "Reshape" and list(node.input).index(name) == 1:
                reshapes.append(node)
                continue
            others = [i for i in node.input if i and i != name]
            if node.op_type not in _SIZE_OPS or (
                node.op_type != "Concat" and any(an.const(i) is None for i in others)
            ):
                return None
            if node.output[0] not in seen:
                seen.add(node.output[0])
                frontier.append(node.output[0])
    return reshapes or None


class FrozenSize(Rule):
    """The edit: every reader of the size reads a constant holding the value it had."""

    def __init__(self, size: str, value: np.ndarray) -> None:
        self.size, self.value = size, value

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        name = f"{self.size}.frozen"
        graph.initializer.append(numpy_helper.from_array(self.value, name))
        for node in graph.node:
            for position, tensor in enumerate(node.input):
                if tensor == self.size:
                    node.input[position] = name


def freeze(an: Analysis, gather: onnx.NodeProto, count: int) -> None:
    """Freeze the channel count `count` a Gather takes off a tensor."""
    index = an.node_index(gather.output[0])
    value = np.full(np.shape(an.const(gather.input[1])), count, np.int64)
    an.edit(FrozenSize(gather.output[0], value), index)
