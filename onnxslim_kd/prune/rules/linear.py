"""Gemm and MatMul with a constant weight: MLP hidden units are channel spaces too."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import Layout
from onnxslim_kd.prune.rules.base import Rule, block_inputs, label


class Gemm(Rule):
    """Y = A B + C: A's features slice B's K axis (axis 1 with transB), outputs are new."""

    creates_channels = True

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        weight = an.const(node.input[1])
        where = f"Gemm '{label(node, index)}'"
        if weight is None or attribute(node, "transA", 0):
            block_inputs(an, node, f"{where} has a computed weight or transA")
            return
        trans_b = attribute(node, "transB", 0)
        k_axis, n_axis = (1, 0) if trans_b else (0, 1)
        source = an.layout(node.input[0])
        if source is not None:
            an.slice_param(index, 1, k_axis, source.with_axis(k_axis, 2))
        out = an.new_space(weight.shape[n_axis], index, 1, 2)
        an.slice_param(index, 1, n_axis, out.with_axis(n_axis, 2))
        if len(node.input) > 2 and node.input[2]:
            bias = an.const(node.input[2])
            if bias is None:
                an.block(out, f"{where} has a computed bias")
            elif bias.size != 1:
                an.slice_param(index, 2, bias.ndim - 1, out.with_axis(bias.ndim - 1, bias.ndim))
        an.set_layout(node.output[0], out)
        an.node_layouts[index] = (source, out)


class MatMul(Rule):
    """Activation [..., K] times a constant [K, N]: K is sliced, N is a new space.

    Two activations (attention's Q K^T and P V): channels on a batch axis (heads) pass to
    the output, coupled between both inputs; A's rows and B's columns pass too; channels
    on the contracted axis block."""

    creates_channels = True

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        weight = an.const(node.input[1])
        where = f"MatMul '{label(node, index)}'"
        source = an.layout(node.input[0])
        rank = an.rank(node.output[0])
        if rank is None or an.const(node.input[0]) is not None:
            block_inputs(an, node, f"{where} has a constant first input or unknown rank")
            return
        if weight is None:
            _activation_product(an, node, index, rank)
            return
        if weight.ndim != 2:
            block_inputs(an, node, f"{where} has a batched constant weight")
            return
        if source is not None:
            if source.axis != source.rank - 1:
                an.block(source, f"{where} contracts an axis that is not the channel axis")
            else:
                an.slice_param(index, 1, 0, source.with_axis(0, 2))
        out = an.new_space(weight.shape[1], index, rank - 1, rank)
        an.slice_param(index, 1, 1, out.with_axis(1, 2))
        an.set_layout(node.output[0], out)
        an.node_layouts[index] = (source, out)


def _activation_product(an: Analysis, node: onnx.NodeProto, index: int, rank: int) -> None:
    """Where each input's channels land in A @ B; both land on one axis or the node blocks.
    Channels on a batch axis need the other input's batch axis pruned with them (coupled)
    or broadcast (size 1)."""
    where = f"MatMul '{label(node, index)}'"
    landed: list[Layout] = []
    for position, name in enumerate(node.input[:2]):
        lay = an.layout(name)
        if lay is None:
            continue
        contracted = lay.rank - 1 if position == 0 else lay.rank - 2
        if lay.axis == contracted or lay.rank == 1:
            block_inputs(an, node, f"{where} contracts the channel axis of two activations")
            return
        landed.append(lay.with_axis(lay.axis + rank - lay.rank, rank))
        if lay.axis < lay.rank - 2 and not _paired(an, node.input[1 - position], landed[-1]):
            block_inputs(an, node, f"{where} multiplies heads by an untracked tensor")
            return
    if not landed:
        return
    if len(landed) == 2 and landed[0].axis != landed[1].axis:
        block_inputs(an, node, f"{where} puts channels on two axes of its output")
        return
    if len(landed) == 2:
        an.couple(landed[0], landed[1], f"{where} multiplies unaligned heads")
    an.set_layout(node.output[0], landed[0])
    an.node_layouts[index] = (landed[0], landed[0])


def _paired(an: Analysis, other: str, landed: Layout) -> bool:
    """The other operand of a product is tracked too, or broadcasts over `landed`'s axis."""
    if an.layout(other) is not None:
        return True
    shape = an.shape(other)
    axis = landed.axis - (landed.rank - len(shape)) if shape is not None else -1
    return shape is not None and (axis < 0 or shape[axis] == 1)
