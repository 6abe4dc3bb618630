"""Ops that move, join or cut the channel axis: Concat, Split, Slice, Flatten, Reshape,
Squeeze/Unsqueeze, Transpose. Their shape constants are rewritten after pruning."""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.layout import KeepLookup, Layout, Segment, kept_positions
from onnxslim_kd.prune.rules.base import (
    Rule,
    attribute_or_input,
    block_inputs,
    label,
    without_axes,
)
from onnxslim_kd.prune.rules.sizes import freeze, sized_reshapes


class Concat(Rule):
    """On the channel axis the output is the inputs' segments in order (offsets into the
    consumer's channels); on any other axis all inputs must share their channels.

    Inputs whose channels lie on another axis than the others cannot join them: when
    some inputs have their channels on the concatenation axis, those are pruned as
    segments and only the others are blocked (fixed segments of the output).
    """

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        rank = an.rank(node.output[0])
        tracked = [lay for name in node.input if (lay := an.layout(name))]
        if rank is None or not tracked:
            block_inputs(an, node, f"Concat '{label(node, index)}' of unknown rank")
            return
        axis = attribute(node, "axis") % rank
        axes = {lay.axis for lay in tracked}
        if len(axes) > 1 and axis not in axes:
            block_inputs(an, node, f"Concat '{label(node, index)}' of differing layouts")
            return
        channel = axis if len(axes) > 1 else tracked[0].axis
        parts = []
        for position, name in enumerate(node.input):
            lay = an.layout(name)
            if lay is not None and lay.axis != channel:
                an.block(lay, f"Concat '{label(node, index)}' joins it on another axis")
                lay = None
            if (
                lay is None
                and axis != channel
                and _sliced_constant(an, index, position, tracked[0])
            ):
                continue
            if lay is None:
                size = (an.shape(name) or [0] * rank)[channel]
                lay = an.fixed(size, channel, rank, f"Concat '{label(node, index)}' input '{name}'")
            parts.append(lay)
        if axis == channel:
            segments = tuple(seg for lay in parts for seg in lay.segments)
            an.set_layout(node.output[0], Layout(channel, rank, segments))
            return
        for other in parts[1:]:
            an.couple(parts[0], other, f"Concat '{label(node, index)}' joins unaligned channels")
        an.set_layout(node.output[0], parts[0])


def _sliced_constant(an: Analysis, index: int, position: int, layout: Layout) -> bool:
    """Slice input `position` of node `index` with `layout` when it is a constant, or a
    constant broadcast by an Expand whose target leaves the channel axis at 1 (a ViT's
    class token, torch.cat([cls.expand(n, -1, -1), x], 1)); False when it is neither."""
    node = an.graph.node[index]
    name = node.input[position]
    writer = an.writers.get(name)
    if writer is not None and writer.op_type == "Expand" and an.const(writer.input[0]) is not None:
        target = an.const(writer.input[1])
        target = an.measured(writer.input[1]) if target is None else target
        axis = layout.axis - (layout.rank - len(target)) if target is not None else -1
        if axis < 0 or target[axis] != 1:
            return False
        index, position = an.node_index(writer.output[0]), 0
        name = writer.input[0]
    value = an.const(name)
    if value is None:
        return False
    axis = layout.axis - (layout.rank - value.ndim)
    if axis < 0 or value.shape[axis] != layout.size:
        return False
    an.slice_param(index, position, axis, layout.with_axis(axis, value.ndim))
    return True


def _split_sizes(an: Analysis, node: onnx.NodeProto, size: int) -> list[int] | None:
    sizes = attribute_or_input(an, node, "split", 1)
    if sizes is None:
        count = attribute(node, "num_outputs", len(node.output))
        sizes = [math.ceil(size / count)] * (count - 1)
        sizes.append(size - sum(sizes))
    return list(sizes)


