"""Distillation losses behind one base class, combined by weight into one objective.

Each strategy reads what it needs from `Signals`: logits (ce, kd, dml), matched feature maps
(hint, at, sp, fsp, fspx), the penultimate embedding (rkd) or attention probabilities
(attn). Formulas follow the CRD benchmark code; attn follows MiniLM.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from onnxslim_kd.errors import InputError
from onnxslim_kd.report.fidelity import class_axis


@dataclass
class Signals:
    """One batch as the losses see it; teacher tensors carry no gradient."""

    student_logits: Tensor
    teacher_probs: Tensor
    temperature: float
    labels: Tensor | None = None
    student_maps: list[Tensor] = field(default_factory=list)
    teacher_maps: list[Tensor] = field(default_factory=list)
    student_embedding: Tensor | None = None
    teacher_embedding: Tensor | None = None
    student_others: dict[str, Tensor] = field(default_factory=dict)  # every other output
    teacher_others: dict[str, Tensor] = field(default_factory=dict)  # (teachers averaged)
    probabilities: frozenset[str] = frozenset()  # the others that are Softmax outputs
    student_attention: list[Tensor] = field(default_factory=list)  # [N, heads, T, T] each
    teacher_attention: list[Tensor] = field(default_factory=list)


class DistillLoss(nn.Module, ABC):
    """A loss term; `needs` says which intermediate tensors the training loop must capture."""

    name: ClassVar[str]
    needs: ClassVar[str] = "logits"  # "logits", "maps", "embedding" or "attention"

    @abstractmethod
    def forward(self, signals: Signals) -> Tensor:
        """The term's value on one batch (a scalar)."""


class CrossEntropy(DistillLoss):
    """Hard labels, the plain fine-tune."""

    name = "ce"

    def forward(self, signals: Signals) -> Tensor:
        return F.cross_entropy(signals.student_logits, signals.labels)


class LogitKD(DistillLoss):
    """Hinton's KL(teacher || student) at temperature T, scaled by T^2 (class axis 1)."""

    name = "kd"

    def forward(self, signals: Signals) -> Tensor:
        t = signals.temperature
        log_student = F.log_softmax(signals.student_logits / t, dim=1)
        kl = F.kl_div(log_student, signals.teacher_probs, reduction="none").sum(dim=1)
        return kl.mean() * t * t


class OtherOutputs(DistillLoss):
    """Every graph output besides the first follows the teacher's, with a loss that fits it:
    KL on probability outputs (a Softmax in the graph), and on the rest (boxes, landmarks,
    embeddings) the squared error relative to the teacher output's variance, so outputs on
    different scales (pixels against probabilities) weigh the same. Averaged over outputs."""

    name = "outputs"

    def forward(self, signals: Signals) -> Tensor:
        terms = []
        for name, teacher in signals.teacher_others.items():
            student = signals.student_others[name]
            if name in signals.probabilities:
                axis = class_axis(teacher.ndim) or 1
                log_ratio = torch.log(teacher.clamp_min(1e-8)) - torch.log(student.clamp_min(1e-8))
                terms.append((teacher * log_ratio).sum(dim=axis).mean())
            else:
                terms.append(F.mse_loss(student, teacher) / (teacher.var() + 1e-8))
        if not terms:
            return signals.student_logits.sum() * 0.0
        return torch.stack(terms).mean()


class MutualKL(DistillLoss):
    """Deep mutual learning's symmetric KL, offline (the teacher stays frozen, file 001):

        T^2 * mean_batch [KL(p_t || p_s) + KL(p_s || p_t)]
            = T^2 * mean_batch sum_c (p_t - p_s) (log p_t - log p_s)

    with p = softmax(logits / T) along axis 1 (p_t the teachers' average). Unlike `kd` it
    also penalises student mass where the teacher has none; teacher probabilities are
    clamped at the float's smallest normal so a saturated teacher costs a large, finite
    penalty.
    """

    name = "dml"

    def forward(self, signals: Signals) -> Tensor:
        t = signals.temperature
        log_student = F.log_softmax(signals.student_logits / t, dim=1)
        teacher = signals.teacher_probs
        log_teacher = teacher.clamp_min(torch.finfo(teacher.dtype).tiny).log()
        jeffreys = ((teacher - log_student.exp()) * (log_teacher - log_student)).sum(dim=1)
        return jeffreys.mean() * t * t


