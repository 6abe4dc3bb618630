"""A YOLO-style detector written in torch (random weights), exported the way users export
theirs: C2f blocks (Split in halves, bottlenecks added back, Concat), an SPPF block
(chained MaxPools concatenated), an upsample + Concat neck, and a decoupled head whose box
coordinates and class scores are concatenated into one output [N, 4 + C, anchors]."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def conv(c_in: int, c_out: int, k: int = 3, s: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, k // 2, bias=False),
                         nn.BatchNorm2d(c_out), nn.SiLU())  # fmt: skip


class Bottleneck(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = conv(c, c), conv(c, c)

    def forward(self, x):
        return x + self.cv2(self.cv1(x))


class C2f(nn.Module):
    def __init__(self, c_in: int, c_out: int, n: int = 1) -> None:
        super().__init__()
        self.c = c_out // 2
        self.cv1 = conv(c_in, 2 * self.c, 1)
        self.m = nn.ModuleList(Bottleneck(self.c) for _ in range(n))
        self.cv2 = conv((2 + n) * self.c, c_out, 1)

    def forward(self, x):
        parts = list(self.cv1(x).split((self.c, self.c), 1))
        parts.extend(m(parts[-1]) for m in self.m)
        return self.cv2(torch.cat(parts, 1))


class SPPF(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = conv(c, c // 2, 1), conv(c * 2, c, 1)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat((x, y1, y2, self.pool(y2)), 1))


class Detector(nn.Module):
    """Backbone to stride 16, neck back to stride 8, a decoupled head on both scales."""

    def __init__(self, classes: int = 3, width: int = 32) -> None:
        super().__init__()
        w = width
        self.stem = conv(3, w // 2, 3, 2)
        self.b1 = nn.Sequential(conv(w // 2, w, 3, 2), C2f(w, w))
        self.b2 = nn.Sequential(conv(w, 2 * w, 3, 2), C2f(2 * w, 2 * w))
        self.b3 = nn.Sequential(conv(2 * w, 4 * w, 3, 2), C2f(4 * w, 4 * w), SPPF(4 * w))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.neck = C2f(6 * w, 2 * w)
        widths = (2 * w, 4 * w)
        self.box = nn.ModuleList(nn.Sequential(conv(c, w), nn.Conv2d(w, 4, 1)) for c in widths)
        self.cls = nn.ModuleList(nn.Sequential(conv(c, w), nn.Conv2d(w, classes, 1))
                                 for c in widths)  # fmt: skip

    def forward(self, x):
        p4 = self.b2(self.b1(self.stem(x)))
        p5 = self.b3(p4)
        p4 = self.neck(torch.cat((self.up(p5), p4), 1))
        outs = []
        for i, feature in enumerate((p4, p5)):
            box, score = self.box[i](feature), self.cls[i](feature).sigmoid()
            outs.append(torch.cat((box, score), 1).flatten(2))
        return torch.cat(outs, 2)


def export_detector(
    path: Path, opset: int = 17, static_batch: bool = False, width: int = 32
) -> Path:
    """Export with dynamic batch and H/W (or a static batch of 1) at `opset`."""
    torch.manual_seed(0)
    model = Detector(width=width).eval()
    dummy = torch.randn(1, 3, 64, 64)
    axes = None if static_batch else {"images": {0: "batch", 2: "h", 3: "w"},
                                      "output": {0: "batch", 2: "anchors"}}  # fmt: skip
    torch.onnx.export(model, (dummy,), str(path), dynamo=False, opset_version=opset,
                      input_names=["images"], output_names=["output"],
                      dynamic_axes=axes)  # fmt: skip
    return path