#: Ops that keep every channel where it is, through which a Split's cut reaches its conv.
_CHANNELWISE = ops_where(keeps_channels=True)


def split_cuts(an: Analysis) -> dict[str, list[int]]:
    """Conv outputs that a channel-axis Split cuts, with the part sizes (YOLO's C2f: conv ->
    SiLU -> Split in halves). The conv then creates one channel space per part, so a part
    can be tied to a residual Add on its own instead of blocking the whole conv. Only a
    chain where each tensor has that one reader is followed: a cut never changes what
    another consumer of the conv sees."""
    readers, writers = an.readers, an.writers
    cuts: dict[str, list[int]] = {}
    for node in an.graph.node:
        shape = an.shape(node.input[0]) if node.op_type == "Split" else None
        if shape is None or len(shape) < 2 or attribute(node, "axis", 0) % len(shape) != 1:
            continue
        tensor = node.input[0] if len(readers[node.input[0]]) == 1 else None
        while tensor is not None and (writer := writers.get(tensor)) is not None:
            if writer.op_type == "Conv":
                cuts[tensor] = _split_sizes(an, node, shape[1])
                break
            tensor = _channelwise_input(writer, writers, readers)
    return cuts


def _channelwise_input(node: onnx.NodeProto, writers, readers) -> str | None:
    """The input a channel-wise op passes on (its first, or x in SiLU's x * Sigmoid(x)),
    when nothing else reads it; else None."""
    if node.op_type in _CHANNELWISE:
        return node.input[0] if len(readers[node.input[0]]) == 1 else None
    if node.op_type == "Mul" and len(node.input) == 2:
        for x, gate in (node.input, node.input[::-1]):
            writer = writers.get(gate)
            if writer is not None and writer.op_type == "Sigmoid" and writer.input[0] == x:
                return x if len(readers[x]) == 2 and len(readers[gate]) == 1 else None
    return None


class Split(Rule):
    """On the channel axis each output is a sub-range; the split sizes are rewritten."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        axis = attribute(node, "axis", 0) % source.rank
        if axis != source.axis:
            for name in node.output:
                an.set_layout(name, source)
            return
        offset = 0
        for name, size in zip(node.output, _split_sizes(an, node, source.size), strict=True):
            part = source.sub_range(offset, offset + size)
            if part is None:
                an.block(source, f"Split '{label(node, index)}' cuts through a flattened channel")
                return
            an.set_layout(name, part)
            offset += size
        an.edit(self, index)

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        node = graph.node[index]
        sizes = [len(kept_positions(an.layout(name), kept)) for name in node.output]
        new_split = numpy_helper.from_array(np.array(sizes, np.int64), f"{node.output[0]}.split")
        for attr in list(node.attribute):
            if attr.name in ("split", "num_outputs"):
                node.attribute.remove(attr)
        if an.graph_opset >= 13:
            graph.initializer.append(new_split)
            while len(node.input) < 2:
                node.input.append("")
            node.input[1] = new_split.name
        else:
            node.attribute.append(onnx.helper.make_attribute("split", sizes))


class Slice(Rule):
    """A step-1 slice of the channel axis is a sub-range; its starts/ends are rewritten."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        consts = [an.const(n) if n else None for n in node.input[1:5]]
        starts, ends = consts[0], consts[1]
        axes = consts[2] if len(consts) > 2 and consts[2] is not None else np.arange(len(starts))
        steps = consts[3] if len(consts) > 3 and consts[3] is not None else np.ones(len(starts))
        where = f"Slice '{label(node, index)}'"
        if starts is None or ends is None:
            an.block(source, f"{where} has computed bounds")
            return
        axes = [int(a) % source.rank for a in axes]
        if source.axis not in axes:
            an.set_layout(node.output[0], source)
            return
        i = axes.index(source.axis)
        start, stop, _ = slice(int(starts[i]), int(ends[i]), int(steps[i])).indices(source.size)
        part = source.sub_range(start, stop) if steps[i] == 1 else None
        if part is None:
            an.block(source, f"{where} strides over or cuts through channels")
            return
        an.set_layout(node.output[0], part)
        an.slice_bounds[index] = (i, start)
        an.edit(self, index)

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        node = graph.node[index]
        i, start = an.slice_bounds[index]
        source = an.layout(node.input[0])
        new_start = len(kept_positions(source.sub_range(0, start), kept))
        new_stop = new_start + len(kept_positions(an.layout(node.output[0]), kept))
        for position, value in ((1, new_start), (2, new_stop)):
            bounds = an.const(node.input[position]).copy()
            bounds[i] = value
            name = f"{node.output[0]}.{'starts' if position == 1 else 'ends'}"
            graph.initializer.append(numpy_helper.from_array(bounds, name))
            node.input[position] = name


