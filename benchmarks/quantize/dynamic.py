"""Static QDQ against dynamic MatMul INT8 on transformers, interleaved in one run.

Models: the ViT sample (trained; accuracy on 540 test digits) and two `nn.TransformerEncoder`
stacks built here with seeded random weights (4 layers, 8 heads, MLP 4x, 128 tokens,
width 256 and 512; output SQNR against FP32). Each is quantized by `quantize_model` with
`mode="static"` and `mode="dynamic"` (no latency gate, so both are returned), then FP32,
static and dynamic are timed interleaved at batch 1 and 32 (2 threads).

    PYTHONPATH=. python benchmarks/quantize/dynamic.py [--runs 50] [--json dynamic.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Dataset, load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.report.fidelity import accuracy, output_fidelity
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BATCHES = (1, 32)


def encoder(width: int) -> tuple[onnx.ModelProto, Dataset, Dataset]:
    """A 4-layer nn.TransformerEncoder exported like the tests' (dynamic batch, tokens)."""
    import torch

    from tests.attention_blocks import export

    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(width, 8, 4 * width, dropout=0.0, batch_first=True)
    module = torch.nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)
    model = export(module, torch.randn(2, 128, width))
    rng = np.random.default_rng(0)
    calib, test = (
        Dataset({"x": rng.standard_normal((count, 128, width), np.float32)}) for count in (64, 64)
    )
    return model, calib, test


def vit() -> tuple[onnx.ModelProto, Dataset, Dataset]:
    model = load(ROOT / "samples/vit_digits/model.onnx")
    digits = ROOT / "samples/digits"
    return model, load_data(digits / "calib.npz", model), load_data(digits / "test.npz", model)


def measure(name: str, model, calib, test, runs: int) -> list[dict]:
    reference = run(model, test)
    output = model.graph.output[0].name
    versions, rows = {"fp32": model}, []
    for mode in ("static", "dynamic"):
        options = QuantizeOptions(mode=mode, bench_runs=0)
        versions[mode], summary = quantize_model(model, calib, options, eval_data=test)
        produced = run(versions[mode], test)[output]
        row = {"model": name, "scheme": mode, "budget_met": summary.budget_met,
               "sqnr_db": output_fidelity(reference[output], produced).sqnr_db}  # fmt: skip
        if test.labels is not None:
            row["accuracy"] = accuracy(produced, test.labels)
            row["accuracy_fp32"] = accuracy(reference[output], test.labels)
        rows.append(row)
    for batch in BATCHES:
        feeds = test.first(batch)
        timing = bench([(k, v, feeds) for k, v in versions.items()], threads=2, runs=runs)
        for row, latency in zip(rows, timing.latencies[1:], strict=True):
            row[f"speedup_b{batch}"] = latency.speedup
            row[f"fp32_ms_b{batch}"] = timing.latencies[0].median_ms
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--json", type=Path, default=HERE / "dynamic.json")
    args = parser.parse_args()
    rows = measure("vit_digits", *vit(), args.runs)
    for width in (256, 512):
        rows += measure(f"encoder width {width}", *encoder(width), args.runs)
    print(markdown_table(
        ["model", "scheme", "fidelity", "speed-up batch 1", "speed-up batch 32"],
        [[r["model"], r["scheme"],
          f"acc {r['accuracy']:.2%} (FP32 {r['accuracy_fp32']:.2%})" if "accuracy" in r
          else f"SQNR {r['sqnr_db']:.1f} dB",
          f"{r['speedup_b1']:.2f}x", f"{r['speedup_b32']:.2f}x"] for r in rows],
    ))  # fmt: skip
    args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
