"""CI gate: does a candidate model stay within the limits set against its baseline?"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from onnxslim_kd.report.comparison import Comparison


#: The accuracy budget's range, the same for every command and recipe.
@dataclass
class Limit:
    """One checked limit: what was measured against what was allowed."""

    name: str
    measured: float | None
    allowed: float
    passed: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


#: SQNR floor (dB) of outputs that are not class scores (boxes, landmarks, embeddings),
#: for the budget of compress and check: 20 dB is an RMS error of 10% of the signal.


def accuracy_drop(comparison: Comparison) -> tuple[float | None, str]:
    """The worst class output's drop: accuracy on the labels' output, 1 - top-1
    agreement with the baseline on every other class-like output."""
    drops: list[tuple[float, str]] = []
    labelled = comparison.roles.label_output if comparison.roles else None
    if comparison.accuracy_before is not None and comparison.accuracy_after is not None:
        drops.append((comparison.accuracy_before - comparison.accuracy_after, "accuracy drop"))
    for name, fid in comparison.fidelity.items():
        if fid.top1_agreement is not None and name != labelled:
            which = f" of '{name}'" if len(comparison.fidelity) > 1 else ""
            drops.append((1.0 - fid.top1_agreement, f"1 - top-1 agreement{which}"))
    if not drops:
        return None, "no classification output to measure a drop on"
    return max(drops, key=lambda pair: pair[0])


def weak_outputs(comparison: Comparison, min_sqnr: float) -> list[tuple[str, float]]:
    """Regression outputs (not class scores) whose SQNR is under the floor, worst first."""
    regression = comparison.roles.regression if comparison.roles else []
    weak = [(n, comparison.fidelity[n].sqnr_db) for n in regression
            if comparison.fidelity[n].sqnr_db < min_sqnr]  # fmt: skip
    return sorted(weak, key=lambda pair: pair[1])


def within_budget(comparison: Comparison, max_drop: float, min_sqnr: float) -> bool:
    """Every class output within --max-drop and every other output above the SQNR floor."""
    drop, _ = accuracy_drop(comparison)
    return (drop is None or drop <= max_drop + 1e-12) and not weak_outputs(comparison, min_sqnr)


def speedup_limit(comparison: Comparison, min_speedup: float) -> Limit:
    """Fails only when the speed-up is measurably below `min_speedup`: its whole 95%
    interval under the bar by more than two sessions of one model differ (SESSION_MARGIN).
    A median read against the bar passed and failed the same pair from run to run; the
    interval does not, and a tie that the extra rounds could not split passes, as in
    asv's `continuous`, which reports only significant regressions."""
    if comparison.latency is None:
        return Limit("min-speedup", None, min_speedup, False, "not timed (--runs 0)")
    candidate = comparison.latency.latencies[-1]
    detail = f"{candidate.describe()}: {candidate.reading(min_speedup)}"
    return Limit("min-speedup", candidate.speedup, min_speedup, candidate.reaches(min_speedup),
                 detail)  # fmt: skip


def evaluate_limits(
    comparison: Comparison,
    candidate_size_bytes: int,
    *,
    max_drop: float | None = None,
    min_speedup: float | None = None,
    max_size_mb: float | None = None,
) -> list[Limit]:
    """Check each limit that was set; a limit that cannot be measured fails."""
    limits = []
    if max_drop is not None:
        drop, how = accuracy_drop(comparison)
        passed = drop is not None and drop <= max_drop + 1e-12
        limits.append(Limit("max-drop", drop, max_drop, passed, how))
    if min_speedup is not None:
        limits.append(speedup_limit(comparison, min_speedup))
    if max_size_mb is not None:
        size = candidate_size_bytes / 1e6
        limits.append(Limit("max-size-mb", size, max_size_mb, size <= max_size_mb, "on disk"))
    return limits