class Flatten(Rule):
    """Flatten at the channel axis: each channel becomes H*W consecutive features."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        shape = an.shape(node.input[0])
        axis = attribute(node, "axis", 1) % source.rank
        if shape is None or axis != source.axis:
            an.block(source, f"Flatten '{label(node, index)}' merges the channel axis")
            return
        repeat = math.prod(shape[axis + 1 :])
        an.set_layout(node.output[0], source.repeated(repeat).with_axis(1, 2))


class Reshape(Rule):
    """Three exact cases: merging the channel axis with the trailing axes (a flatten, or
    heads back into channels), regrouping the axes after it (x.flatten(2) of a patch
    embedding, size-1 axes added or removed), and splitting a space
    of whole heads into [heads, head size] (see `rules.attention`). The target's channel
    entry is rewritten, in the shape constant or in the constant piece of a target that a
    Concat builds at run time (x.view(b, t, heads, -1))."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        before, after = an.shape(node.input[0]), an.shape(node.output[0])
        where = f"Reshape '{label(node, index)}'"
        a = source.axis
        if before is None or after is None or after[:a] != before[:a]:
            an.block(source, f"{where} moves the channel axis")
            return
        entry = _channel_entry(an, node, a)
        if entry is None:
            an.block(source, f"{where} takes the channel count from a shape computed at run time")
            return
        trailing = math.prod(before[a + 1 :])
        if len(after) == a + 1:
            layout = source.repeated(trailing).with_axis(a, a + 1)
        elif after[a] == before[a] and math.prod(after[a + 1 :]) == trailing:
            layout = source.with_axis(a, len(after))  # the axes after the channels regroup
        elif (layout := _heads(source, before, after)) is None:
            an.block(source, f"{where} splits the channel axis")
            return
        an.set_layout(node.output[0], layout)
        if entry[2][entry[1]] > 0:
            an.reshape_entries[index] = entry
            an.edit(self, index)
            if an.const(node.input[1]) is None:
                an.shared_targets.setdefault(node.input[1], []).append(layout)

    def rewrite(self, an: Analysis, graph: onnx.GraphProto, index: int, kept: KeepLookup) -> None:
        node = graph.node[index]
        (owner, position), offset, value = an.reshape_entries[index]
        holder = graph.node[owner]
        target = value.copy()
        target[offset] = len(kept_positions(an.layout(node.output[0]), kept))
        name = f"{node.output[0]}.shape"
        graph.initializer.append(numpy_helper.from_array(target, name))
        holder.input[position] = name


def couple_shared_targets(an: Analysis) -> None:
    """After the walk: Reshapes reading one computed target keep the same channels; when a
    reader of it is not a Reshape whose channels are tracked, none may change it."""
    for target, layouts in an.shared_targets.items():
        readers = an.readers[target]
        reason = f"the Reshape target '{target}' is shared with a Reshape it does not size"
        if len(readers) != len(layouts):
            for lay in layouts:
                an.block(lay, reason)
            continue
        for other in layouts[1:]:
            an.couple(layouts[0], other, reason)


