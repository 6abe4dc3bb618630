"""Channel dependency analysis: walk the graph once, letting one rule per op type say
how channels flow through it (see `rules/`). The result lists every channel space, the
initializer slices and attribute edits that pruning it implies, and why spaces that
cannot be pruned are blocked. Unknown ops block what they touch; nothing is guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.load import opset_of
from onnxslim_kd.graph.shape_inference import measured_values, static_shapes
from onnxslim_kd.graph.walk import all_graphs, consumers, node_label, producers, subgraphs
from onnxslim_kd.prune.layout import Layout, Segment
from onnxslim_kd.prune.spaces import Spaces


@dataclass(frozen=True)
class ParamSlice:
    """Initializer input `input_index` of node `node` is indexed by `layout` on `axis`."""

    node: int
    input_index: int
    axis: int
    layout: Layout


class Analysis:
    """Shared state the rules read and write while the graph is walked in order."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, list[int]]) -> None:
        self.model = model
        self.graph = model.graph
        self.spaces = Spaces()
        self.layouts: dict[str, Layout] = {}
        self.slices: list[ParamSlice] = []
        self._tied: dict[tuple[str, int], tuple[Layout, str]] = {}  # (weight, axis) -> first use
        self.edits: list[tuple[object, int]] = []  # (rule, node index) with attribute rewrites
        self.origins: dict[int, list[int]] = {}  # space -> node indices that created it
        self.node_layouts: dict[int, tuple[Layout | None, Layout | None]] = {}
        self.slice_bounds: dict[int, tuple[int, int]] = {}  # Slice node -> (axis index, start)
        # Reshape node -> ((node, input) holding its target's channel entry, offset, value)
        self.reshape_entries: dict[int, tuple[tuple[int, int], int, np.ndarray]] = {}
        self.shared_targets: dict[str, list[Layout]] = {}  # computed target -> its Reshapes
        self.graph_opset = opset_of(model)
        self.input_shapes = shapes
        self.shapes = static_shapes(model, shapes)
        self.initializers = {t.name: t for t in model.graph.initializer}
        self._constants: dict[str, np.ndarray] = {}
        self.cuts: dict[str, list[int]] = {}  # conv output -> the Split's part sizes
        self.heads: dict[str, tuple[int, int]] = {}  # projection output -> (heads, head size)
        self.readers = consumers(model.graph)  # the graph is read, never changed, while walked
        self.writers = producers(model.graph)

    # -- reading the graph ---------------------------------------------------------------
    def layout(self, name: str) -> Layout | None:
        return self.layouts.get(name)

    def shape(self, name: str) -> list[int] | None:
        return self.shapes.get(name)

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    def node_index(self, output: str) -> int:
        """Position in the graph of the node writing tensor `output`."""
        return next(i for i, n in enumerate(self.graph.node) if output in n.output)

    def measured(self, name: str) -> np.ndarray | None:
        """A size tensor computed at run time (an Expand target), read off one run."""
        return measured_values(self.model, self.input_shapes, [name]).get(name)

    def const(self, name: str) -> np.ndarray | None:
        """Value of an initializer (cached), or None for activations."""
        if name not in self.initializers:
            return None
        if name not in self._constants:
            self._constants[name] = numpy_helper.to_array(self.initializers[name])
        return self._constants[name]

    # -- what rules declare --------------------------------------------------------------
    def set_layout(self, name: str, layout: Layout | None) -> None:
        if layout is not None and name:
            self.layouts[name] = layout

    def new_space(self, size: int, index: int, axis: int, rank: int) -> Layout:
        """Fresh channels created by node `index`: one space, or one per part where a
        Split cuts them (see rules.structure.split_cuts), or one element per attention
        head when a Reshape splits them into heads (see rules.attention.head_splits)."""
        node = self.graph.node[index]
        heads = self.heads.get(node.output[0])
        if heads is not None and heads[0] * heads[1] == size:
            space = self.spaces.new(heads[0], f"{node_label(node, index)} heads")
            self.spaces[space].unit = heads[1]
            self.origins.setdefault(space, []).append(index)
            return Layout(axis, rank, (Segment(space, 0, heads[0], heads[1]),))
        parts = self.cuts.get(node.output[0]) if axis == 1 else None
        if not parts or sum(parts) != size or min(parts) < 1:
            parts = [size]
        segments = []
        for number, part in enumerate(parts):
            suffix = f" part {number + 1}/{len(parts)}" if len(parts) > 1 else ""
            space = self.spaces.new(part, node_label(node, index) + suffix)
            self.origins.setdefault(space, []).append(index)
            segments.append(Segment(space, 0, part))
        return Layout(axis, rank, tuple(segments))

    def fixed(self, size: int, axis: int, rank: int, reason: str) -> Layout:
        """Channels that must not change (graph inputs and other untracked tensors)."""
        space = self.spaces.new(size, reason, blocked=reason)
        return Layout(axis, rank, (Segment(space, 0, size),))

    def slice_param(self, index: int, input_index: int, axis: int, layout: Layout) -> None:
        """Declare that an initializer input is indexed by `layout` along `axis`."""
        node = self.graph.node[index]
        value = self.const(node.input[input_index])
        if value is None:
            self.block(layout, f"'{node_label(node, index)}' has a computed per-channel input")
            return
        self.slices.append(ParamSlice(index, input_index, axis, layout))
        self._tie(node.input[input_index], axis, layout, value, node_label(node, index))

    def _tie(self, name: str, axis: int, layout: Layout, value: np.ndarray, user: str) -> None:
        """A weight several nodes read (tied by the exporter) keeps the same channels in all
        of them, so it stays one tensor. A uniform one (the zeros an exporter shares
        between unrelated layers) ties nothing: its slices are equal whatever is kept."""
        if np.all(value == value.reshape(-1)[0]):
            return
        first = self._tied.setdefault((name, axis), (layout, user))
        if first[1] != user:
            self.couple(first[0], layout, f"'{user}' and '{first[1]}' share the weight '{name}'")

    def edit(self, rule: object, index: int) -> None:
        self.edits.append((rule, index))

    def block(self, layout: Layout, reason: str) -> None:
        for seg in layout.segments:
            self.spaces.block(seg.space, reason)

    def mark_lossy(self, layout: Layout, reason: str) -> None:
        """Pruning these channels changes results beyond the removed channels' share."""
        for seg in layout.segments:
            lossy = self.spaces[seg.space].lossy
            if reason not in lossy:
                lossy.append(reason)

    def couple(self, a: Layout, b: Layout, reason: str) -> bool:
        """Tie two layouts channel by channel; block both when their segments do not line up."""
        pairs = list(zip(a.segments, b.segments, strict=False))
        aligned = len(a.segments) == len(b.segments) and all(
            x.width == y.width and x.repeat == y.repeat for x, y in pairs
        )
        if aligned and all(x == y or (self.is_whole(x) and self.is_whole(y)) for x, y in pairs):
            for x, y in pairs:
                self.spaces.union(x.space, y.space)
            return True
        self.block(a, reason)
        self.block(b, reason)
        return False

    def is_whole(self, seg: Segment) -> bool:
        return seg.start == 0 and seg.stop == self.spaces[seg.space].size


