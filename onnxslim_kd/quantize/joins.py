"""Joins of tensors whose calibrated ranges differ by orders of magnitude stay in float.

A Concat (or Add/Sum) quantized in QDQ shares one scale between its inputs: a YOLO head
that concatenates box coordinates (0..320) with class scores (0..1) turns every score
into 0 or 1.27 at uint8. Such a join is kept in float, with every non-compute op after
it up to the graph outputs or the next compute op (a Sigmoid, a Transpose, a Reshape),
so the inputs are quantized each on its own scale and the mixed tensor never is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.walk import consumers

#: Inputs whose largest magnitudes differ by more than this are not put on one scale.
RANGE_RATIO = 32.0
_JOINS = frozenset({"Concat", "Add", "Sum"})
#: The ops quantized with integer kernels; the rest follow their inputs.
COMPUTE_OPS = ops_where(quantize="int8")


def calibrated_spans(cache: Path) -> dict[str, float]:
    """max(|lowest|, |highest|) of every calibrated tensor in onnxruntime's cache file."""
    data = json.loads(cache.read_text())["data"]
    return {
        name: float(np.abs([_value(entry["lowest"]), _value(entry["highest"])]).max())
        for name, entry in data.items()
        if "lowest" in entry and "highest" in entry
    }


def _value(stored):
    """A cached bound: an array record ({"data": [...]}, MinMax) or a plain number."""
    return stored["data"] if isinstance(stored, dict) else stored


def mismatched_joins(model: onnx.ModelProto, spans: dict[str, float]) -> dict[str, str]:
    """Node name -> why it stays in float: the joins over RANGE_RATIO and their tails."""
    readers = consumers(model.graph)
    kept: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type not in _JOINS:
            continue
        sizes = [spans[name] for name in node.input if spans.get(name, 0) > 0]
        if len(sizes) < 2 or max(sizes) / min(sizes) <= RANGE_RATIO:
            continue
        reason = (
            f"{node.op_type} joins ranges {max(sizes) / min(sizes):.0f}x apart "
            f"(|x| up to {min(sizes):.3g} and {max(sizes):.3g}): kept in float"
        )
        kept[node.name] = reason
        tail = [r for name in node.output for r in readers.get(name, [])]
        while tail:
            follower = tail.pop()
            if follower.op_type in COMPUTE_OPS or follower.name in kept:
                continue
            kept[follower.name] = f"after '{node.name}', whose {reason}"
            tail += [r for name in follower.output for r in readers.get(name, [])]
    return kept
