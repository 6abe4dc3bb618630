"""Conv and ConvTranspose: producers of new channel spaces, consumers of their inputs'."""

from __future__ import annotations

import numpy as np
import onnx

from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import KeepLookup, kept_positions
from onnxslim_kd.prune.rules.base import Rule, block_inputs, label


class Conv(Rule):
    """Dense conv: input channels slice weight axis 1, output channels are a new space.

    Depthwise and grouped convs with as many outputs as inputs tie the two: the output
    carries the input's layout, every group keeps the same count, and `group` is
    rewritten for depthwise convs.
    """

    creates_channels = True

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        weight = an.const(node.input[1])
        where = f"Conv '{label(node, index)}'"
        if weight is None:
            block_inputs(an, node, f"{where} has a computed weight")
            return
        group = attribute(node, "group", 1)
        c_out, per_group = weight.shape[:2]
        rank = weight.ndim
        source = an.layout(node.input[0])
        if group == 1:
            if source is not None:
                an.slice_param(index, 1, 1, source.with_axis(1, rank))
            out = an.new_space(c_out, index, 1, rank)
        elif c_out == per_group * group:
            out = source or an.fixed(c_out, 1, rank, f"{where} reads an untracked input")
            if per_group == 1:
                an.edit(self, index)  # depthwise: `group` becomes the kept count
            elif len(out.segments) == 1 and an.is_whole(out.segments[0]):
                space = an.spaces[out.segments[0].space]
                space.groups = np.lcm(space.groups, group)
                an.edit(self, index)  # grouped: gather each group's kept inputs
            else:
                an.block(out, f"{where} is grouped over a concatenation")
        else:
            if source is not None:
                an.block(source, f"{where} is grouped with {c_out} outputs != inputs")
            out = an.new_space(c_out, index, 1, rank)
            an.block(out, f"{where} is grouped with {c_out} outputs != inputs")
        an.slice_param(index, 1, 0, out.with_axis(0, rank))
        if len(node.input) > 2 and node.input[2]:
            an.slice_param(index, 2, 0, out.with_axis(0, 1))
        an.set_layout(node.output[0], out.with_axis(1, an.rank(node.output[0]) or rank))
        an.node_layouts[index] = (source, out)

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        node = graph.node[index]
        group = attribute(node, "group", 1)
        out_layout = an.node_layouts[index][1]
        positions = kept_positions(out_layout, kept)
        weight_name = node.input[1]
        weight = onnx.numpy_helper.to_array(_initializer(graph, weight_name))
        if weight.shape[1] == 1:
            _set_group(node, len(positions))
            return
        per_group = weight.shape[1]
        per_kept = len(positions) // group
        rows = []
        for g in range(group):
            chosen = positions[g * per_kept : (g + 1) * per_kept] - g * per_group
            rows.append(weight[g * per_kept : (g + 1) * per_kept][:, chosen])
        gathered = np.concatenate(rows).astype(weight.dtype)
        _initializer(graph, weight_name).CopyFrom(
            onnx.numpy_helper.from_array(gathered, weight_name)
        )


class ConvTranspose(Rule):
    """Weight [C_in, C_out/group, ...]: inputs slice axis 0, outputs (new space) axis 1."""

    creates_channels = True

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        weight = an.const(node.input[1])
        where = f"ConvTranspose '{label(node, index)}'"
        if weight is None or attribute(node, "group", 1) != 1:
            block_inputs(an, node, f"{where} is grouped or has a computed weight")
            if weight is not None:
                out = an.new_space(weight.shape[1], index, 1, weight.ndim)
                an.block(out, f"{where} is grouped")
                an.set_layout(node.output[0], out)
            return
        rank = weight.ndim
        source = an.layout(node.input[0])
        if source is not None:
            an.slice_param(index, 1, 0, source.with_axis(0, rank))
        out = an.new_space(weight.shape[1], index, 1, rank)
        an.slice_param(index, 1, 1, out)
        if len(node.input) > 2 and node.input[2]:
            an.slice_param(index, 2, 0, out.with_axis(0, 1))
        an.set_layout(node.output[0], out)
        an.node_layouts[index] = (source, out)


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto:
    return next(t for t in graph.initializer if t.name == name)


def _set_group(node: onnx.NodeProto, group: int) -> None:
    for attr in node.attribute:
        if attr.name == "group":
            attr.i = group
