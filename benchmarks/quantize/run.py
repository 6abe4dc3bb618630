"""FP32 vs `quantize_static` at all defaults vs `onnxslim-kd quantize`, interleaved in one run.

Zoo models (random weights, legacy export) are calibrated and compared on random
224x224 crops of scikit-learn's two bundled photos (ImageNet normalisation), so
activations have natural-image statistics; the digits sample also reports accuracy.

    python benchmarks/quantize/run.py [--models resnet18,mobilenet_v2,efficientnet_b0,digits]
        [--samples 64] [--runs 50] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

from onnxruntime.quantization import quantize_static

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Dataset, load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.calibration import DatasetReader
from onnxslim_kd.quantize.coverage import coverage_of
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy, output_fidelity
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from photos import photo_crops  # noqa: E402


def model_and_data(name: str, samples: int) -> tuple[Path, Dataset, Dataset]:
    if name == "digits":
        path = ROOT / "samples/digits/model.onnx"
        model = load(path)
        calib = load_data(ROOT / "samples/digits/calib.npz", model, samples=samples)
        return path, calib, load_data(ROOT / "samples/digits/test.npz", model)
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "samples/zoo/export.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    path = zoo.ensure_exported(name, "legacy")
    calib = Dataset({"input": photo_crops(samples, seed=0)}, source="photo crops")
    return path, calib, Dataset({"input": photo_crops(samples, seed=1)}, source="photo crops")


def measure(name: str, samples: int, runs: int, threads: int) -> dict:
    path, calib, held_out = model_and_data(name, samples)
    fp32 = load(path)
    with tempfile.TemporaryDirectory() as tmp:
        default_path = Path(tmp) / "default.onnx"
        start = time.perf_counter()
        quantize_static(str(path), str(default_path), DatasetReader(calib, 0, len(calib), 1))
        default_seconds = time.perf_counter() - start
        default = load(default_path)
    start = time.perf_counter()
    options = QuantizeOptions(samples=samples, bench_runs=0)
    ours, summary = quantize_model(fp32, calib, options)
    ours_seconds = time.perf_counter() - start
    feeds = held_out.first(1)
    timing = bench(
        [("fp32", fp32, feeds), ("default", default, feeds), ("ours", ours, feeds)],
        threads=threads, runs=runs,
    )  # fmt: skip
    reference = run(fp32, held_out)
    record = {"model": name, "samples": samples, "latency": timing.as_dict()}
    for label, model, seconds in (
        ("default", default, default_seconds),
        ("ours", ours, ours_seconds),
    ):
        output = run(model, held_out)
        fidelity = {k: output_fidelity(reference[k], output[k]) for k in reference}
        first = next(iter(fidelity))
        record[label] = {
            "quantize_seconds": round(seconds, 1),
            "coverage": coverage_of(model).as_dict(),
            "top1_agreement": fidelity[first].top1_agreement,
            "sqnr_db": fidelity[first].sqnr_db,
            "accuracy": accuracy(output[first], held_out.labels)
            if held_out.labels is not None
            else None,
        }
    if held_out.labels is not None:
        record["fp32_accuracy"] = accuracy(reference[next(iter(reference))], held_out.labels)
    record["ours"]["data_types"] = summary.data_types
    return record


VARIANTS = {"fp32": "FP32", "default": "quantize_static defaults", "ours": "onnxslim-kd"}


def table(records: list[dict]) -> str:
    header = ["model", "variant", "p50 ms", "vs FP32", "vs defaults", "integer kernels",
              "top-1 agreement", "SQNR dB", "accuracy"]  # fmt: skip
    return markdown_table(header, [row for rec in records for row in _rows(rec)])


def _rows(rec: dict) -> list[tuple]:
    """One row per variant of a model record."""
    latency = {m["label"]: m for m in rec["latency"]["models"]}
    rows = []
    for label, variant in VARIANTS.items():
        side, lat = rec.get(label, {}), latency[label]
        cov = side.get("coverage")
        acc = side.get("accuracy", rec.get("fp32_accuracy") if label == "fp32" else None)
        agreement = side.get("top1_agreement")
        vs_default = latency["default"]["p50_ms"] / lat["p50_ms"]
        rows.append((
            rec["model"] if label == "fp32" else "",
            variant,
            f"{lat['p50_ms']:.2f}",
            f"{lat['speedup']:.2f}x",
            f"{vs_default:.2f}x" if label != "fp32" else "",
            f"{cov['integer']}/{cov['integer'] + cov['dq_float'] + cov['float']}" if cov else "",
            f"{agreement:.1%}" if agreement is not None else "",
            f"{side['sqnr_db']:.1f}" if "sqnr_db" in side else "",
            f"{acc:.2%}" if acc is not None else "",
        ))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,mobilenet_v2,efficientnet_b0,digits")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    records = [measure(m, args.samples, args.runs, args.threads) for m in args.models.split(",")]
    env = environment(args.threads)
    print(table(records))
    print(f"\n{env['cpu']['model']} ({', '.join(env['cpu']['isa'])}), {args.threads} threads, "
          f"onnxruntime {env['onnxruntime']}, batch 1, {args.runs} interleaved runs")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "models": records}, indent=2))


if __name__ == "__main__":
    main()
