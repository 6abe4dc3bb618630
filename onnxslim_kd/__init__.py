"""onnxslim-kd: post-training compression of exported ONNX models.

import onnxslim_kd as sk
model = sk.load("model.onnx")
data = sk.load_data("calib.npz", model)
result = sk.compress(model, data=data)
sk.save(result.model, "model.slim.onnx")

The names below load on first use (PEP 562), so `import onnxslim_kd.progress` or the
CLI's `--help` do not pay for onnx, onnxruntime and numpy.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> "module:attribute" it is loaded from.
_API = {
    "bench": "onnxslim_kd.bench.latency:bench",
    "Preprocess": "onnxslim_kd.data:Preprocess",
    "load_data": "onnxslim_kd.data:load_data",
    "random_data": "onnxslim_kd.data:random_data",
    "decompose": "onnxslim_kd.decompose.core:decompose",
    "InputError": "onnxslim_kd.errors:InputError",
    "canonicalize": "onnxslim_kd.graph.canonicalize:canonicalize",
    "load": "onnxslim_kd.graph.load:load",
    "save": "onnxslim_kd.graph.save:save",
    "inspect": "onnxslim_kd.graph.stats:model_stats",
    "check": "onnxslim_kd.graph.validate:check",
    "compare_models": "onnxslim_kd.graph.validate:compare_models",
    "read_recipe": "onnxslim_kd.pipeline.recipe:read_recipe",
    "compress": "onnxslim_kd.pipeline.runner:compress",
    "PruneOptions": "onnxslim_kd.prune.prune:PruneOptions",
    "prune": "onnxslim_kd.prune.prune:prune",
    "QuantizeOptions": "onnxslim_kd.quantize.api:QuantizeOptions",
    "quantize_model": "onnxslim_kd.quantize.api:quantize_model",
}


def distill(student, teachers, data, **kwargs):
    """Knowledge-distillation fine-tune (needs the `distill` extra; torch loads only here)."""
    from onnxslim_kd.distill import require_torch

    require_torch()
    from onnxslim_kd.distill.api import distill as run_distill

    return run_distill(student, teachers, data, **kwargs)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'onnxslim_kd' has no attribute {name!r}")
    module, _, attribute = _API[name].partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


__all__ = sorted([*_API, "distill"])
