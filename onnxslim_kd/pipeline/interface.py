"""The contract every pass keeps: same graph inputs/outputs, dynamic axes and metadata."""

from __future__ import annotations

import onnx

from onnxslim_kd.errors import BrokenModelError
from onnxslim_kd.graph.io import model_inputs, model_outputs


def interface(model: onnx.ModelProto) -> dict:
    """Names, element types and dims (symbolic ones by name) of inputs/outputs, and metadata."""
    return {
        "inputs": [spec.as_dict() for spec in model_inputs(model)],
        "outputs": [spec.as_dict() for spec in model_outputs(model)],
        "metadata": {p.key: p.value for p in model.metadata_props},
    }


def check_interface(before: onnx.ModelProto, after: onnx.ModelProto, pass_name: str) -> None:
    """Raise BrokenModelError naming what a pass changed in the model's interface."""
    old, new = interface(before), interface(after)
    for key in ("inputs", "outputs", "metadata"):
        if old[key] != new[key]:
            raise BrokenModelError(
                f"pass '{pass_name}' changed the model's {key}: {old[key]} -> {new[key]}"
            )
