"""The `prune` pass for recipes, e.g. `- prune: {target_macs: 0.5, global_ranking: true}`."""

from __future__ import annotations

import onnx

from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass
from onnxslim_kd.prune.prune import PruneOptions, prune


@register_pass
class PrunePass(Pass):
    """Structured channel pruning with dependency propagation; recipe keys are
    `PruneOptions` fields (`plan` as a path)."""

    name = "prune"
    Options = PruneOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        pruned, summary = prune(model, self.options, context.data, context.shapes)
        record = summary.as_dict()
        record.pop("plan")
        return PassResult(pruned, record)

    def describe(self, summary: dict) -> str:
        spatial = summary.get("spatial") or {}
        resized = (
            f"resolution {spatial['resolution_before']} -> {spatial['resolution_after']}; "
            if spatial and not spatial["skipped"]
            else ""
        )
        return (
            f"{resized}{summary['groups_pruned']} channel groups pruned, "
            f"{summary['groups_skipped']} kept whole; "
            f"MACs {summary['macs_before'] / 1e6:.1f}M -> {summary['macs_after'] / 1e6:.1f}M"
        )
