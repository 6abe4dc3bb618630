"""The `distill` pass for compress recipes: the pipeline's input model is the teacher."""

from __future__ import annotations

import onnx

from onnxslim_kd.distill import require_torch
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.errors import InputError
from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass


@register_pass
class DistillPass(Pass):
    """Fine-tune the compressed model's weights by distillation from the uncompressed one."""

    name = "distill"
    Options = DistillOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        data = context.require_data(self.name, "training data")
        if context.original is None:
            raise InputError("pass 'distill' needs the pipeline's input model as its teacher")
        require_torch()
        from onnxslim_kd.distill.api import distill

        trained, summary = distill(model, [context.original], data, options=self.options)
        return PassResult(trained, summary)
