"""torchvision segmentation models (random weights, 5 classes) exported the way users do:
dynamic batch and H/W, or a static batch of 1 at a fixed size; `out` only (no aux head)."""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.models import segmentation

SIZE = (96, 128)


class _OutOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def export_segmenter(path: Path, name: str, opset: int = 17, dynamic: bool = True) -> Path:
    torch.manual_seed(0)
    model = getattr(segmentation, name)(weights=None, weights_backbone=None, num_classes=5)
    model.aux_classifier = None
    axes = {"input": {0: "batch", 2: "h", 3: "w"}, "out": {0: "batch", 2: "h", 3: "w"}}
    torch.onnx.export(
        _OutOnly(model.eval()), (torch.randn(1, 3, *SIZE),), str(path), dynamo=False,
        opset_version=opset, input_names=["input"], output_names=["out"],
        dynamic_axes=axes if dynamic else None,
    )  # fmt: skip
    return path
