"""One part of a packed projection (Q, K or V of a [C, 3 * W] weight) as its own nodes.

Shared by the two rewrites that unpack attention before the analysis (prune/unfuse.py,
prune/mha.py). The cut weight and bias are named after the tensors they are cut from
('<weight>.q'), so projections that shared a packed weight (an exporter ties equal
layers) share their parts too, and the analysis keeps their channels together.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

PARTS = "qkv"


def projection_part(
    base: str, x: str, weight: tuple[str, np.ndarray], bias: tuple[str, np.ndarray],
    part: str, reshape: tuple[str, list[int]], output: str,
) -> tuple[list[onnx.NodeProto], dict[str, np.ndarray]]:  # fmt: skip
    """Nodes computing `output` = Transpose(Reshape(x @ W_part + b_part, target), perm)
    for `part` of PARTS, with `reshape` = (target initializer name, perm); and the cut
    initializers. Each node is named after its output, `<base>.<part>` for the MatMul."""
    (weight_name, w), (bias_name, b) = weight, bias
    width = w.shape[1] // len(PARTS)
    columns = slice(PARTS.index(part) * width, (PARTS.index(part) + 1) * width)
    tensors = {f"{weight_name}.{part}": w[:, columns], f"{bias_name}.{part}": b[columns]}
    target, perm = reshape
    prefix = f"{base}.{part}"
    steps = [
        ("MatMul", [x, f"{weight_name}.{part}"], prefix, {}),
        ("Add", [prefix, f"{bias_name}.{part}"], f"{prefix}.add", {}),
        ("Reshape", [f"{prefix}.add", target], f"{prefix}.reshape", {}),
        ("Transpose", [f"{prefix}.reshape"], output, {"perm": perm}),
    ]
    names = [prefix, f"{prefix}.add", f"{prefix}.reshape", f"{prefix}.perm"]
    nodes = [helper.make_node(op, ins, [out], name=name, **attrs)
             for (op, ins, out, attrs), name in zip(steps, names, strict=True)]  # fmt: skip
    return nodes, tensors


def add_initializers(graph: onnx.GraphProto, tensors: dict[str, np.ndarray]) -> None:
    """Add `tensors` the graph does not hold yet (a part another block already cut)."""
    present = {t.name for t in graph.initializer}
    graph.initializer.extend(
        numpy_helper.from_array(np.ascontiguousarray(value), name)
        for name, value in tensors.items()
        if name not in present
    )
