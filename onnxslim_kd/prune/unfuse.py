"""A fused Q/K/V projection written as three, so its attention heads can be pruned.

timm (and many exported ViTs) compute `qkv(x).reshape(B, N, 3, heads, D).permute(2, 0,
3, 1, 4)` and take q, k, v apart (Split + Squeeze from the legacy exporter, Slice +
Squeeze from dynamo, Gather by hand). One projection's channels then hold three tensors
whose heads must go together, on an axis the channel rules cannot follow. Before the
analysis each such projection becomes three: MatMul with its third of the weight, Add of
its third of the bias, Reshape to [.., heads, D] (0 copies the leading sizes, so batch
and sequence stay dynamic) and the permutation without the part axis, each ending in the
tensor the part had. Exact: the same products, split by columns. Only applied when every
piece matches; anything else is left as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.equivalence import verified_rewrite
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.graph.transposes import direct_transposes
from onnxslim_kd.graph.walk import attribute, consumers, producers
from onnxslim_kd.prune.mha import packed_projections, rewrite_multihead_attention
from onnxslim_kd.prune.projections import PARTS, add_initializers, projection_part

#: Tensors a fused projection packs (q, k, v).
COUNT = len(PARTS)


def standard_attention(
    model: onnx.ModelProto, input_shapes: dict[str, list[int]]
) -> tuple[onnx.ModelProto, list[str]]:
    """`model` with its attention in the form the head rules follow: MultiheadAttention
    blocks rewritten where verified (prune/mha.py), fused Q/K/V projections written as
    three, dynamo's merged-batch K^T as one Transpose (graph/transposes.py, verified by
    running); and a line for each change or block left as it was."""
    if not packed_projections(model) and not _fused_candidates(model):
        return _direct_transposes(model, input_shapes)
    shapes = static_shapes(model, input_shapes)  # once: each rewrite keeps the rest's shapes
    model, rewritten, left = rewrite_multihead_attention(model, input_shapes, shapes)
    notes = [f"MultiheadAttention '{name}' written in standard form, to prune its heads"
             for name in rewritten]  # fmt: skip
    notes += [f"fused Q/K/V projection '{name}' written as three, to prune its heads"
              for name in unfuse_qkv(model, shapes)]  # fmt: skip
    model, direct = _direct_transposes(model, input_shapes)
    return model, notes + direct + left


def _direct_transposes(
    model: onnx.ModelProto, input_shapes: dict[str, list[int]]
) -> tuple[onnx.ModelProto, list[str]]:
    model, count, failure = verified_rewrite(model, direct_transposes, input_shapes)
    if failure is not None:
        return model, [f"K^T through a merged batch axis left as exported: one Transpose {failure}"]
    if not count:
        return model, []
    return model, [f"{count} K^T through a merged batch axis written as one Transpose"]


def _fused_candidates(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """MatMuls with a constant 2-D weight of 3 x W outputs, read by a bias Add alone whose
    result a Reshape reads: the fused projections worth matching."""
    graph = model.graph
    readers = consumers(graph)
    weights = {t.name: list(t.dims) for t in graph.initializer}
    return [
        n for n in graph.node
        if n.op_type == "MatMul" and len(dims := weights.get(n.input[1], [])) == 2
        and dims[1] % COUNT == 0 and _only_reader(readers, n.output[0], "Add") is not None
        and any(r.op_type == "Reshape" for a in readers[n.output[0]] for r in readers[a.output[0]])
    ]  # fmt: skip


def unfuse_qkv(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> list[str]:
    """Rewrite every fused Q/K/V projection of `model` in place; return the ones rewritten
    (`shapes`: static shapes, to read the Reshapes' outputs)."""
    graph = model.graph
    done = []
    for matmul in _fused_candidates(model):
        match = _match(graph, matmul, shapes)
        if match is not None:
            _rewrite(graph, matmul, *match)
            done.append(matmul.name or matmul.output[0])
    if done:
        cleanup(graph)
    return done


def _match(graph: onnx.GraphProto, matmul: onnx.NodeProto, shapes: dict):
    """(weight, bias, add, heads, size, perm, parts) of a fused projection, or None."""
    readers, inits = consumers(graph), {t.name: t for t in graph.initializer}
    weight = inits[matmul.input[1]]
    add = _only_reader(readers, matmul.output[0], "Add")
    bias_name = add and next((i for i in add.input if i != matmul.output[0]), None)
    bias = inits.get(bias_name) if bias_name else None
    if bias is None or list(bias.dims) != [weight.dims[1]]:
        return None
    reshape = _only_reader(readers, add.output[0], "Reshape")
    before, after = shapes.get(add.output[0]), reshape and shapes.get(reshape.output[0])
    width = weight.dims[1] // COUNT
    if not after or before is None or after[:-3] != before[:-1] or after[-3] != COUNT:
        return None
    heads, size = after[-2], after[-1]
    if heads * size != width:
        return None
    transpose = _only_reader(readers, reshape.output[0], "Transpose")
    perm = list(attribute(transpose, "perm", [])) if transpose else []
    if not perm or perm[0] != len(after) - 3:
        return None
    parts = _parts(graph, readers, transpose.output[0])
    if parts is None:
        return None
    return weight, bias, add, heads, size, perm, parts


def _only_reader(readers: dict, name: str, op_type: str) -> onnx.NodeProto | None:
    found = readers.get(name, [])
    return found[0] if len(found) == 1 and found[0].op_type == op_type else None


def _parts(graph: onnx.GraphProto, readers: dict, name: str) -> list[str] | None:
    """The q, k, v tensors taken off axis 0 of `name`, in order, or None."""
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    found: dict[int, str] = {}
    for node in readers.get(name, []):
        if node.op_type == "Split" and attribute(node, "axis", 0) == 0:
            sizes = inits.get(node.input[1]) if len(node.input) > 1 else None
            if len(node.output) != COUNT or (sizes is not None and sizes.tolist() != [1] * COUNT):
                return None
            for index, output in enumerate(node.output):
                found[index] = _squeezed(readers, inits, output)
        elif node.op_type == "Slice":
            bounds = [inits.get(i) for i in node.input[1:4]]
            if any(b is None for b in bounds) or bounds[2].tolist() != [0]:
                return None
            start, stop = int(bounds[0][0]), int(bounds[1][0])
            if stop != start + 1 or (len(node.input) > 4 and node.input[4]):
                return None
            found[start] = _squeezed(readers, inits, node.output[0])
        elif node.op_type == "Gather" and attribute(node, "axis", 0) == 0:
            index = inits.get(node.input[1])
            if index is None or index.ndim != 0:
                return None
            found[int(index)] = node.output[0]
        else:
            return None
    if sorted(found) != list(range(COUNT)) or None in found.values():
        return None
    return [found[i] for i in range(COUNT)]


def _squeezed(readers: dict, inits: dict, name: str) -> str | None:
    """The output of the one Squeeze of axis 0 reading `name`."""
    squeeze = _only_reader(readers, name, "Squeeze")
    if squeeze is None:
        return None
    axes = inits.get(squeeze.input[1]) if len(squeeze.input) > 1 else None
    axes = axes.tolist() if axes is not None else list(attribute(squeeze, "axes", []))
    return squeeze.output[0] if axes == [0] else None


def _rewrite(graph: onnx.GraphProto, matmul, weight, bias, add, heads, size, perm, parts):
    """Three projections in place of the fused one; the old nodes die in cleanup."""
    leading = len(perm) - 3  # the Reshape output's axes before [3, heads, D]
    base = matmul.name or matmul.output[0]
    target = f"{base}.split"
    tensors = {target: np.array([0] * leading + [heads, size], np.int64)}
    new_perm = [p - (p > leading) for p in perm[1:]]
    writers, order = producers(graph), {id(n): i for i, n in enumerate(graph.node)}
    position = min(order[id(writers[part])] for part in parts)  # before the first part's use
    nodes = []
    for part, output in zip(PARTS, parts, strict=True):
        projected, cut = projection_part(
            base, matmul.input[0], (weight.name, numpy_helper.to_array(weight)),
            (bias.name, numpy_helper.to_array(bias)), part, (target, new_perm), output,
        )  # fmt: skip
        nodes += projected
        tensors.update(cut)
    add_initializers(graph, tensors)
    for node in graph.node:  # the parts' old producers stop writing them
        for slot, name in enumerate(node.output):
            if name in parts:
                node.output[slot] = f"{name}.fused"
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
