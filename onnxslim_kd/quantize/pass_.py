"""The `quantize` pass for recipes; normally the last pass, since it ends float compute."""

from __future__ import annotations

import onnx

from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model


@register_pass
class QuantizePass(Pass):
    """INT8 QDQ quantization calibrated on the recipe's data (`compress --data`)."""

    name = "quantize"
    Options = QuantizeOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        data = context.require_data(self.name, "calibration data")
        quantized, summary = quantize_model(model, data, self.options)
        return PassResult(quantized, summary.as_dict())
