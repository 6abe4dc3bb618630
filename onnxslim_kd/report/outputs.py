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

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.fidelity import OutputFidelity, output_fidelity

#: Ops whose result is a probability (or log-probability) distribution over classes.
CLASS_OPS = {"Softmax", "LogSoftmax"}


#: Samples a model runs on to see its outputs' shapes before their roles are decided.
PROBE_SAMPLES = 4


@dataclass
class OutputRoles:
    """Which outputs are class-like (with their class axis), which one carries the labels,
    and why not."""

    class_axes: dict[str, int] = field(default_factory=dict)
    regression: list[str] = field(default_factory=list)
    label_output: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def class_like(self) -> list[str]:
        return list(self.class_axes)

    def fidelity(self, name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputFidelity:
        """Output `name`'s fidelity, with arg-max agreement along its class axis if it has one."""
        axis = self.class_axes.get(name)
        return output_fidelity(reference, candidate, axis is not None, axis)

    def as_dict(self) -> dict:
        return {"class_like": self.class_like, "regression": self.regression,
                "label_output": self.label_output, "class_axes": self.class_axes,
                "warnings": self.warnings}  # fmt: skip


def output_roles(
    model: onnx.ModelProto,
    outputs: dict[str, np.ndarray],
    labels: np.ndarray | None = None,
    label_output: str | None = None,
) -> OutputRoles:
    """Sort the outputs (arrays from one run of `model`) into class-like and regression.

    A Softmax/LogSoftmax output is class-like along its softmax axis; a single output
    [N, C] or [N, C, H, W] (segmentation logits) along axis 1; a single [N, A, B] output
    without a softmax is not (a detector's [N, 4 + classes, anchors] is no distribution).
    """
    softmax_axes = _softmax_axes(model)
    names = list(outputs)
    if label_output is not None and label_output not in outputs:
        raise InputError(
            f"--label-output {label_output!r} is not an output (outputs: {', '.join(names)})"
        )

    def axis_of(name: str) -> int | None:
        rank = outputs[name].ndim
        if name in softmax_axes:
            axis = softmax_axes[name] % rank if rank else None
        elif name == label_output or (len(names) == 1 and rank in (2, 4)):
            axis = 1 if rank >= 2 else None
        else:
            axis = None
        return axis if axis is not None and outputs[name].shape[axis] >= 2 else None

    roles = OutputRoles({n: a for n in names if (a := axis_of(n)) is not None})
    if labels is not None:
        roles.label_output = label_output or _label_output(outputs, labels, roles)
        if roles.label_output is not None:
            rank = outputs[roles.label_output].ndim
            roles.class_axes.setdefault(roles.label_output, rank - 1 if labels.ndim == 2 else 1)
    roles.regression = [n for n in names if n not in roles.class_like]
    return roles


def probe_roles(
    model: onnx.ModelProto, data: Dataset, label_output: str | None = None
) -> tuple[dict[str, np.ndarray], OutputRoles]:
    """The outputs of `model` on a few samples of `data`, and their roles."""
    outputs = run(model, data.subset(PROBE_SAMPLES))
    return outputs, output_roles(model, outputs, data.labels, label_output)


def _softmax_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Outputs of Softmax/LogSoftmax nodes with their axis (default 1 before opset 13)."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    default = -1 if opset >= 13 else 1
    axes = {}
    for node in model.graph.node:
        if node.op_type in CLASS_OPS:
            axis = next((a.i for a in node.attribute if a.name == "axis"), default)
            axes[node.output[0]] = axis
    return axes


def _label_output(
    outputs: dict[str, np.ndarray], labels: np.ndarray, roles: OutputRoles
) -> str | None:
    """The one output the labels fit, preferring the one whose class count is the labels':
    an [N, C] output with C above every class id, or for label sequences [N, L] a per-step
    [N, T, C] / [T, N, C] output with C above every id. Else None and a warning naming the
    candidates."""
    count = int(labels.max()) + 1 if labels.size else 0
    rank = 3 if labels.ndim == 2 else 2

    def classes(name: str) -> int:
        return outputs[name].shape[roles.class_axes.get(name, rank - 1)]

    fits = [n for n, a in outputs.items() if a.ndim == rank and classes(n) >= max(count, 2)]
    exact = [n for n in fits if classes(n) == count]
    for matches in (fits, exact):
        if len(matches) == 1:
            return matches[0]
    found = ", ".join(f"'{n}'" for n in fits) if fits else "no output"
    roles.warnings.append(
        f"labels ({count} classes) ignored: they could describe {found}; "
        "name one with --label-output"
    )
    return None
