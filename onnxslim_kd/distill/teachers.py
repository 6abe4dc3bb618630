"""Teachers: the uncompressed model(s) in onnxruntime, and in torch when features are needed.

Without augmentation a teacher's outputs depend only on the sample, so they are computed
once per dataset in onnxruntime and cached; several teachers form an ensemble whose
softened probabilities are averaged (the offline ensemble).
"""

from __future__ import annotations

import numpy as np
import onnx
import torch
from torch import Tensor

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.executor import GraphModule
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import fixed_batch, model_outputs
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

    def logits(self, data: Dataset) -> Tensor:
        """First output of each teacher on `data`: [teachers, samples, ...]."""
        outputs = []
        for model in self.models:
            first = model_outputs(model)[0].name
            outputs.append(run(model, data, self.batch_size)[first])
        shapes = {o.shape for o in outputs}
        if len(shapes) > 1:
            raise InputError(f"distill: teachers disagree on the output shape: {sorted(shapes)}")
        return torch.from_numpy(np.stack(outputs)).float()

    def batch_logits(self, feeds: dict[str, Tensor]) -> Tensor:
        """Teacher outputs on one (augmented) batch, run in onnxruntime: [teachers, batch, ...]."""
        if self._sessions is None:  # as many threads as torch: torchrun ranks share the cores
            threads = torch.get_num_threads()
            self._sessions = [
                make_session(model, threads=threads, spinning=False) for model in self.models
            ]
        arrays = {name: value.detach().cpu().numpy() for name, value in feeds.items()}
        outputs = [
            _run_in_chunks(session, arrays, fixed_batch(model))
            for session, model in zip(self._sessions, self.models, strict=True)
        ]
        return torch.from_numpy(np.stack(outputs)).float()

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


def _run_in_chunks(session, arrays: dict[str, np.ndarray], batch: int | None) -> np.ndarray:
    """First output of a session, fed `batch` samples at a time when the model fixes it."""
    count = len(next(iter(arrays.values())))
    if batch is None or batch == count:
        return session.run(None, arrays)[0]
    parts = [
        session.run(None, {k: v[start : start + batch] for k, v in arrays.items()})[0]
        for start in range(0, count, batch)
    ]
    return np.concatenate(parts)
