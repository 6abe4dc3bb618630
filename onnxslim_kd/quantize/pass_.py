"""The `quantize` pass for recipes; normally the last pass, since it ends float compute."""

from __future__ import annotations

from dataclasses import replace

import onnx

from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass
from onnxslim_kd.quantize.api import QuantizeOptions, quantize_model


@register_pass
class QuantizePass(Pass):
    """INT8 calibrated on the recipe's data (`compress --data`): static QDQ, or dynamic
    MatMul where that is faster (quantize/dynamic.py)."""

    name = "quantize"
    Options = QuantizeOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        data = context.require_data(self.name, "calibration data")
        options = self.options
        if options.bench_batch is None:  # time INT8 at the batch the pipeline is judged at
            options = replace(options, bench_batch=context.bench_batch)
        quantized, summary = quantize_model(model, data, options)
        return PassResult(quantized, summary.as_dict())

    def describe(self, summary: dict) -> str:
        types, coverage = summary["data_types"], summary["coverage"]
        kernels = coverage["integer"] + coverage["dq_float"] + coverage["float"]
        speedup = summary["latency"]["models"][-1]["speedup"] if summary.get("latency") else None
        timing = f"; {speedup:.2f}x vs FP32" if speedup else ""
        if summary["result"] != "int8":
            low, high = summary["latency"]["models"][-1]["speedup_interval"]
            measured = f"{speedup:.2f}x (per-round {low:.2f}-{high:.2f}x at 95%)"
            return f"kept FP32: INT8 measured {measured} vs FP32, not faster"
        scheme = (
            "dynamic MatMul" if summary.get("scheme") == "dynamic"
            else f"{types['format']} {types['activations']}/{types['weights']}"
        )  # fmt: skip
        kernels = f"{coverage['integer']}/{kernels} integer kernels"
        return f"{summary['result']}: {scheme}, {kernels}{timing}"
