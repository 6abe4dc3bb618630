"""The `prune` pass for compress recipes."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass
from onnxslim_kd.prune.plan import read_plan
from onnxslim_kd.prune.prune import PruneOptions, prune


@dataclass
class PruneRecipeOptions:
    """Recipe keys; `plan` is a path to a saved plan."""

    ratio: float = 0.5
    target_macs: float | None = None
    criterion: str = "l1"
    global_ranking: bool = False
    max_ratio: float = 0.8
    round_to: int = 8
    exclude: list[str] = field(default_factory=list)
    keep_stem: bool = True
    seed: int = 0
    plan: str | None = None

    def __post_init__(self) -> None:
        self.resolved = PruneOptions(
            **{k: v for k, v in vars(self).items() if k != "plan"},
            plan=read_plan(self.plan) if self.plan else None,
        )


@register_pass
class PrunePass(Pass):
    """Structured channel pruning with dependency propagation."""

    name = "prune"
    Options = PruneRecipeOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        pruned, summary = prune(model, self.options.resolved, context.data, context.shapes)
        record = summary.as_dict()
        record.pop("plan")
        return PassResult(pruned, record)
