"""Distillation losses behind one base class, combined by weight into one objective.

Each strategy reads what it needs from `Signals`: logits (ce, kd), matched feature maps
(hint, at, sp) or the penultimate embedding (rkd). Formulas follow the CRD benchmark code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn


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


class DistillLoss(nn.Module, ABC):
    """A loss term; `needs` says which intermediate tensors the training loop must capture."""

    name: ClassVar[str]
    needs: ClassVar[str] = "logits"  # "logits", "maps" or "embedding"

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


class Hint(DistillLoss):
    """FitNets: MSE between matched maps through a learnable 1x1 adapter where channels differ.

    The adapters train with the student and are dropped at write-back.
    """

    name = "hint"
    needs = "maps"

    def __init__(self, channels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.adapters = nn.ModuleList(
            nn.Identity() if cs == ct else nn.Conv2d(cs, ct, 1, bias=False) for cs, ct in channels
        )

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(self.adapters, signals.student_maps, signals.teacher_maps, strict=True)
        return sum(F.mse_loss(adapt(s), t) for adapt, s, t in pairs)


def _attention(features: Tensor) -> Tensor:
    return F.normalize(features.pow(2).mean(dim=1).flatten(1))


class Attention(DistillLoss):
    """Attention transfer: match normalised channel-energy maps (channel counts may differ)."""

    name = "at"
    needs = "maps"

    def forward(self, signals: Signals) -> Tensor:
        pairs = zip(signals.student_maps, signals.teacher_maps, strict=True)
        return sum((_attention(s) - _attention(t)).pow(2).mean() for s, t in pairs)


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


TERMS: dict[str, type[DistillLoss]] = {
    cls.name: cls
    for cls in (CrossEntropy, LogitKD, Hint, Attention, SimilarityPreserving, Relational)
}


class Objective(nn.Module):
    """Weighted sum of loss terms."""

    def __init__(self, weights: dict[str, float], channels: list[tuple[int, int]]) -> None:
        super().__init__()
        self.weights = weights
        self.terms = nn.ModuleDict(
            {name: Hint(channels) if name == "hint" else TERMS[name]() for name in weights}
        )

    def needs(self, kind: str) -> bool:
        return any(term.needs == kind for term in self.terms.values())

    def forward(self, signals: Signals) -> Tensor:
        return sum(self.weights[name] * term(signals) for name, term in self.terms.items())
