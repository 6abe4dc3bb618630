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
from onnxslim_kd.graph.io import TensorSpec, tensor_spec
from onnxslim_kd.graph.shape_inference import inferred_value_info
from onnxslim_kd.graph.validate import run
from onnxslim_kd.graph.walk import attribute, producers
from onnxslim_kd.report.fidelity import OutputFidelity, concat_parts, output_fidelity, parts_sqnr

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
    #: output -> (axis, part sizes) where a Concat joined parts of scales MIXED_SCALE_RATIO apart
    parts: dict[str, tuple[int, list[int]]] = field(default_factory=dict)

    @property
    def class_like(self) -> list[str]:
        return list(self.class_axes)

    def fidelity(self, name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputFidelity:
        """Output `name`'s fidelity, with arg-max agreement along its class axis if it has one;
        a concatenation of parts on different scales (boxes in pixels beside scores in
        0..1) gets the worst part's SQNR, since the large part hides what the small loses."""
        axis = self.class_axes.get(name)
        fidelity = output_fidelity(reference, candidate, axis is not None, axis)
        if name in self.parts:
            fidelity.parts_sqnr_db = parts_sqnr(reference, candidate, *self.parts[name])
            fidelity.sqnr_db = min(fidelity.sqnr_db, *fidelity.parts_sqnr_db)
        return fidelity

    def as_dict(self) -> dict:
        return {"class_like": self.class_like, "regression": self.regression,
                "label_output": self.label_output, "class_axes": self.class_axes,
                "concatenated_parts": self.parts, "warnings": self.warnings}  # fmt: skip


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
    roles.parts = _mixed_parts(model, {n: outputs[n] for n in roles.regression})
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


#: Parts of a concatenated output whose RMS differ by more than this are judged apart.
MIXED_SCALE_RATIO = 10.0
#: Ops between the Concat and the output that move no values across the parts.
_LAYOUT_OPS = {"Reshape", "Flatten", "Identity", "Squeeze", "Unsqueeze"}


def _mixed_parts(
    model: onnx.ModelProto, outputs: dict[str, np.ndarray]
) -> dict[str, tuple[int, list[int]]]:
    """Outputs a Concat joined (maybe through reshapes that keep its axis) from parts whose
    scales differ by more than MIXED_SCALE_RATIO, with that axis and the part sizes."""
    writers = producers(model.graph)
    joins = {}
    for name in outputs:
        node = writers.get(name)
        while node is not None and node.op_type in _LAYOUT_OPS:
            node = writers.get(node.input[0])
        if node is not None and node.op_type == "Concat" and len(node.input) > 1:
            joins[name] = node
    if not joins:
        return {}
    specs = {v.name: tensor_spec(v) for v in [*inferred_value_info(model), *model.graph.input]}
    constants = {t.name: tuple(t.dims) for t in model.graph.initializer}
    parts = {}
    for name, node in joins.items():
        array, axis = outputs[name], attribute(node, "axis")
        sizes = [_size(constants.get(p) or _dims(specs, p), axis) for p in node.input]
        axis = axis % array.ndim if array.ndim else None
        if axis is None or None in sizes or array.shape[axis] != sum(sizes):
            continue  # a reshape moved the joined axis, or a part's size is unknown
        if _scale_spread(concat_parts(array, axis, sizes)) > MIXED_SCALE_RATIO:
            parts[name] = (axis, sizes)
    return parts


def _dims(specs: dict[str, TensorSpec], tensor: str) -> tuple:
    return specs[tensor].dims if tensor in specs else ()


def _size(dims: tuple, axis: int) -> int | None:
    """The static size along `axis` of a tensor with `dims`, else None."""
    size = dims[axis] if -len(dims) <= axis < len(dims) else None
    return size if isinstance(size, int) else None


def _scale_spread(parts: list[np.ndarray]) -> float:
    """Largest over smallest RMS of the parts (inf when one part is all zeros)."""
    rms = [float(np.sqrt(np.mean(p.astype(np.float64) ** 2))) if p.size else 0.0 for p in parts]
    if max(rms) == 0.0:
        return 1.0
    return max(rms) / min(rms) if min(rms) > 0 else float("inf")
