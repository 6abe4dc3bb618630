"""Does a rewritten graph compute what the original does? Checked by running both.

A rewrite that rests on facts shape inference derives (which dimensions are equal, which
are fixed) or on matching a pattern by its anchors is verified on random inputs at two
batch sizes, so an assumption that holds at one size only is caught; on any difference
the caller keeps the original.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx

from onnxslim_kd.data import random_data
from onnxslim_kd.graph.session import make_session

#: Largest output difference, relative to the output's largest magnitude, a rewrite may
#: make (float reassociation only).
TOLERANCE = 1e-4
#: Batch sizes the rewrites are run at (neither is the 1 shapes are usually inferred at).
BATCHES = (2, 3)

Reference = list[tuple[dict[str, np.ndarray], list[np.ndarray]]]


def reference_runs(model: onnx.ModelProto, input_shapes: dict[str, list[int]]) -> Reference:
    """(feeds, outputs) of `model` on random inputs at each of BATCHES samples."""
    runs = []
    session = make_session(model)
    for batch in BATCHES:
        feeds = random_data(model, _batched(model, input_shapes, batch), seed=batch).inputs
        runs.append((feeds, session.run(None, feeds)))
    return runs


def mismatch(rewritten: onnx.ModelProto, reference: Reference) -> str | None:
    """How `rewritten` fails to compute the `reference` outputs on their feeds, or None."""
    try:
        session = make_session(rewritten)
        for feeds, expected in reference:
            for want, got in zip(expected, session.run(None, feeds), strict=True):
                scale = float(np.abs(want).max()) or 1.0
                if want.shape != got.shape or np.abs(want - got).max() > TOLERANCE * scale:
                    return "computes other values"
    except Exception as error:  # any failure to run keeps the original
        return f"does not run ({type(error).__name__})"
    return None


def verified_rewrite(
    model: onnx.ModelProto,
    rewrite: Callable[[onnx.ModelProto], tuple[onnx.ModelProto, int]],
    input_shapes: dict[str, list[int]],
) -> tuple[onnx.ModelProto, int, str | None]:
    """(`rewrite(model)` if it changed something and computes `model`'s outputs, else
    `model`; how many places it changed, 0 when kept; how the rewrite failed, or None)."""
    rewritten, count = rewrite(model)
    if not count:
        return model, 0, None
    failure = mismatch(rewritten, reference_runs(model, input_shapes))
    return (model, 0, failure) if failure is not None else (rewritten, count, None)


def _batched(model: onnx.ModelProto, shapes: dict, batch: int) -> dict[str, list[int]]:
    """`shapes` with `batch` samples in every input whose first axis is dynamic."""
    dynamic = {
        spec.name for spec in model.graph.input
        if spec.type.tensor_type.shape.dim and not spec.type.tensor_type.shape.dim[0].dim_value
    }  # fmt: skip
    return {name: [batch, *dims[1:]] if name in dynamic else dims for name, dims in shapes.items()}