class AdaptedMaps(DistillLoss):
    """A map loss that first maps each student map to the teacher's channel count.

    Pruning changes channel counts, so a learnable 1x1 conv (no bias) per map pair bridges
    them; it trains with the student and is dropped at write-back (it is not in the graph).
    """

    needs = "maps"

    def __init__(self, channels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.adapters = nn.ModuleList(
            nn.Identity() if cs == ct else nn.Conv2d(cs, ct, 1, bias=False) for cs, ct in channels
        )

    def adapted(self, signals: Signals) -> list[Tensor]:
        """The student maps, each with the channels of its teacher map."""
        pairs = zip(self.adapters, signals.student_maps, strict=True)
        return [adapt(s) for adapt, s in pairs]


class Hint(AdaptedMaps):
    """FitNets: MSE between matched maps through the adapters."""

    name = "hint"

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(self.adapted(signals), signals.teacher_maps, strict=True)
        return sum(F.mse_loss(s, t) for s, t in pairs)


def _attention(features: Tensor) -> Tensor:
    return F.normalize(features.pow(2).mean(dim=1).flatten(1))


class Attention(DistillLoss):
    """Attention transfer: match normalised channel-energy maps (channel counts may differ)."""

    name = "at"
    needs = "maps"

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(signals.student_maps, signals.teacher_maps, strict=True)
        return sum((_attention(s) - _attention(t)).pow(2).mean() for s, t in pairs)


class AttentionMaps(DistillLoss):
    """MiniLM's attention transfer: KL(teacher || student) between the attention
    probabilities of each shared Softmax, row by row. Head pruning leaves the student fewer
    heads than the teacher, so both are averaged over heads first (the mean of
    distributions is one); averaged over rows, samples and layers."""

    name = "attn"
    needs = "attention"

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(signals.student_attention, signals.teacher_attention, strict=True)
        terms = []
        for student, teacher in pairs:
            s, t = student.mean(dim=1).clamp_min(1e-8), teacher.mean(dim=1).clamp_min(1e-8)
            terms.append((t * (t.log() - s.log())).sum(dim=-1).mean())
        if not terms:
            return signals.student_logits.sum() * 0.0
        return torch.stack(terms).mean()


def _similarity(features: Tensor) -> Tensor:
    flat = features.flatten(1)
    return F.normalize(flat @ flat.T)


class SimilarityPreserving(DistillLoss):
    """SP: the batch's pairwise similarity matrices of student and teacher maps agree."""

    name = "sp"
    needs = "maps"

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(signals.student_maps, signals.teacher_maps, strict=True)
        size = signals.student_logits.shape[0] ** 2
        return sum((_similarity(s) - _similarity(t)).pow(2).sum() / size for s, t in pairs)


def _distances(embedding: Tensor) -> Tensor:
    d = torch.cdist(embedding, embedding)
    return d / d[d > 0].mean().clamp_min(1e-12)


def _angles(embedding: Tensor) -> Tensor:
    diff = F.normalize(embedding.unsqueeze(0) - embedding.unsqueeze(1), dim=2)
    return torch.bmm(diff, diff.transpose(1, 2)).flatten()


class Relational(DistillLoss):
    """RKD: pairwise distances (weight 25) and triplet angles (weight 50) of embeddings."""

    name = "rkd"
    needs = "embedding"

    def forward(self, signals: Signals) -> Tensor:
        s, t = signals.student_embedding.flatten(1), signals.teacher_embedding.flatten(1)
        distance = F.smooth_l1_loss(_distances(s), _distances(t))
        angle = F.smooth_l1_loss(_angles(s), _angles(t))
        return 25.0 * distance + 50.0 * angle


def gram(first: Tensor, second: Tensor) -> Tensor:
    """FSP matrix [N, C1, C2] = F1^T F2 / (H*W); the larger map is average-pooled to the
    smaller one's size first (a no-op for maps of one size)."""
    size = min(first.shape[2:], second.shape[2:], key=lambda hw: hw.numel())
    first, second = (F.adaptive_avg_pool2d(m, size).flatten(2) for m in (first, second))
    return first @ second.transpose(1, 2) / first.shape[2]


def sections(maps: list[Tensor]) -> list[list[int]]:
    """Indices of consecutive maps with one spatial size (a resolution section), in order."""
    groups: list[list[int]] = []
    for index, value in enumerate(maps):
        if groups and maps[groups[-1][0]].shape[2:] == value.shape[2:]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


class FlowOfSolution(AdaptedMaps):
    """FSP (Yim et al. 2017): the Gram matrix between the first and last map of each
    resolution section, teacher vs adapted student, compared by MSE and summed over
    sections. The feature plan adds each section's first map when this loss is used."""

    name = "fsp"

    def flows(self, groups: list[list[int]]) -> list[tuple[int, int]]:
        """(first, last) map index of every section holding two or more maps."""
        return [(group[0], group[-1]) for group in groups if len(group) > 1]

    def forward(self, signals: Signals) -> Tensor:
        student, teacher = self.adapted(signals), signals.teacher_maps
        pairs = self.flows(sections(teacher))
        if not pairs:
            raise InputError(f"loss '{self.name}': no pair of matched maps to relate")
        return sum(
            F.mse_loss(gram(student[i], student[j]), gram(teacher[i], teacher[j])) for i, j in pairs
        )


class CrossLayerFlow(FlowOfSolution):
    """The cross-layer FSP of file 001: Gram matrices between the last maps of consecutive
    sections (stage outputs of different resolutions), the larger average-pooled to the
    smaller size, so knowledge flows across stages rather than within one."""

    name = "fspx"

    def flows(self, groups: list[list[int]]) -> list[tuple[int, int]]:
        """(last of section k, last of section k+1) for consecutive sections."""
        return [(a[-1], b[-1]) for a, b in itertools.pairwise(groups)]


TERMS: dict[str, type[DistillLoss]] = {
    cls.name: cls
    for cls in (
        CrossEntropy,
        LogitKD,
        OtherOutputs,
        MutualKL,
        Hint,
        Attention,
        AttentionMaps,
        SimilarityPreserving,
        Relational,
        FlowOfSolution,
        CrossLayerFlow,
    )
}


class Objective(nn.Module):
    """Weighted sum of loss terms."""

    def __init__(self, weights: dict[str, float], channels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.weights = weights
        self.terms = nn.ModuleDict({name: _term(TERMS[name], channels) for name in weights})

    def needs(self, kind: str) -> bool:
        return any(term.needs == kind for term in self.terms.values())

    def forward(self, signals: Signals) -> Tensor:
        return sum(self.weights[name] * term(signals) for name, term in self.terms.items())


def _term(cls: type[DistillLoss], channels: list[tuple[int, int]]) -> DistillLoss:
    """Map losses with adapters are built for the plan's channel counts."""
    return cls(channels) if issubclass(cls, AdaptedMaps) else cls()
