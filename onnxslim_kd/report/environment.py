"""The machine and library versions behind every number we report."""

from __future__ import annotations

import platform

import numpy as np
import onnx
import onnxruntime as ort

from onnxslim_kd.bench.cpu import cpu_info


def environment(threads: int | None = None) -> dict:
    """CPU, ISA flags, thread count and versions, for reports people can trust."""
    return {
        "cpu": cpu_info(),
        "threads": threads,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnx": onnx.__version__,
        "numpy": np.__version__,
    }
