"""Time one layer against its factorised form in onnxruntime, at the layer's real shapes.

MACs are a poor proxy on CPUs: small layers are bound by memory traffic and each extra
node costs a pass over its activations, so `--measure` keeps a factorisation only when
onnxruntime actually runs it faster.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.decompose.layer import Layer, Replacement

#: Interleaved timed runs and warm-up rounds per layer: a layer is milliseconds at most.
RUNS = 30
WARMUP = 5
#: A factorisation is kept only when at least this much faster, so noise cannot flip it.
MIN_SPEEDUP = 1.05


def measure_speedup(
    model: onnx.ModelProto, layer: Layer, replacement: Replacement, shapes: dict[str, list[int]]
) -> float:
    """Median latency of the original layer over that of `replacement` (>1: faster)."""
    weights = {t.name: t for t in model.graph.initializer}
    original = [weights[name] for name in layer.node.input if name in weights]
    feeds = _feeds(layer, weights, shapes)
    before = _layer_model(model, [layer.node], original, layer, feeds)
    after = _layer_model(
        model, replacement.nodes, [*original, *replacement.initializers], layer, feeds
    )
    result = bench(
        [("original", before, feeds), ("factorised", after, feeds)], runs=RUNS, warmup=WARMUP
    )
    return result.latencies[1].speedup


def _feeds(layer: Layer, weights: dict, shapes: dict[str, list[int]]) -> dict[str, np.ndarray]:
    """Random activations for the layer's non-constant inputs (a Gemm C may be one)."""
    rng = np.random.default_rng(0)
    return {
        name: rng.standard_normal(shapes[name]).astype(layer.weight.dtype)
        for name in layer.node.input
        if name and name not in weights
    }


def _layer_model(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    layer: Layer,
    feeds: dict[str, np.ndarray],
) -> onnx.ModelProto:
    """A model of just `nodes`, fed `feeds`, writing the layer's output."""
    elem = helper.np_dtype_to_tensor_dtype(layer.weight.dtype)
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes,
        f"{layer.name} alone",
        [helper.make_tensor_value_info(n, elem, list(v.shape)) for n, v in feeds.items()],
        [helper.make_tensor_value_info(layer.node.output[0], elem, layer.out_shape)],
        initializer=[t for t in initializers if t.name in used],
    )
    return helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
