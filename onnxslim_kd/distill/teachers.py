"""Teachers: the uncompressed model(s) in onnxruntime, and in torch when features are needed.

Without augmentation a teacher's outputs depend only on the sample, so they are computed
once per dataset in onnxruntime and cached; several teachers form an ensemble whose
softened probabilities are averaged (the offline ensemble).
"""

from __future__ import annotations

import functools

import numpy as np
import onnx
import torch
from torch import Tensor

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.executor import GraphModule
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import batch_axes, fixed_batch, model_outputs
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.validate import run


class Ensemble:
    """Cached outputs of every teacher, and the first teacher as a frozen torch module."""

    def __init__(self, models: list[onnx.ModelProto], batch_size: int) -> None:
        if not models:
            raise InputError("distill: at least one teacher is needed")
        self.models = models
        self.batch_size = batch_size
        self._torch: GraphModule | None = None
        self._sessions: list | None = None

    def outputs(self, data: Dataset) -> dict[str, Tensor]:
        """Every output of each teacher on `data`, by name in graph order (the first is the
        one the logit losses read): [teachers, samples, ...] each."""
        runs = [list(run(model, data, self.batch_size).values()) for model in self.models]
        return self._by_name(runs)

    @functools.cached_property
    def output_names(self) -> list[str]:
        return [spec.name for spec in model_outputs(self.models[0])]

    @functools.cached_property
    def probability_outputs(self) -> frozenset[str]:
        """Outputs the first teacher computes with a Softmax (distributions, not scores)."""
        made_by = {o: n.op_type for n in self.models[0].graph.node for o in n.output}
        return frozenset(n for n in self.output_names if made_by.get(n) == "Softmax")

    def batch_outputs(self, feeds: dict[str, Tensor]) -> dict[str, Tensor]:
        """Teacher outputs on one (augmented) batch, run in onnxruntime: [teachers, batch, ...]."""
        if self._sessions is None:  # as many threads as torch: torchrun ranks share the cores
            threads = torch.get_num_threads()
            self._sessions = [
                make_session(model, threads=threads, spinning=False) for model in self.models
            ]
        arrays = {name: value.detach().cpu().numpy() for name, value in feeds.items()}
        runs = [
            _run_in_chunks(session, arrays, batch)
            for session, batch in zip(self._sessions, self.fixed_batches, strict=True)
        ]
        return self._by_name(runs)

    def _by_name(self, runs: list[list[np.ndarray]]) -> dict[str, Tensor]:
        """Outputs per name as [teachers, samples, ...]: each output's own sample axis (a
        state's axis 1) moved first; outputs not per sample are left out."""
        axes = self.output_axes
        return {
            name: _stacked([r[i] for r in runs]).movedim(axes[name] + 1, 1)
            for i, name in enumerate(self.output_names)
            if axes[name] is not None
        }

    @functools.cached_property
    def output_axes(self) -> dict[str, int | None]:
        return batch_axes(self.models[0], outputs=True)

    @functools.cached_property
    def fixed_batches(self) -> list[int | None]:
        return [fixed_batch(model) for model in self.models]

    @staticmethod
    def soft_targets(logits: Tensor, temperature: float) -> Tensor:
        """Average over teachers of softmax(logits / T) along the class axis."""
        return torch.softmax(logits / temperature, dim=2).mean(dim=0)

    @property
    def torch_teacher(self) -> GraphModule:
        """The first teacher in torch (built on first use), for intermediate features."""
        if self._torch is None:
            self._torch = GraphModule(self.models[0]).requires_grad_(False)
        return self._torch


def _stacked(outputs: list[np.ndarray]) -> Tensor:
    """One output of every teacher as [teachers, samples, ...]; teachers must agree on it."""
    shapes = {o.shape for o in outputs}
    if len(shapes) > 1:
        raise InputError(f"distill: teachers disagree on the output shape: {sorted(shapes)}")
    return torch.from_numpy(np.stack(outputs)).float()


def _run_in_chunks(session, arrays: dict[str, np.ndarray], batch: int | None) -> list[np.ndarray]:
    """All outputs of a session, fed `batch` samples at a time when the model fixes it."""
    count = len(next(iter(arrays.values())))
    if batch is None or batch == count:
        return session.run(None, arrays)
    parts = [
        session.run(None, {k: v[start : start + batch] for k, v in arrays.items()})
        for start in range(0, count, batch)
    ]
    return [np.concatenate(chunk) for chunk in zip(*parts, strict=True)]
