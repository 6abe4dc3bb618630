"""Which intermediate tensors of student and teacher the feature losses compare.

Pruning keeps tensor names, so maps are matched by name: for each spatial size, the last
4-D tensor both graphs compute at that size (a stage's output); in transformer blocks, the
[B, T, C] output of every residual Add (each block's hidden state, as TinyBERT matches
them), seen by the map losses as a [B, C, T, 1] map so the 1x1 adapters bridge a pruned
residual width; and for relational losses the last 2-D tensor before the output (the
penultimate embedding; the logits when there is none).
With `sections` (the FSP loss relates a section's input to its output) each size's first
such tensor joins too, just before its last. Explicit pairs override maps. For the
attention-map loss: every Softmax output over [.., T, T] both graphs compute (a
transformer's attention probabilities, whatever the heads pruning left).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from onnxslim_kd.distill.executor import GraphModule
from onnxslim_kd.errors import InputError


@dataclass
class FeaturePlan:
    """Matched (student, teacher) tensor names and the channel counts of each map pair."""

    maps: list[tuple[str, str]]
    channels: list[tuple[int, int]]
    embedding: tuple[str, str]
    attention: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "maps": [list(p) for p in self.maps],
            "embedding": list(self.embedding),
            "attention": [list(p) for p in self.attention],
        }


def plan_features(
    student: GraphModule,
    teacher: GraphModule,
    feeds: dict[str, Tensor],
    pairs: list[tuple[str, str]],
    sections: bool = False,
) -> FeaturePlan:
    """Trace both graphs once on `feeds` and match their feature tensors."""
    with torch.no_grad():
        s_values, t_values = student.trace(feeds), teacher.trace(feeds)
    maps = pairs or [
        *_stage_maps(teacher, s_values, t_values, sections),
        *_token_maps(teacher, s_values, t_values),
    ]
    for s_name, t_name in maps:
        for name, values, role in ((s_name, s_values, "student"), (t_name, t_values, "teacher")):
            if name not in values or values[name].dim() not in (3, 4):
                raise InputError(
                    f"distill: the {role} has no 4-D map or [B, T, C] tensor named '{name}'"
                )
    channels = [(as_map(s_values[s]).shape[1], as_map(t_values[t]).shape[1]) for s, t in maps]
    embedding = _embedding(teacher, s_values, t_values) or (
        student.output_names[0],
        teacher.output_names[0],
    )
    return FeaturePlan(maps, channels, embedding, _attention_maps(teacher, s_values, t_values))


def _attention_maps(teacher, s_values, t_values) -> list[tuple[str, str]]:
    """Softmax outputs [.., T, T] of 4 dimensions (batch, heads) that the student shares."""
    names = [node.output[0] for node, _ in teacher.steps if node.op_type == "Softmax"]
    return [
        (name, name)
        for name in names
        if name in s_values
        and t_values[name].dim() == s_values[name].dim() == 4
        and t_values[name].shape[-1] == t_values[name].shape[-2]
        and s_values[name].shape[-2:] == t_values[name].shape[-2:]
    ]


def _computed(module: GraphModule, values: dict[str, Tensor]) -> list[str]:
    """Names of float tensors the graph computes, in execution order, outputs excluded."""
    names = [name for node, _ in module.steps for name in node.output if name in values]
    skip = set(module.output_names)
    return [n for n in names if n not in skip and values[n].dtype.is_floating_point]


def _stage_maps(teacher, s_values, t_values, sections: bool) -> list[tuple[str, str]]:
    first: dict[tuple[int, ...], str] = {}
    last: dict[tuple[int, ...], str] = {}
    for name in _computed(teacher, t_values):
        t, s = t_values[name], s_values.get(name)
        if t.dim() != 4 or s is None or s.dim() != 4 or s.shape[2:] != t.shape[2:]:
            continue
        if t.shape[2:].numel() > 1:
            first.setdefault(tuple(t.shape[2:]), name)
            last[tuple(t.shape[2:])] = name
    names = [
        name
        for size, end in last.items()
        for name in ([first[size]] if sections and first[size] != end else []) + [end]
    ]
    return [(name, name) for name in names]


def as_map(value: Tensor) -> Tensor:
    """A feature tensor as the map losses read it: [B, C, H, W] as is, tokens [B, T, C] as
    [B, C, T, 1]."""
    return value.transpose(1, 2).unsqueeze(-1) if value.dim() == 3 else value


def _token_maps(teacher, s_values, t_values) -> list[tuple[str, str]]:
    """Outputs [B, T, C] of residual Adds (two [B, T, C] inputs) the student computes with
    the same tokens."""
    names = []
    for node, _ in teacher.steps:
        name = node.output[0]
        t, s = t_values.get(name), s_values.get(name)
        if node.op_type != "Add" or t is None or s is None or t.dim() != 3 or s.dim() != 3:
            continue
        inputs = [t_values.get(i) for i in node.input]
        if all(i is not None and i.shape == t.shape for i in inputs) and s.shape[:2] == t.shape[:2]:
            names.append(name)
    return [(name, name) for name in names]


def _embedding(teacher, s_values, t_values) -> tuple[str, str] | None:
    shared = [
        name
        for name in _computed(teacher, t_values)
        if t_values[name].dim() == 2 and name in s_values and s_values[name].dim() == 2
    ]
    return (shared[-1], shared[-1]) if shared else None
