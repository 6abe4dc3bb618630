"""Resume long compress runs from the last finished stage.

After each pass the stage's model and record are written to a work directory, under a
key made of the input model's bytes, the recipe so far and the data; a rerun with the
same key loads the stage instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import onnx

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save, write_text_atomic


class Checkpoints:
    """Stage models and records in `directory`, keyed by everything that determines them."""

    def __init__(self, directory: Path, model: onnx.ModelProto, data: Dataset | None) -> None:
        self.directory = directory  # made by the first store: a refused run leaves nothing
        digest = hashlib.sha256(model.SerializeToString(deterministic=True))
        if data is not None:
            for name, array in sorted(data.inputs.items()):
                digest.update(name.encode() + array.tobytes())
        self.base = digest.hexdigest()

    def _key(self, recipe_so_far: list[dict[str, Any]]) -> str:
        text = json.dumps(recipe_so_far, sort_keys=True, default=str)
        return hashlib.sha256((self.base + text).encode()).hexdigest()[:16]

    def stage_dir(self, recipe_so_far: list[dict[str, Any]]) -> Path:
        """Scratch space of the stage that ends `recipe_so_far`, for a pass's own checkpoints."""
        return self.directory / f"{self._key(recipe_so_far)}.d"

    def load(self, recipe_so_far: list[dict[str, Any]]) -> tuple[onnx.ModelProto, dict] | None:
        key = self._key(recipe_so_far)
        model_path, record_path = self.directory / f"{key}.onnx", self.directory / f"{key}.json"
        if not (model_path.is_file() and record_path.is_file()):
            return None
        return load(model_path), json.loads(record_path.read_text())

    def store(
        self, recipe_so_far: list[dict[str, Any]], model: onnx.ModelProto, record: dict
    ) -> None:
        key = self._key(recipe_so_far)
        self.directory.mkdir(parents=True, exist_ok=True)
        save(model, self.directory / f"{key}.onnx")
        write_text_atomic(self.directory / f"{key}.json", json.dumps(record, default=str))
        shutil.rmtree(self.stage_dir(recipe_so_far), ignore_errors=True)
