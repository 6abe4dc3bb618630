"""Export randomly initialised torchvision classifiers to ONNX with both torch exporters.

The models test how onnxslim-kd copes with real-world graph structure (residuals, depthwise
and grouped convs, squeeze-excite, concat-heavy blocks, LayerNorm), so weights are random
and nothing is downloaded. Exports live in a cache outside git because they are large.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
import torchvision

ARCHITECTURES: tuple[str, ...] = (
    "resnet18",
    "resnet50",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "densenet121",
    "shufflenet_v2_x1_0",
    "regnet_x_400mf",
    "squeezenet1_1",
    "vgg11_bn",
    "googlenet",
    "convnext_tiny",
    "mnasnet1_0",
    "resnext50_32x4d",
)
#: Transformers for structural sweeps and benchmarks (benchmarks/prune/vit.py); not in the
#: test sweep over ARCHITECTURES, where exporting and pruning them would cost minutes.
TRANSFORMERS: tuple[str, ...] = ("vit_b_16",)
EXPORTERS = ("legacy", "dynamo")
INPUT_SHAPE = (1, 3, 224, 224)
BUILDER_KWARGS: dict[str, dict[str, bool]] = {
    "googlenet": {"aux_logits": False, "init_weights": False},
}


def default_cache_dir() -> Path:
    """Return `$ONNXSLIM_KD_ZOO` or `~/.cache/onnxslim-kd/zoo`."""
    env = os.environ.get("ONNXSLIM_KD_ZOO")
    return Path(env) if env else Path.home() / ".cache" / "onnxslim-kd" / "zoo"


def build_model(name: str) -> torch.nn.Module:
    """Build the architecture with seeded random weights, in eval mode."""
    torch.manual_seed(0)
    builder = getattr(torchvision.models, name)
    return builder(weights=None, **BUILDER_KWARGS.get(name, {})).eval()


def export_legacy(model: torch.nn.Module, dummy: torch.Tensor, path: Path) -> None:
    """TorchScript-based exporter: single self-contained file, opset 17, dynamic batch."""
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def export_dynamo(model: torch.nn.Module, dummy: torch.Tensor, path: Path) -> None:
    """torch.export-based exporter; weights go to `<name>.onnx.data` beside the model."""
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        dynamo=True,
        external_data=True,
        input_names=["input"],
        output_names=["logits"],
        verbose=False,  # keep CLI output to one line per model
    )
    if not path.with_name(path.name + ".data").is_file():
        raise RuntimeError(f"dynamo exporter wrote no external data for {path.name}")


EXPORT_FUNCTIONS = {"legacy": export_legacy, "dynamo": export_dynamo}


def model_path(name: str, exporter: str, cache_dir: Path | None = None) -> Path:
    """Return where the cached `.onnx` for this model and exporter lives."""
    return (cache_dir or default_cache_dir()) / exporter / f"{name}.onnx"


def ensure_exported(name: str, exporter: str, cache_dir: Path | None = None) -> Path:
    """Export the model unless cached; return the `.onnx` path.

    Files are written to a temporary directory and moved in with the `.onnx` last, so its
    presence means the export (including any external data) is complete.
    """
    if name not in ARCHITECTURES + TRANSFORMERS:
        known = ARCHITECTURES + TRANSFORMERS
        raise ValueError(f"unknown architecture {name!r}; choose from {known}")
    if exporter not in EXPORTERS:
        raise ValueError(f"unknown exporter {exporter!r}; choose from {EXPORTERS}")
    target = model_path(name, exporter, cache_dir)
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
        staged = Path(tmp) / target.name
        EXPORT_FUNCTIONS[exporter](build_model(name), torch.randn(INPUT_SHAPE), staged)
        for extra in sorted(Path(tmp).iterdir()):
            if extra != staged:
                os.replace(extra, target.parent / extra.name)
        os.replace(staged, target)
    return target


def exported_size(path: Path) -> int:
    """Bytes of the model plus its external data file, if any."""
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.is_file() else 0)


def parse_list(value: str, allowed: tuple[str, ...]) -> list[str]:
    """Parse a comma-separated CLI list, rejecting unknown names early."""
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(unknown)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=None, help="default: $ONNXSLIM_KD_ZOO")
    parser.add_argument(
        "--models", type=lambda v: parse_list(v, ARCHITECTURES), default=list(ARCHITECTURES)
    )
    parser.add_argument(
        "--exporters", type=lambda v: parse_list(v, EXPORTERS), default=list(EXPORTERS)
    )
    args = parser.parse_args()
    cache_dir = args.cache or default_cache_dir()
    failures = 0
    for exporter in args.exporters:
        for name in args.models:
            cached = model_path(name, exporter, cache_dir).is_file()
            started = time.perf_counter()
            try:
                path = ensure_exported(name, exporter, cache_dir)
            except Exception as error:  # report every failure, keep exporting the rest
                failures += 1
                print(f"{exporter:6} {name:20} FAILED {type(error).__name__}: {error}", flush=True)
                continue
            seconds = time.perf_counter() - started
            status = "cached" if cached else f"{seconds:6.1f}s"
            size_mb = exported_size(path) / 2**20
            print(f"{exporter:6} {name:20} {status:>8} {size_mb:8.1f} MiB  {path}", flush=True)
    if failures:
        raise SystemExit(f"{failures} export(s) failed")


if __name__ == "__main__":
    main()
