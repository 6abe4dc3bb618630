"""Export the models of the peer benchmark that need torch (run once in the test env).

Random weights with BatchNorm statistics re-estimated on photo crops, so activations have
the spread of a trained network's rather than the identity BN of a fresh one:

- `detector`: the YOLO-style detector of tests/yolo_like.py with its box coordinates
  decoded to pixels (sigmoid x 320), so its one output joins boxes 0..320 with class
  scores 0..1 in a final Concat, as exported YOLOv8 heads do;
- `mobilenet_v3_small`, `mobilenet_v2`, `resnet18`, `efficientnet_b0`: torchvision,
  legacy export.

    python benchmarks/quantize/peer_models.py --out-dir .cache/bench
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(HERE), str(ROOT)]
from photos import photo_crops  # noqa: E402

from tests.yolo_like import Detector  # noqa: E402

DETECTOR_SIZE = 320
DETECTOR_CLASSES = 8
BN_BATCHES = 8
#: torchvision classifiers of the benchmark, random weights with re-estimated BN.
CLASSIFIERS = ("mobilenet_v3_small", "mobilenet_v2", "resnet18", "efficientnet_b0")


class PixelDetector(nn.Module):
    """Boxes decoded to pixels and joined with the class scores in one output."""

    def __init__(self) -> None:
        super().__init__()
        self.net = Detector(classes=DETECTOR_CLASSES)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        raw = self.net(images)  # [N, 4 + classes, anchors]
        boxes = raw[:, :4].sigmoid() * DETECTOR_SIZE
        return torch.cat((boxes, raw[:, 4:]), 1)


@torch.no_grad()
def reestimate_bn(model: nn.Module, size: int) -> nn.Module:
    """BN running statistics as the cumulative average over BN_BATCHES batches of crops."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    for seed in range(BN_BATCHES):
        model(torch.from_numpy(photo_crops(8, seed=100 + seed, size=size)))
    return model.eval()


def export(model: nn.Module, path: Path, size: int, names: tuple[str, str]) -> None:
    dummy = torch.from_numpy(photo_crops(1, seed=0, size=size))
    torch.onnx.export(
        model, (dummy,), str(path), dynamo=False, opset_version=17,
        input_names=[names[0]], output_names=[names[1]],
        dynamic_axes={names[0]: {0: "batch"}, names[1]: {0: "batch"}},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / ".cache/bench")
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    detector = reestimate_bn(PixelDetector(), DETECTOR_SIZE)
    export(detector, args.out_dir / "detector.onnx", DETECTOR_SIZE, ("images", "output"))
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "samples/zoo/export.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    for name in CLASSIFIERS:
        model = reestimate_bn(zoo.build_model(name), 224)
        export(model, args.out_dir / f"{name}.onnx", 224, ("input", "logits"))
    print(f"wrote {sorted(p.name for p in args.out_dir.glob('*.onnx'))}")


if __name__ == "__main__":
    main()
