"""A transpose of the last two axes written through a merged batch, as one Transpose.

The dynamo exporter decomposes `F.scaled_dot_product_attention` with K^T computed as
Reshape K [B, heads, T, D] -> [B * heads, T, D], Transpose -> [B * heads, D, T], Reshape
back to [B, heads, D, T] (sizes read at run time). That is Transpose(K, [0, 1, 3, 2]),
but channel rules cannot follow heads through the merged axis. Each such chain whose
inferred shapes prove it (the leading axes merged and split back unchanged, the last two
swapped) is replaced by the one Transpose; the caller verifies the result by running it
(graph.equivalence).
"""

from __future__ import annotations

import onnx
from onnx import helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.shape_inference import inferred_dims
from onnxslim_kd.graph.walk import attribute, clone, consumers


def direct_transposes(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """(a copy of `model` with every merged-batch transpose of the last two axes written as
    one Transpose, how many were)."""
    result = clone(model)
    graph = result.graph
    dims, readers = inferred_dims(result), consumers(graph)
    replaced = 0
    for merge in list(graph.node):
        chain = _chain(merge, readers, dims)
        if chain is None:
            continue
        transpose, split = chain
        rank = len(dims[merge.input[0]])
        direct = helper.make_node(
            "Transpose", [merge.input[0]], [split.output[0]], name=split.name or None,
            perm=[*range(rank - 2), rank - 1, rank - 2],
        )  # fmt: skip
        for node in (split, transpose):
            graph.node.remove(node)
        graph.node.insert(list(graph.node).index(merge) + 1, direct)
        replaced += 1
    if replaced:
        cleanup(graph)
    return result, replaced


def _chain(merge: onnx.NodeProto, readers: dict, dims: dict):
    """(the Transpose, the splitting Reshape) when `merge` starts such a chain, else None."""
    if merge.op_type != "Reshape":
        return None
    source, merged = dims.get(merge.input[0]), dims.get(merge.output[0])
    following = readers.get(merge.output[0], [])
    if source is None or merged is None or len(source) < 3 or len(following) != 1:
        return None
    transpose = following[0]
    after = readers.get(transpose.output[0], [])
    if transpose.op_type != "Transpose" or attribute(transpose, "perm") != [0, 2, 1]:
        return None
    if len(after) != 1 or after[0].op_type != "Reshape":
        return None
    split = after[0]
    restored = dims.get(split.output[0])
    known = all(d is not None for d in source)
    if not known or len(merged) != 3 or merged[1:] != source[-2:] or restored is None:
        return None
    return (transpose, split) if restored == [*source[:-2], source[-1], source[-2]] else None
