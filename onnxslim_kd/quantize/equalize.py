"""Cross-layer equalization: even out per-channel weight ranges across Conv -> Conv pairs.

One INT8 scale per tensor leaves a channel whose weights span 0.01 a fraction of a step
while its neighbour spans 10, and depthwise convolutions, trained without any pressure to
keep their channels alike, are the worst case (Nagel et al., 2019, "Data-Free
Quantization", section 4.1). For Conv A -> f -> Conv B with f(x / s) = f(x) / s for s > 0
(Relu, LeakyRelu, or nothing), dividing A's output channel c (weights and bias) by s_c and
multiplying B's input channel c by s_c computes the same function in float. The paper's
s_c = sqrt(r1_c / r2_c), with r1_c the range of A's output channel c and r2_c that of B's
input channel c, gives both the range sqrt(r1_c * r2_c). Chains A -> B -> C are equalized
pair by pair, for rounds until the scales stop moving. No data is needed, and the graph
keeps its nodes: only the weights change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim_kd.graph.walk import attribute, clone, consumers, node_label, producers
from onnxslim_kd.quantize.records import range_ratio, rounded

#: Activations a positive per-channel scale passes through: f(x / s) = f(x) / s.
HOMOGENEOUS_OPS = frozenset({"Relu", "LeakyRelu"})
#: Rounds over all pairs at most; chains settle in a few.
MAX_ROUNDS = 20
#: A round whose every scale is within this of 1 (relative) ends the iteration.
CONVERGED = 1e-4


@dataclass
class Equalization:
    """What equalization did: pairs equalized ("A->B"), Conv pairs refused with the reason,
    rounds run (the last one finding the scales settled, unless MAX_ROUNDS stopped it), and
    the largest over the median channel range, averaged over the equalized channel axes
    (A's output channels, B's input channels), before and after."""

    pairs: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rounds: int = 0
    unevenness_before: float | None = None
    unevenness_after: float | None = None

    def as_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "skipped": self.skipped,
            "rounds": self.rounds,
            "range_ratio_before": rounded(self.unevenness_before),
            "range_ratio_after": rounded(self.unevenness_after),
        }


def describe_equalization(record: dict) -> str:
    """One line for the log and the report table, from Equalization.as_dict()."""
    if not record["pairs"]:
        return f"no Conv pair to equalize ({len(record['skipped'])} skipped)"
    return (
        f"{len(record['pairs'])} Conv pairs in {record['rounds']} rounds "
        f"({len(record['skipped'])} skipped), largest / median channel range "
        f"{record['range_ratio_before']} -> {record['range_ratio_after']}"
    )


@dataclass(frozen=True)
class _Pair:
    """An equalizable pair by its initializers; `axis` is B's input-channel weight axis
    (1, or 0 for a depthwise B, whose weight is [C, 1, k, k])."""

    label: str
    first_weight: str
    first_bias: str | None
    second_weight: str
    axis: int


@dataclass
class _Graph:
    """The lookups every pair check needs, built once per graph."""

    inits: dict[str, onnx.TensorProto]
    readers: dict[str, list[onnx.NodeProto]]
    writers: dict[str, onnx.NodeProto]
    outputs: set[str]
    labels: dict[str, str]

    @classmethod
    def of(cls, graph: onnx.GraphProto) -> _Graph:
        return cls(
            {t.name: t for t in graph.initializer},
            consumers(graph),
            producers(graph),
            {o.name for o in graph.output},
            {n.output[0]: node_label(n, i) for i, n in enumerate(graph.node) if n.output},
        )


def equalizable(model: onnx.ModelProto) -> tuple[list[_Pair], dict[str, str]]:
    """The Conv pairs that can be equalized, in graph order (so a chain's pairs come
    A->B before B->C), and "A->B" -> why not for every other Conv feeding a Conv
    directly or through one node."""
    view = _Graph.of(model.graph)
    pairs, skipped = [], {}
    for second in model.graph.node:
        chain = _chain(second, view) if second.op_type == "Conv" else None
        if chain is None:
            continue
        first, between = chain
        label = f"{view.labels[first.output[0]]}->{view.labels[second.output[0]]}"
        reason = _refusal(first, between, second, view)
        if reason:
            skipped[label] = reason
        else:
            pairs.append(_pair(label, first, second, view))
    return pairs, skipped


def equalize(model: onnx.ModelProto) -> tuple[onnx.ModelProto, Equalization]:
    """A copy of `model` with every equalizable Conv pair's weights rescaled (`model`
    itself when there is none, as smooth() does; never modified)."""
    pairs, skipped = equalizable(model)
    record = Equalization(pairs=[p.label for p in pairs], skipped=skipped)
    if not pairs:
        return model, record
    result = clone(model)
    inits = {t.name: t for t in result.graph.initializer}
    names = {n for p in pairs for n in (p.first_weight, p.first_bias, p.second_weight) if n}
    arrays = {n: numpy_helper.to_array(inits[n]).astype(np.float64) for n in names}
    record.unevenness_before = _unevenness(pairs, arrays)
    record.rounds = _iterate(pairs, arrays)
    record.unevenness_after = _unevenness(pairs, arrays)
    for name, values in arrays.items():
        dtype = onnx.helper.tensor_dtype_to_np_dtype(inits[name].data_type)
        inits[name].CopyFrom(numpy_helper.from_array(values.astype(dtype), name))
    return result, record


def _chain(
    second: onnx.NodeProto, view: _Graph
) -> tuple[onnx.NodeProto, onnx.NodeProto | None] | None:
    """(A, the node between or None) for the Conv feeding `second`'s data input directly
    or through one node; None when no Conv does."""
    source = view.writers.get(second.input[0])
    if source is None:
        return None
    if source.op_type == "Conv":
        return source, None
    convs = (view.writers.get(name) for name in source.input)
    first = next((node for node in convs if node is not None and node.op_type == "Conv"), None)
    return None if first is None else (first, source)


def _refusal(
    first: onnx.NodeProto, between: onnx.NodeProto | None, second: onnx.NodeProto, view: _Graph
) -> str | None:
    """Why the pair cannot be rescaled without changing the model, or None if it can."""
    if between is not None and between.op_type not in HOMOGENEOUS_OPS:
        return f"{between.op_type} between: not positively homogeneous"
    for tensor in [first.output[0], *([between.output[0]] if between else [])]:
        if tensor in view.outputs:
            return "graph output"
        if len(view.readers.get(tensor, [])) != 1:
            return "fans out"
    weights = [first.input[1], *first.input[2:3], second.input[1]]
    if any(name not in view.inits for name in weights if name):
        return "weight not an initializer"
    if any(len(view.readers[name]) != 1 or name in view.outputs for name in weights if name):
        return "weight shared"
    for conv in (first, second):
        if _channel_axis(conv, view) is None:
            return f"group {attribute(conv, 'group', 1)} conv: neither plain nor depthwise"
    return None


def _channel_axis(conv: onnx.NodeProto, view: _Graph) -> int | None:
    """The input-channel axis of a plain (1) or depthwise (0) Conv's weight; None for
    other grouped convs, whose input channels each feed only some outputs."""
    group = attribute(conv, "group", 1)
    dims = view.inits[conv.input[1]].dims
    if group == 1:
        return 1
    return 0 if group == dims[0] and dims[1] == 1 else None


def _pair(label: str, first: onnx.NodeProto, second: onnx.NodeProto, view: _Graph) -> _Pair:
    bias = first.input[2] if len(first.input) > 2 and first.input[2] else None
    return _Pair(label, first.input[1], bias, second.input[1], _channel_axis(second, view))


def _iterate(pairs: list[_Pair], arrays: dict[str, np.ndarray]) -> int:
    """Equalize round after round until the scales settle; the number of rounds run."""
    for rounds in range(1, MAX_ROUNDS + 1):
        if _equalize_round(pairs, arrays) < CONVERGED:
            return rounds
    return MAX_ROUNDS


def _equalize_round(pairs: list[_Pair], arrays: dict[str, np.ndarray]) -> float:
    """Rescale every pair once, in order; the largest relative scale change applied."""
    change = 0.0
    for pair in pairs:
        scale = _scale(
            _ranges(arrays[pair.first_weight], 0), _ranges(arrays[pair.second_weight], pair.axis)
        )
        arrays[pair.first_weight] = _scaled(arrays[pair.first_weight], 1 / scale, 0)
        if pair.first_bias:
            arrays[pair.first_bias] = arrays[pair.first_bias] / scale
        arrays[pair.second_weight] = _scaled(arrays[pair.second_weight], scale, pair.axis)
        change = max(change, float(np.abs(np.log(scale)).max()))
    return change


def _ranges(weight: np.ndarray, axis: int) -> np.ndarray:
    """max |W| per index of `axis`."""
    return np.abs(weight).max(axis=tuple(i for i in range(weight.ndim) if i != axis))


def _scale(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """s_c = sqrt(r1_c / r2_c); 1 where either range is 0 (a dead channel stays as it is)."""
    usable = (first > 0) & (second > 0)
    scale = np.ones_like(first)
    scale[usable] = np.sqrt(first[usable] / second[usable])
    return scale


def _scaled(weight: np.ndarray, scale: np.ndarray, axis: int) -> np.ndarray:
    shape = [1] * weight.ndim
    shape[axis] = -1
    return weight * scale.reshape(shape)


def _unevenness(pairs: list[_Pair], arrays: dict[str, np.ndarray]) -> float:
    """Mean over the pairs' equalized axes of largest / median channel range."""
    ratios = [
        range_ratio(_ranges(arrays[name], axis))
        for pair in pairs
        for name, axis in ((pair.first_weight, 0), (pair.second_weight, pair.axis))
    ]
    return float(np.mean(ratios))
