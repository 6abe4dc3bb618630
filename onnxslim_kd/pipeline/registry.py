"""One registry of graph-to-graph passes; recipes name passes, the runner looks them up.

A pass module registers itself with `@register_pass`; adding a pass never touches the
runner. Options are a dataclass per pass, so recipes are checked before anything runs.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError


@dataclass
class PassContext:
    """What a pass may use besides the model: data (if given) and concrete input shapes.

    `original` is the model the pipeline started from (the teacher of `distill`).
    `work_dir`, when the pipeline keeps checkpoints, is this stage's own directory for a
    pass that can resume mid-way (distill's per-epoch state); it goes once the stage is stored.
    """

    data: Dataset | None = None
    shapes: dict[str, list[int]] = field(default_factory=dict)
    original: onnx.ModelProto | None = None
    work_dir: Path | None = None
    bench_batch: int = 1  # the batch the pipeline times at (a pass that times uses it too)

    def require_data(self, pass_name: str, purpose: str) -> Dataset:
        """The data, or a one-line error saying which pass needs it for what."""
        if self.data is None:
            raise InputError(f"pass '{pass_name}' needs {purpose}: give --data")
        return self.data


@dataclass
class PassResult:
    """The new model and a JSON-able summary: what changed, what was skipped and why."""

    model: onnx.ModelProto
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class NoOptions:
    """Options of a pass that takes none."""


class Pass(ABC):
    """A graph-to-graph pass. Subclasses set `name`, `Options`, and implement `run`."""

    name: ClassVar[str]
    Options: ClassVar[type] = NoOptions

    def __init__(self, options: Any) -> None:
        self.options = options

    @abstractmethod
    def run(self, model: onnx.ModelProto, context: PassContext) -> PassResult:
        """Return a new model; never mutate `model`."""

    def describe(self, summary: dict[str, Any]) -> str:
        """One line for the compress table; by default the summary's scalar facts."""
        facts = [
            f"{key.replace('_', ' ')}: {value}"
            for key, value in summary.items()
            if isinstance(value, int | float | str) and not isinstance(value, bool) and value
        ]
        return "; ".join(facts[:6]) or "nothing to change"


PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    """Class decorator adding a pass to the registry under `cls.name`."""
    PASSES[cls.name] = cls
    return cls


def build_pass(name: str, options: dict[str, Any]) -> Pass:
    """Instantiate a registered pass from recipe options, rejecting unknown names and keys."""
    if name not in PASSES:
        raise InputError(f"recipe: unknown pass '{name}' (known: {', '.join(sorted(PASSES))})")
    cls = PASSES[name]
    known = {f.name for f in dataclasses.fields(cls.Options)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InputError(
            f"recipe: pass '{name}' has no option '{unknown[0]}' "
            f"(options: {', '.join(sorted(known)) or 'none'})"
        )
    try:
        return cls(cls.Options(**options))
    except (TypeError, ValueError) as exc:
        raise InputError(f"recipe: pass '{name}': {exc}") from exc
