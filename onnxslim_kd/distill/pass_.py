"""The `distill` pass for compress recipes: the pipeline's input model is the teacher."""

from __future__ import annotations

from dataclasses import replace

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

        options = self.options
        if options.checkpoint_dir is None and context.work_dir is not None:
            options = replace(options, checkpoint_dir=str(context.work_dir))  # a killed run resumes
        trained, summary = distill(model, [context.original], data, options=options)
        return PassResult(trained, summary)

    def describe(self, summary: dict) -> str:
        epochs = summary.get("training", {}).get("epochs")
        if summary.get("val_before") is None:
            return f"trained {epochs} epochs (no held-out data)"
        teacher = summary.get("val_teacher")
        reference = f" (teacher {teacher:.2%})" if teacher is not None else ""
        return (
            f"held-out {summary['metric']} {summary['val_before']:.2%} -> "
            f"{summary['val_after']:.2%}{reference}, {epochs} epochs"
        )
