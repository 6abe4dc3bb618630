"""Free the batch axis of a model exported with a fixed batch (often 1), verified.

torchvision/timm models exported without `dynamic_axes` pin the batch on every input
and output and bake it into Reshape targets (`x.view(1, -1)` becomes the constant
[1, -1]). Training a student one sample at a time is slow, and feeding a teacher a
mini-batch fails, so the trainer runs a copy whose batch axis is symbolic. The copy is
kept only when, at twice the batch, it computes exactly what the original computes on
the two halves; otherwise the caller falls back to the model's own batch.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.io import fixed_batch, model_inputs, resolve_shapes
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.walk import attribute, clone, consumers

#: Symbol the freed batch axis gets.
BATCH_SYMBOL = "batch"


def free_batch(
    model: onnx.ModelProto, shapes: dict[str, list[int]] | None = None
) -> onnx.ModelProto | None:
    """A copy of `model` whose fixed batch axis is dynamic, or None when that copy is not
    exactly equivalent (checked at twice the batch). A dynamic-batch model comes back as is.

    `shapes` gives concrete sizes for other dynamic dims (spatial), for the check.
    """
    batch = fixed_batch(model)
    if batch is None:
        return model
    freed = clone(model)
    graph = freed.graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == batch:
            dims[0].dim_param = BATCH_SYMBOL
    del graph.value_info[:]  # inferred at the old batch
    _rewrite_reshape_targets(graph, batch)
    return freed if _equivalent(model, freed, batch, shapes or {}) else None


def _rewrite_reshape_targets(graph: onnx.GraphProto, batch: int) -> None:
    """A constant Reshape target that starts with the batch copies axis 0 instead (0)."""
    readers = consumers(graph)
    constants = {t.name: t for t in graph.initializer}
    constants |= {
        n.output[0]: a.t for n in graph.node if n.op_type == "Constant"
        for a in n.attribute if a.name == "value"
    }  # fmt: skip
    for node in graph.node:
        if node.op_type != "Reshape" or attribute(node, "allowzero", 0):
            continue
        tensor = constants.get(node.input[1])
        if tensor is None or any(r.op_type != "Reshape" for r in readers[node.input[1]]):
            continue
        target = numpy_helper.to_array(tensor)
        if target.ndim == 1 and len(target) and target[0] == batch:
            rewritten = target.copy()
            rewritten[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(rewritten, tensor.name))


def _equivalent(
    model: onnx.ModelProto, freed: onnx.ModelProto, batch: int, shapes: dict[str, list[int]]
) -> bool:
    """Does `freed` on two stacked batches give the original's outputs on each?"""
    rng = np.random.default_rng(0)
    try:
        concrete = resolve_shapes(model, shapes, batch)
        halves = []
        for _ in range(2):
            feeds = {}
            for spec in model_inputs(model):
                shape = concrete[spec.name]
                if np.issubdtype(spec.dtype, np.floating):
                    feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
                else:
                    feeds[spec.name] = np.zeros(shape, spec.dtype)
            halves.append(feeds)
        original = make_session(model)
        expected = [original.run(None, feeds) for feeds in halves]
        stacked = {name: np.concatenate([h[name] for h in halves]) for name in halves[0]}
        got = make_session(freed).run(None, stacked)
    except Exception:  # unknown shapes or a graph that cannot run at 2x: keep the batch
        return False
    for index, value in enumerate(got):
        want = np.concatenate([outputs[index] for outputs in expected])
        if value.shape != want.shape or not np.allclose(value, want, rtol=1e-4, atol=1e-5):
            return False
    return True
