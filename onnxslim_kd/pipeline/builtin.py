"""Passes that come with the graph core."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.canonicalize import canonicalize
from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass


@register_pass
class CanonicalizePass(Pass):
    """Weights into initializers, Identity aliases resolved, exact folding, shapes inferred."""

    name = "canonicalize"

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        canonical, report = canonicalize(model)
        return PassResult(canonical, report.as_dict())
