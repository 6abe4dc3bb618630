"""Resumable fine-tuning: the whole training state after every epoch, in one file.

A rerun with the same directory continues after the last finished epoch and ends with the
weights an uninterrupted run gets, because the shuffling generator and torch's global RNG
(which the shift augmentation draws from) are saved with the weights, the optimizer and
the schedule. The file records what the run was made from, and a run made from anything
else is refused rather than silently mixed with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import onnx
import torch

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.errors import InputError

STATE_FILE = "distill-state.pt"
#: Options that do not change the trained weights, so a resumed run may change them.
FREE_OPTIONS = ("max_seconds", "device", "checkpoint_dir")
OPTION_NAMES = {f.name for f in fields(DistillOptions)}


def fingerprint(
    options: DistillOptions,
    student: onnx.ModelProto,
    teachers: list[onnx.ModelProto],
    data: Dataset,
    val: Dataset | None,
) -> dict[str, str]:
    """What determines the trained weights: options by value, models and data by digest."""
    record = {
        name: json.dumps(value)
        for name, value in asdict(options).items()
        if name not in FREE_OPTIONS
    }
    record["student model"] = _digest(student.SerializeToString(deterministic=True))
    record["teachers"] = _digest(*(t.SerializeToString(deterministic=True) for t in teachers))
    record["training data"] = _data_digest(data)
    record["held-out data"] = _data_digest(val) if val is not None else "none"
    return record


class TrainCheckpoint:
    """The saved state in `directory` (loaded and checked on creation), and where to save.

    Only the `writer` (rank 0 under torchrun) saves; every rank loads.
    """

    def __init__(self, directory: Path, made_from: dict[str, str], writer: bool = True) -> None:
        self.path = directory / STATE_FILE
        self.made_from = made_from
        self.writer = writer
        self.state: dict[str, Any] | None = None
        if self.path.is_file():
            self.state = torch.load(self.path, map_location="cpu", weights_only=True)
            self._check(self.state["made_from"])

    def _check(self, saved: dict[str, str]) -> None:
        """Refuse, naming the first difference, a state made from other options or inputs."""
        for name, value in self.made_from.items():
            if saved.get(name) != value:
                values = f" ({saved.get(name)}, now {value})" if name in OPTION_NAMES else ""
                raise InputError(
                    f"distill: the checkpoint in {self.path.parent} was made with a different "
                    f"{name}{values}; resume with the same options or use another directory"
                )

    def save(self, state: dict[str, Any]) -> None:
        """Replace the saved state atomically: a kill mid-write leaves the previous epoch's."""
        if not self.writer:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        torch.save({**state, "made_from": self.made_from}, partial)
        os.replace(partial, self.path)


def _digest(*blobs: bytes) -> str:
    digest = hashlib.sha256()
    for blob in blobs:
        digest.update(hashlib.sha256(blob).digest())
    return digest.hexdigest()[:16]


def _data_digest(data: Dataset) -> str:
    arrays = [name.encode() + array.tobytes() for name, array in sorted(data.inputs.items())]
    labels = [data.labels.tobytes()] if data.labels is not None else []
    return _digest(*arrays, *labels)
