"""Physically remove pruned channels: slice initializers, then let rules edit attributes."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.cleanup import cleanup
from onnxslim_kd.graph.shape_inference import reinfer_shapes
from onnxslim_kd.graph.walk import clone, node_label
from onnxslim_kd.prune.analysis import Analysis, ParamSlice
from onnxslim_kd.prune.budget import keep_lookup
from onnxslim_kd.prune.layout import kept_positions, take


def apply_keep(an: Analysis, kept: dict[int, np.ndarray]) -> onnx.ModelProto:
    """A copy of the analysed model with only the kept channels of every space."""
    model = clone(an.model)
    graph = model.graph
    lookup = keep_lookup(an, kept)
    grouped: dict[tuple[int, int], list[ParamSlice]] = defaultdict(list)
    for item in an.slices:
        grouped[(item.node, item.input_index)].append(item)
    readers = Counter(name for node in graph.node for name in node.input if name)
    readers.update(output.name for output in graph.output)
    tensors = {t.name: t for t in graph.initializer}
    made: dict[tuple, str] = {}  # (source, shape, bytes) of a sliced tensor -> its name
    for (index, position), items in grouped.items():
        cuts = [(item.axis, kept_positions(item.layout, lookup)) for item in items]
        cuts = [(axis, pos) for (axis, pos), item in zip(cuts, items, strict=True)
                if len(pos) != item.layout.size]  # fmt: skip
        if not cuts:
            continue
        node = graph.node[index]
        value = numpy_helper.to_array(tensors[node.input[position]])
        for axis, positions in dict(cuts).items():
            value = take(value, axis, positions)
        key = (node.input[position], value.shape, value.dtype.str, value.tobytes())
        if key in made:  # the same slice of a shared weight: share the slice too
            node.input[position] = made[key]
            continue
        name = _private_name(node, index, position, readers)
        tensors[name] = numpy_helper.from_array(np.ascontiguousarray(value), name)
        graph.initializer.append(tensors[name])
        node.input[position] = made[key] = name
    _replace_initializers(graph, tensors)
    for rule, index in an.edits:
        rule.rewrite(an, graph, index, lookup)
    cleanup(graph)
    return reinfer_shapes(model)


def _private_name(node: onnx.NodeProto, index: int, position: int, readers: Counter) -> str:
    """A name only this input reads, so shared initializers are never sliced for others."""
    base = node.input[position]
    if readers[base] <= 1:
        return base
    suffix = re.sub(r"[^A-Za-z0-9_.]", "_", node_label(node, index))
    return f"{base}.pruned.{suffix}.{position}"


def _replace_initializers(graph: onnx.GraphProto, tensors: dict[str, onnx.TensorProto]) -> None:
    """Keep one initializer per name, the latest written (sliced ones replace originals)."""
    latest = {t.name: tensors[t.name] for t in graph.initializer}
    del graph.initializer[:]
    graph.initializer.extend(latest.values())
