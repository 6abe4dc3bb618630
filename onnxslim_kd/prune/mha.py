"""`nn.MultiheadAttention` as exported, written in the form the head rules follow.

torch exports MultiheadAttention (torchvision's ViT, `nn.TransformerEncoder`) as one packed
in-projection unflattened to [T, B, 3, C], then `view(T, B * heads, D)`, which merges the
heads into the batch axis, and (legacy or dynamo) a decomposition of
scaled_dot_product_attention with the scale computed from shapes. No channel rule can
follow heads through the batch axis. So each such block, from its input (batch first,
behind the exporter's Transpose) to the output after the out-projection, is replaced by
the standard form: Q, K, V projections (thirds of the packed weight and bias), a Reshape
to [0, 0, heads, D] and Transpose to [B, heads, T, D], softmax(Q K^T / sqrt(D)) V, the
inverse Transpose and Reshape, and the out-projection.

The block is found by its anchors (a MatMul with a [C, 3C] constant weight and its bias
Add, the nearest Softmax after it, the first projection to C after that) rather than node
by node, so every rewrite is checked by running: the rewritten model must compute the
original's outputs on random inputs at two batch sizes, or the block is left as it was
(a mask, dropout in training mode, anything the standard form does not compute).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.equivalence import mismatch, reference_runs
from onnxslim_kd.graph.walk import attribute, clone, consumers, producers
from onnxslim_kd.prune.projections import PARTS, add_initializers, projection_part

#: Nodes searched from the in-projection to its Softmax and out-projection.
REACH = 80


def rewrite_multihead_attention(
    model: onnx.ModelProto, input_shapes: dict[str, list[int]], shapes: dict[str, list[int]]
) -> tuple[onnx.ModelProto, list[str], list[str]]:
    """(model with every MultiheadAttention block it could verify rewritten, the blocks
    rewritten, the ones left with the reason). `shapes` are `model`'s static shapes at
    `input_shapes`; a verified rewrite keeps every other block's tensors and their shapes,
    so they serve for all blocks, and each rewrite is checked against `model` itself."""
    done, left = [], []
    reference: list | None = None  # the original's outputs, run once when first needed
    for name in packed_projections(model):
        trial = clone(model)
        matmul = next(n for n in trial.graph.node if n.name == name)
        reason = _rewrite(trial, matmul, shapes)
        if reason is None:
            cleanup(trial.graph)
            reference = reference or reference_runs(model, input_shapes)
            failure = mismatch(trial, reference)
            if failure is not None:
                unlike = " (a mask or another op)" if failure == "computes other values" else ""
                reason = f"the standard form {failure}{unlike}"
        if reason is None:
            model = trial
            done.append(name)
        else:
            left.append(f"attention '{name}' left packed: {reason}")
    return model, done, left


def packed_projections(model: onnx.ModelProto) -> list[str]:
    """Names of MatMuls with a constant [C, 3C] weight read by a bias Add alone."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    readers = consumers(model.graph)
    return [
        node.name for node in model.graph.node
        if node.op_type == "MatMul" and len(dims := weights.get(node.input[1], [])) == 2
        and dims[1] == 3 * dims[0]
        and [r.op_type for r in readers.get(node.output[0], [])] == ["Add"]
    ]  # fmt: skip


def _rewrite(model: onnx.ModelProto, matmul: onnx.NodeProto, shapes: dict) -> str | None:
    """Replace the block of in-projection `matmul` in place; None, or why not."""
    graph = model.graph
    readers, writers = consumers(graph), producers(graph)
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    weight = inits[matmul.input[1]]
    width = weight.shape[0]
    (add,) = readers[matmul.output[0]]
    bias_name = next((i for i in add.input if i in inits), None)
    bias = inits.get(bias_name)
    if bias is None or bias.shape != (3 * width,):
        return "the in-projection has no constant bias"
    entry = writers.get(matmul.input[0])
    if entry is None or not _swaps_batch_and_time(entry):
        return "its input is not a batch-first [B, T, C] transposed to [T, B, C]"
    region = _downstream(readers, add.output[0])
    # the nearest Softmax (the region can reach the next block's); the run verifies it
    softmaxes = [n for n in region if n.op_type == "Softmax"]
    if not softmaxes:
        return "no Softmax follows the in-projection"
    heads = _heads(shapes.get(softmaxes[0].output[0]))
    if heads is None or width % heads:
        return "the number of heads cannot be read off the attention probabilities"
    found = _out_projection(region[region.index(softmaxes[0]) :], inits, width, readers)
    if found is None:
        return "no out-projection to the model width follows"
    (out_name, out_weight), (out_bias_name, out_bias), exit_node = found
    sources = {
        "weight": (matmul.input[1], weight), "bias": (bias_name, bias),
        "out.weight": (out_name, out_weight), "out.bias": (out_bias_name, out_bias),
    }  # fmt: skip
    nodes, tensors = _standard_form(matmul.name, entry.input[0], sources, heads,
                                    exit_node.output[0])  # fmt: skip
    add_initializers(graph, tensors)
    exit_node.output[0] = f"{exit_node.output[0]}.packed"
    position = list(graph.node).index(exit_node)
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    return None


