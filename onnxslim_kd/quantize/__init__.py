"""INT8 post-training quantization on top of onnxruntime.quantization.

onnxruntime does the quantizing; this package decides what makes the result fast and
accurate on the target CPU (data types, exclusions, FP32 fallback under an accuracy
budget), verifies that the integer kernels really fuse, and reports it.
"""

from onnxslim_kd.quantize.api import QuantizeOptions, QuantizeSummary, quantize_model

__all__ = ["QuantizeOptions", "QuantizeSummary", "quantize_model"]