def analyze(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> Analysis:
    """Run every node's rule in graph order; block what reaches outputs or unknown ops."""
    from onnxslim_kd.prune.rules import rule_for
    from onnxslim_kd.prune.rules.attention import head_splits
    from onnxslim_kd.prune.rules.structure import couple_shared_targets, split_cuts

    analysis = Analysis(model, shapes)
    analysis.cuts = split_cuts(analysis)
    analysis.heads = head_splits(analysis)
    for index, node in enumerate(model.graph.node):
        tracked = [lay for name in node.input if (lay := analysis.layout(name))]
        rule = rule_for(node.op_type) if node.domain in ("", "ai.onnx") else None
        label = node_label(node, index)
        if rule is None:
            for lay in tracked:
                analysis.block(lay, f"{node.op_type} node '{label}' is not understood")
            _block_subgraph_reads(analysis, node, label)
        elif tracked or rule.creates_channels:
            rule.propagate(analysis, node, index)
    couple_shared_targets(analysis)
    for output in model.graph.output:
        if (lay := analysis.layout(output.name)) is not None:
            analysis.block(lay, f"reaches graph output '{output.name}'")
    return analysis


def _block_subgraph_reads(analysis: Analysis, node: onnx.NodeProto, label: str) -> None:
    for sub in subgraphs(node):
        for graph in all_graphs(sub):
            for inner in graph.node:
                for name in inner.input:
                    if (lay := analysis.layout(name)) is not None:
                        analysis.block(lay, f"read inside the subgraph of '{label}'")