def _swaps_batch_and_time(node: onnx.NodeProto) -> bool:
    return node.op_type == "Transpose" and list(attribute(node, "perm", [])) == [1, 0, 2]


def _downstream(readers: dict, start: str) -> list[onnx.NodeProto]:
    """Up to REACH nodes reachable from tensor `start`, breadth first."""
    found, frontier, seen = [], [start], {start}
    while frontier and len(found) < REACH:
        name = frontier.pop(0)
        for node in readers.get(name, []):
            if id(node) in {id(n) for n in found}:
                continue
            found.append(node)
            for output in node.output:
                if output not in seen:
                    seen.add(output)
                    frontier.append(output)
    return found


def _heads(shape: list[int] | None) -> int | None:
    """Heads from attention probabilities [B, H, T, T] or [B * H, T, T] at batch 1."""
    if shape is None or len(shape) not in (3, 4):
        return None
    return shape[1] if len(shape) == 4 else shape[0]


def _out_projection(after_softmax: list, inits: dict, width: int, readers: dict):
    """((name, weight [C, C] as x @ W), (name, bias [C]), the batch-first Transpose ending
    the block); a transposed weight is named '<name>.T', a missing bias None."""
    for node in after_softmax:
        weight = inits.get(node.input[1]) if len(node.input) > 1 else None
        if node.op_type not in ("Gemm", "MatMul") or weight is None:
            continue
        if weight.shape != (width, width):
            return None
        name = node.input[1]
        if node.op_type == "Gemm":
            if attribute(node, "transA", 0) or attribute(node, "alpha", 1.0) != 1.0:
                return None
            if attribute(node, "transB", 0):
                name, weight = f"{name}.T", weight.T
        bias_name = node.input[2] if len(node.input) > 2 and node.input[2] in inits else None
        for later in _downstream(readers, node.output[0]):
            if bias_name is None and later.op_type == "Add":
                bias_name = next((i for i in later.input if i in inits), None)
            if _swaps_batch_and_time(later):
                bias = inits[bias_name] if bias_name else np.zeros(width, np.float32)
                return (name, weight), (bias_name, bias), later
        return None
    return None


def _standard_form(base: str, x: str, sources: dict, heads: int, output: str):
    """Nodes and initializers of the standard attention from `x` [B, T, C] to `output`.

    `sources` holds (initializer name, value) of the packed weight and bias and of the
    out-projection's; what is cut from them is named after them (projection_part)."""
    (weight_name, weight), (bias_name, bias) = sources["weight"], sources["bias"]
    width = weight.shape[0]
    size = width // heads
    out_weight, out_bias = (f"{base}.{key}" if name is None else name
                            for key, (name, _) in (("out.weight", sources["out.weight"]),
                                                   ("out.bias", sources["out.bias"])))  # fmt: skip
    tensors = {
        out_weight: sources["out.weight"][1], out_bias: sources["out.bias"][1],
        f"{base}.split": np.array([0, 0, heads, size], np.int64),
        f"{base}.merge": np.array([0, 0, width], np.int64),
        f"{base}.scale": np.array(1 / np.sqrt(size), np.float32),
    }  # fmt: skip
    nodes = []

    def node(op, inputs, output_name, **attrs):
        nodes.append(helper.make_node(op, inputs, [output_name], name=output_name, **attrs))
        return output_name

    parts = []
    for part in PARTS:
        perm = [0, 2, 3, 1] if part == "k" else [0, 2, 1, 3]  # K arrives transposed
        projected, cut = projection_part(
            base, x, (weight_name, weight), (bias_name, bias), part, (f"{base}.split", perm),
            f"{base}.{part}.perm",
        )  # fmt: skip
        nodes += projected
        tensors.update(cut)
        parts.append(f"{base}.{part}.perm")
    scores = node("MatMul", parts[:2], f"{base}.scores")
    scaled = node("Mul", [scores, f"{base}.scale"], f"{base}.scaled")
    probabilities = node("Softmax", [scaled], f"{base}.softmax", axis=-1)
    context = node("MatMul", [probabilities, parts[2]], f"{base}.context")
    merged = node("Transpose", [context], f"{base}.context.perm", perm=[0, 2, 1, 3])
    flat = node("Reshape", [merged, f"{base}.merge"], f"{base}.context.reshape")
    projected = node("MatMul", [flat, out_weight], f"{base}.out")
    nodes.append(helper.make_node("Add", [projected, out_bias], [output],
                                  name=f"{base}.out.add"))  # fmt: skip
    return nodes, tensors
