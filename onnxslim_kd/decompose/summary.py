"""What `decompose` did to every candidate layer, and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class LayerDecision:
    """One candidate layer: factorised (ranks, MACs, measured speed-up) or the skip reason."""

    name: str
    op: str
    weight: str
    decomposed: bool = False
    kind: str | None = None
    ranks: list[int] | None = None
    macs_before: int | None = None
    macs_after: int | None = None
    speedup: float | None = None
    reason: str | None = None

    def row(self) -> tuple[str, ...]:
        """A markdown table row: layer, op, weight, decision, ranks, MACs, speed-up."""
        decision = f"{self.kind}" if self.decomposed else f"skip: {self.reason}"
        ranks = "x".join(map(str, self.ranks)) if self.ranks else ""
        macs = (
            f"{_mega(self.macs_before)} -> {_mega(self.macs_after)}"
            if self.macs_before is not None
            else ""
        )
        speedup = f"{self.speedup:.2f}x" if self.speedup is not None else ""
        return (self.name, self.op, self.weight, decision, ranks, macs, speedup)


ROW_HEADER = ("layer", "op", "weight", "decision", "rank", "MACs (M)", "measured")


@dataclass
class DecomposeSummary:
    """Every decision plus totals; `macs_*` are whole-model MACs at the shapes used."""

    strategy: str
    method: str
    measured: bool
    macs_before: int
    macs_after: int
    seconds: float = 0.0
    layers: list[LayerDecision] = field(default_factory=list)
    budget: dict | None = None  # the output score with a budget (report.budget.Score)
    fallback: list[dict] = field(default_factory=list)  # one score per attempt
    kept_full_rank: list[str] = field(default_factory=list)  # reverted for the budget

    @property
    def decomposed(self) -> int:
        return sum(d.decomposed for d in self.layers)

    def as_dict(self) -> dict:
        return {
            "strategy": self.strategy,
            "method": self.method,
            "measured": self.measured,
            "layers_decomposed": self.decomposed,
            "layers_skipped": len(self.layers) - self.decomposed,
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "macs_ratio": round(self.macs_after / self.macs_before, 4)
            if self.macs_before
            else None,
            "seconds": round(self.seconds, 3),
            "layers": [asdict(d) for d in self.layers],
            "budget": self.budget,
            "fallback": self.fallback,
            "kept_full_rank": self.kept_full_rank,
        }

    def rows(self) -> list[tuple[str, ...]]:
        return [d.row() for d in self.layers]


def _mega(value: int | None) -> str:
    return "?" if value is None else f"{value / 1e6:.2f}"
