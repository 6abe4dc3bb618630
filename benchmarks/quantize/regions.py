"""Would per-region INT8 be faster than FP32? Each class of compute op kept in FP32 (or
alone in INT8), timed interleaved against FP32 and all-INT8 in one run.

Classes by structure at the model's input size: depthwise convs, pointwise (1x1) convs,
dense kxk convs, convs on 1x1 maps (squeeze-excitation), Gemm. Fidelity is not judged
here (the budget is opened), only speed.

    python benchmarks/quantize/regions.py [--model .cache/bench/mobilenet_v3_small.onnx]
        [--runs 60] [--threads 2] [--json regions.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import onnx

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.shape_inference import static_shapes
from onnxslim_kd.graph.walk import attribute
from onnxslim_kd.quantize import QuantizeOptions, quantize_model

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from photos import photo_crops  # noqa: E402

#: Any fidelity passes: this measures speed only.
SPEED_ONLY = {"bench_runs": 0, "force_int8": True, "max_drop": 1.0, "min_sqnr": -1e9}


def op_classes(model: onnx.ModelProto, size: int) -> dict[str, list[str]]:
    """Compute nodes by class, from their weights and input shapes at batch 1."""
    shapes = static_shapes(model, {model.graph.input[0].name: [1, 3, size, size]})
    weights = {t.name: t.dims for t in model.graph.initializer}
    kinds = ("depthwise", "pointwise", "dense", "on 1x1 maps", "gemm")
    classes: dict[str, list[str]] = {kind: [] for kind in kinds}
    for node in model.graph.node:
        if node.op_type == "Gemm":
            classes["gemm"].append(node.name)
        elif node.op_type == "Conv":
            if shapes[node.input[0]][2:] == [1, 1]:
                kind = "on 1x1 maps"
            elif (attribute(node, "group") or 1) > 1:
                kind = "depthwise"
            else:
                kind = "pointwise" if weights[node.input[1]][2] == 1 else "dense"
            classes[kind].append(node.name)
    return {k: v for k, v in classes.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = HERE.parents[1] / ".cache/bench/mobilenet_v3_small.onnx"
    parser.add_argument("--model", type=Path, default=default)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--runs", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    fp32 = load(args.model)
    calib = Dataset({fp32.graph.input[0].name: photo_crops(64, seed=0, size=args.size)})
    classes = op_classes(fp32, args.size)
    compute = [name for names in classes.values() for name in names]
    variants: list[tuple[str, list[str]]] = [("all INT8", [])]
    variants += [(f"{kind} in FP32", names) for kind, names in classes.items()]
    variants += [(f"only {kind} in INT8", [n for n in compute if n not in names])
                 for kind, names in classes.items()]  # fmt: skip
    models = [("FP32", fp32)]
    for label, exclude in variants:
        options = QuantizeOptions(samples=64, exclude=exclude, **SPEED_ONLY)
        models.append((label, quantize_model(fp32, calib, options)[0]))
    timing = bench([(label, m, calib.first(1)) for label, m in models], threads=args.threads,
                   runs=args.runs)  # fmt: skip
    rows = [(m["label"], m["p50_ms"], m["speedup"]) for m in timing.as_dict()["models"]]
    print({kind: len(names) for kind, names in classes.items()})
    for label, p50, speedup in rows:
        print(f"{label:32s} {p50:7.3f} ms  {speedup:.2f}x")
    if args.json:
        record = {"model": str(args.model), "classes": classes, "latency": timing.as_dict()}
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
