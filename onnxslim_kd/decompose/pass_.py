"""The `decompose` pass for recipes, e.g. `- decompose: {rank_ratio: 0.5, measure: true}`."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx

from onnxslim_kd.decompose.candidates import METHODS
from onnxslim_kd.decompose.core import decompose
from onnxslim_kd.decompose.ranks import make_selector
from onnxslim_kd.errors import InputError
from onnxslim_kd.pipeline.registry import Pass, PassContext, PassResult, register_pass


@dataclass
class DecomposeOptions:
    """Recipe keys; at most one of energy, rank_ratio, vbmf, target_macs (default energy)."""

    method: str = "auto"
    energy: float | None = None
    rank_ratio: float | None = None
    vbmf: bool = False
    target_macs: float | None = None
    measure: bool = False
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        make_selector(self.energy, self.rank_ratio, self.vbmf, self.target_macs)  # validates


@register_pass
class DecomposePass(Pass):
    """Low-rank factorisation of Gemm/MatMul/Conv layers where it pays."""

    name = "decompose"
    Options = DecomposeOptions

    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        o = self.options
        out, summary = decompose(
            model,
            make_selector(o.energy, o.rank_ratio, o.vbmf, o.target_macs),
            method=o.method,
            measure=o.measure,
            exclude=o.exclude,
            shapes=context.shapes,
        )
        return PassResult(out, summary.as_dict())

    def describe(self, summary: dict) -> str:
        done = summary["layers_decomposed"]
        total = done + summary["layers_skipped"]
        ratio = summary["macs_ratio"]
        return f"{done} of {total} layers factorised ({summary['strategy']}); MACs x{ratio}"