def _heads(source: Layout, before: list[int], after: list[int]) -> Layout | None:
    """[.., H * D, ..] -> [.., H, D, ..] of a layout whose every element is D channels."""
    a = source.axis
    if len(after) != len(before) + 1 or after[a + 2 :] != before[a + 1 :]:
        return None
    size = after[a + 1]
    if after[a] * size != before[a] or any(s.repeat % size for s in source.segments):
        return None
    segments = tuple(Segment(s.space, s.start, s.stop, s.repeat // size) for s in source.segments)
    return Layout(a, len(after), segments)


def _channel_entry(
    an: Analysis, node: onnx.NodeProto, position: int
) -> tuple[tuple[int, int], int, np.ndarray] | None:
    """Where entry `position` of Reshape `node`'s target is held: ((node index, input),
    offset, the constant there). The target itself when constant; else the piece of the
    Concat that builds it at run time (x.view(x.size(0), -1) gives
    Concat(Unsqueeze(Gather(Shape)), [-1])) when only this Reshape reads that Concat: a
    constant piece, or a one-entry computed piece, which is replaced by a constant (a
    channel count is static: x.view(b, t, x.size(2)) merging heads back). A Concat several
    Reshapes read (the dynamo exporter shares Q, K and V's) is rewritten once for all, so
    `couple_shared_targets` ties their channels. None otherwise."""
    index = an.node_index(node.output[0])
    target = an.const(node.input[1])
    if target is not None:
        return (index, 1), position, target
    writer = an.writers.get(node.input[1])
    after = an.shape(node.output[0])
    if writer is None or writer.op_type != "Concat":
        return None
    offset = 0
    for piece_index, piece in enumerate(writer.input):
        shape = an.shape(piece)
        if shape is None or len(shape) != 1:
            return None
        if offset <= position < offset + shape[0]:
            value = an.const(piece)
            own = _own_size(an, piece, node.input[0]) if value is None else None
            if own is not None and own[position - offset] == position:
                value = np.full(shape[0], -1, np.int64)  # the pruned size, read at run time
            elif value is None and shape == [1]:
                value = np.array([after[position]], np.int64)
            elif value is None:
                return None
            return (an.node_index(writer.output[0]), piece_index), position - offset, value
        offset += shape[0]
    return None


class Shape(Rule):
    """Shape reads sizes, not values: harmless while only other axes' sizes are used
    (x.size(0) in x.view(x.size(0), -1), x.size()[:-1] in Hugging Face's head split), or
    while the channel count only goes back into a Reshape of the same tensor
    (x.flatten(2) gives Reshape(x, Concat(Shape(x)[:2], [-1])): it follows the pruning).
    Reading the channel count for anything else blocks, since pruning changes it."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        exposed = list(range(source.rank))[attribute(node, "start", 0) : attribute(node, "end")]
        readers = an.readers[node.output[0]]
        frozen = []
        for reader in readers:
            axes = _axes_read(an, reader, exposed)
            if axes is None:
                break
            if source.axis not in axes or _only_reshapes(an, reader, node.input[0]):
                continue
            if axes != [source.axis] or reader.op_type != "Gather":
                break
            if sized_reshapes(an, reader) is None:
                break
            frozen.append(reader)
        else:
            if readers:
                count = an.shape(node.input[0])[source.axis]
                for reader in frozen:
                    freeze(an, reader, count)
                return
        an.block(source, f"Shape '{label(node, index)}' passes on the channel count")


def _only_reshapes(an: Analysis, reader: onnx.NodeProto, tensor: str) -> bool:
    """The sizes `reader` takes reach only targets of Reshapes of `tensor` (through an
    Unsqueeze and the target's Concat); whether they land where they were read is the
    Reshape's check (`_own_size`)."""
    pieces = [reader.output[0]]
    if [r.op_type for r in an.readers[pieces[0]]] == ["Unsqueeze"]:
        pieces = [an.readers[pieces[0]][0].output[0]]
    concats = an.readers[pieces[0]]
    return bool(concats) and all(
        concat.op_type == "Concat"
        and all(
            r.op_type == "Reshape" and r.input[0] == tensor for r in an.readers[concat.output[0]]
        )
        for concat in concats
    )


def _own_size(an: Analysis, piece: str, tensor: str) -> list[int] | None:
    """The axes of `tensor` whose sizes target piece `piece` holds, when it is read off
    `tensor`'s Shape by a Slice or Gather (then maybe an Unsqueeze); else None."""
    writer = an.writers.get(piece)
    if writer is not None and writer.op_type == "Unsqueeze":
        writer = an.writers.get(writer.input[0])
    shape = an.writers.get(writer.input[0]) if writer is not None else None
    if shape is None or shape.op_type != "Shape" or shape.input[0] != tensor:
        return None
    rank = an.rank(tensor)
    exposed = list(range(rank))[attribute(shape, "start", 0) : attribute(shape, "end")]
    return _axes_read(an, writer, exposed)


def _axes_read(an: Analysis, reader: onnx.NodeProto, exposed: list[int]) -> list[int] | None:
    """The input axes whose sizes a Gather of constant positions or a Slice of constant
    bounds takes from a shape holding the sizes of `exposed`; None for any other reader."""
    if reader.op_type == "Gather" and attribute(reader, "axis", 0) == 0:
        positions = an.const(reader.input[1])
        if positions is not None:
            return [exposed[int(p)] for p in np.atleast_1d(positions)]
    if reader.op_type == "Slice" and len(reader.input) >= 3:
        bounds = [an.const(name) if name else None for name in reader.input[1:5]]
        if all(b is not None for b in bounds[:2]) and all(
            b is None or b.tolist() == [v] for b, v in zip(bounds[2:], (0, 1), strict=False)
        ):
            return exposed[int(bounds[0][0]) : int(bounds[1][0])]
    return None


class Gather(Rule):
    """Gather along another axis than the channels' (a ViT's class token, x[:, 0]) picks
    positions, not channels: the channel axis moves by the indices' rank minus one."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        if source is None or an.layout(node.input[1]) is not None:
            block_inputs(an, node, f"Gather '{label(node, index)}' indexes by a tracked tensor")
            return
        axis = attribute(node, "axis", 0) % source.rank
        indices = an.shape(node.input[1])
        if axis == source.axis or indices is None:
            an.block(source, f"Gather '{label(node, index)}' picks channels")
            return
        shift = len(indices) - 1 if source.axis > axis else 0
        rank = source.rank + len(indices) - 1
        an.set_layout(node.output[0], source.with_axis(source.axis + shift, rank))


class Squeeze(Rule):
    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        axes = attribute_or_input(an, node, "axes", 1)
        shape = an.shape(node.input[0])
        if axes is None and shape is not None:
            axes = [i for i, d in enumerate(shape) if d == 1]
        squeezed = None if axes is None else without_axes(source, axes)
        if squeezed is None:
            an.block(source, f"Squeeze '{label(node, index)}' may remove the channel axis")
            return
        an.set_layout(node.output[0], squeezed)


class Unsqueeze(Rule):
    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        axes = attribute_or_input(an, node, "axes", 1)
        if axes is None:
            an.block(source, f"Unsqueeze '{label(node, index)}' has computed axes")
            return
        rank = source.rank + len(axes)
        axis = source.axis
        for a in sorted(x % rank for x in axes):
            if a <= axis:
                axis += 1
        an.set_layout(node.output[0], source.with_axis(axis, rank))


class Transpose(Rule):
    """The channel axis moves to wherever `perm` puts it."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        perm = attribute(node, "perm") or list(reversed(range(source.rank)))
        an.set_layout(node.output[0], source.with_axis(list(perm).index(source.axis), source.rank))
