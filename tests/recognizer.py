"""A CRNN-style text-line recogniser exported from torch: conv features -> columns ->
bidirectional LSTM or GRU -> per-step class log-probabilities [T, N, C] (CTC layout), with
a dynamic batch and a dynamic image width, as OCR recognisers ship. Random weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

HEIGHT = 16
CLASSES = 12


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]


class Recognizer(nn.Module):
    def __init__(self, rnn: str) -> None:
        super().__init__()
        self.features = nn.Sequential(  # a small VGG-style CRNN backbone
            *_block(1, 16), nn.MaxPool2d(2), *_block(16, 32), nn.MaxPool2d(2),
            *_block(32, 48), *_block(48, 48), nn.MaxPool2d((2, 1)),
            nn.Conv2d(48, 32, (HEIGHT // 8, 1)), nn.ReLU(),
        )  # fmt: skip
        layer = {"lstm": nn.LSTM, "gru": nn.GRU}[rnn]
        self.rnn = layer(32, 24, bidirectional=True)
        self.head = nn.Linear(48, CLASSES)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        columns = self.features(image).squeeze(2).permute(2, 0, 1)  # [T, N, 32]
        steps, _ = self.rnn(columns)
        return self.head(steps).log_softmax(-1)


def export_recognizer(path: Path, rnn: str = "lstm", opset: int = 17) -> Path:
    """Export with the legacy exporter (what OCR toolkits use); batch and width dynamic."""
    torch.manual_seed(3)
    model = Recognizer(rnn).eval()
    with torch.no_grad():  # BN statistics that are not the identity
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    dummy = torch.randn(2, 1, HEIGHT, 64)
    torch.onnx.export(
        model, (dummy,), str(path), dynamo=False, opset_version=opset,
        input_names=["image"], output_names=["logprobs"],
        dynamic_axes={"image": {0: "batch", 3: "width"}, "logprobs": {0: "steps", 1: "batch"}},
    )  # fmt: skip
    return path
