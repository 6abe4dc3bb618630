"""onnxslim-kd: post-training compression of exported ONNX models.

import onnxslim_kd as sk
model = sk.load("model.onnx")
data = sk.load_data("calib.npz", model)
result = sk.compress(model, data=data)
sk.save(result.model, "model.slim.onnx")
"""

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Preprocess, load_data, random_data
from onnxslim_kd.decompose.core import decompose
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.stats import model_stats as inspect
from onnxslim_kd.graph.validate import check, compare_models
from onnxslim_kd.pipeline.recipe import read_recipe
from onnxslim_kd.pipeline.runner import compress
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model


def distill(student, teachers, data, **kwargs):
    """Knowledge-distillation fine-tune (needs the `distill` extra; torch loads only here)."""
    from onnxslim_kd.distill import require_torch

    require_torch()
    from onnxslim_kd.distill.api import distill as run_distill

    return run_distill(student, teachers, data, **kwargs)


__version__ = "0.1.0"

__all__ = [
    "InputError",
    "Preprocess",
    "PruneOptions",
    "QuantizeOptions",
    "bench",
    "canonicalize",
    "check",
    "compare_models",
    "compress",
    "decompose",
    "distill",
    "inspect",
    "load",
    "load_data",
    "prune",
    "quantize_model",
    "random_data",
    "read_recipe",
    "save",
]
