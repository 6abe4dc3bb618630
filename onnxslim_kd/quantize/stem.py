"""The stem: a first Conv on an image input of few channels, with its activation, which
the speed gate also times in FP32 because integer kernels are often slower there.

A 3x3 RGB stem reduces over 27 values per output, so an integer kernel saves little
arithmetic while it still pays for the wide activation it quantizes and re-lays out:
on an AVX512-VNNI host the detector's stem ran 0.33 ms as QLinearConv against 0.14 ms as
a float Conv, and keeping the stems of the detectors, mobilenet_v2/v3 and efficientnet_b0
in FP32 made the whole model 4-12% faster, while resnet18's 7x7 stem (147 values) made it
31% slower and textline's 44% (benchmarks/quantize/stem.py). So this names a candidate,
never a rule: `quantize` keeps it in FP32 only when that model is measured faster.
"""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.catalog import CATALOG
from onnxslim_kd.graph.io import model_inputs
from onnxslim_kd.graph.walk import consumers

#: Input channels up to which a Conv on a graph input is a stem (gray, RGB, RGBA).
STEM_MAX_CHANNELS = 4

#: Why the stem is in `excluded` (the JSON) when the variant that keeps it in FP32 is chosen.
STEM_REASON = "speed: the stem on a few-channel image input, timed in FP32 and in INT8"

#: Elementwise ops by a constant that exporters put between the image and the stem.
_NORMALIZATION = frozenset({"Sub", "Div", "Mul", "Add"})

#: Elementwise ops of one input that carry the stem's output on (ReLU, ReLU6, HardSwish...).
_UNARY = frozenset(op for op, info in CATALOG.items() if info.prune == "Unary")


def stem_region(model: onnx.ModelProto) -> list[str]:
    """Names of the stem: an input's normalization (Sub/Div/Mul/Add by constants, as
    exporters write `(x - mean) / std` or `x / 255`), the Conv after it, and the activation
    after that (a unary chain, or SiLU as x * Sigmoid(x)); empty when no Conv reads a
    graph input of <= STEM_MAX_CHANNELS."""
    readers = consumers(model.graph)
    found = _stem_conv(model, readers)
    if found is None:
        return []
    conv, normalization = found
    region, tensor = [*normalization, conv.name], conv.output[0]
    while True:
        after = readers.get(tensor, [])
        if len(after) == 1 and after[0].op_type in _UNARY:
            region.append(after[0].name)
            tensor = after[0].output[0]
        elif silu := _silu(readers, tensor):
            region += [node.name for node in silu]
            tensor = silu[1].output[0]
        else:
            return region


def _stem_conv(
    model: onnx.ModelProto, readers: dict[str, list[onnx.NodeProto]]
) -> tuple[onnx.NodeProto, list[str]] | None:
    """The first Conv on a few-channel graph input, through its normalization, and the
    names of the normalization's nodes."""
    weights = {init.name for init in model.graph.initializer}
    for spec in model_inputs(model):
        channels = spec.dims[1] if len(spec.dims) == 4 else None
        if not isinstance(channels, int) or not 1 <= channels <= STEM_MAX_CHANNELS:
            continue
        tensor, normalization = spec.name, []
        while True:  # readers such as a Shape (of a dynamic-size input) are passed over
            after = readers.get(tensor, [])
            conv = next((n for n in after if n.op_type == "Conv" and n.input[0] == tensor), None)
            if conv is not None:
                return conv, normalization
            steps = [n for n in after if n.op_type in _NORMALIZATION
                     and {i for i in n.input if i != tensor} <= weights]  # fmt: skip
            if len(steps) != 1:
                break
            tensor, normalization = steps[0].output[0], [*normalization, steps[0].name]
    return None


def _silu(
    readers: dict[str, list[onnx.NodeProto]], tensor: str
) -> tuple[onnx.NodeProto, onnx.NodeProto] | None:
    """(Sigmoid, Mul) when `tensor` is read only by x -> Sigmoid and x * Sigmoid(x)."""
    after = readers.get(tensor, [])
    by_type = {node.op_type: node for node in after}
    sigmoid, mul = by_type.get("Sigmoid"), by_type.get("Mul")
    if len(after) != 2 or sigmoid is None or mul is None:
        return None
    pair = sorted(mul.input) == sorted([tensor, sigmoid.output[0]])
    return (sigmoid, mul) if pair and readers[sigmoid.output[0]] == [mul] else None
