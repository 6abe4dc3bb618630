"""What each graph output is, so that every output is judged by a metric that fits it.

Class-like outputs (a Softmax/LogSoftmax result, or a single output of rank 2-4) are
judged by arg-max agreement along their class axis and, for the one output the labels
belong to, by accuracy; every other output (box regression, landmarks, embeddings) by
its SQNR against the reference. Labels belong to ONE output: the one named, else the
only class-like output whose class dimension equals the number of classes in the labels;
when that is ambiguous the labels are ignored and the warning names the candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from onnxslim_kd.errors import InputError

#: Ops whose result is a probability (or log-probability) distribution over classes.
CLASS_OPS = {"Softmax", "LogSoftmax"}


@dataclass
class OutputRoles:
    """Which outputs are class-like, which one carries the labels, and why not."""

    class_like: list[str]
    regression: list[str]
    label_output: str | None = None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"class_like": self.class_like, "regression": self.regression,
                "label_output": self.label_output, "warnings": self.warnings}  # fmt: skip


def class_axis(rank: int) -> int | None:
    """Class axis by layout: [N, C] -> 1, [N, T, C] sequences -> 2, [N, C, H, W] maps -> 1."""
    return {2: 1, 3: 2, 4: 1}.get(rank)


def output_roles(
    model: onnx.ModelProto,
    outputs: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
    label_output: str | None = None,
) -> OutputRoles:
    """Sort the outputs (arrays from one run of `model`) into class-like and regression."""
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    names = list(outputs)
    if label_output is not None and label_output not in outputs:
        raise InputError(
            f"--label-output {label_output!r} is not an output (outputs: {', '.join(names)})"
        )

    def classes(name: str) -> int | None:
        axis = class_axis(outputs[name].ndim)
        return None if axis is None else outputs[name].shape[axis]

    def is_class_like(name: str) -> bool:
        if (classes(name) or 0) < 2:
            return False
        return producers.get(name) in CLASS_OPS or len(names) == 1 or name == label_output

    roles = OutputRoles([n for n in names if is_class_like(n)], [])
    if labels is not None:
        roles.label_output = label_output or _label_output(outputs, labels, roles)
        if roles.label_output is not None and roles.label_output not in roles.class_like:
            roles.class_like.append(roles.label_output)
    roles.regression = [n for n in names if n not in roles.class_like]
    return roles


def _label_output(
    outputs: dict[str, np.ndarray], labels: np.ndarray, roles: OutputRoles
) -> str | None:
    """The one [N, C] output the labels fit (C above every label), preferring the one whose
    C is the labels' class count; else None and a warning naming the candidates."""
    count = int(labels.max()) + 1 if len(labels) else 0
    fits = [n for n, a in outputs.items() if a.ndim == 2 and a.shape[1] >= max(count, 2)]
    exact = [n for n in fits if outputs[n].shape[1] == count]
    for matches in (fits, exact):
        if len(matches) == 1:
            return matches[0]
    found = ", ".join(f"'{n}'" for n in fits) if fits else "no output"
    roles.warnings.append(
        f"labels ({count} classes) ignored: they could describe {found}; "
        "name one with --label-output"
    )
    return None
