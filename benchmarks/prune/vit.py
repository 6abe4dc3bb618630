"""Transformer pruning on the ViT sample: MACs vs measured latency, accuracy before fine-tune.

samples/vit_digits (4 blocks, 4 heads of 16, MLP 256, width 64) pruned by `prune()` at
ratios 0.25 / 0.5 / 0.75: heads and MLP units only (exact), and with the residual width
too (`prune_norms`, patch embedding included: not exact). Calibration data from
samples/digits/calib.npz; accuracy on test.npz (540 images) in onnxruntime, no
fine-tuning. All versions are timed interleaved in one run at batch 32, and again at
batch 1 (2 threads), the speed-up being the ratio of medians; a row with the original's
Reshape targets made constant (what prune does after pruning) shows what that alone is
worth.

With `--vit-b-16`: torchvision's vit_b_16 (random weights, `--exporter` legacy or dynamo
export from samples/zoo/export.py, batch 1) at ratios 0.25 and 0.5, timed interleaved the
same way.

    python benchmarks/prune/vit.py [--runs 200] [--threads 2] [--json out.json]
        [--vit-b-16 [--exporter dynamo]]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.reshapes import constant_reshape_targets
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
RATIOS = (0.25, 0.5, 0.75)
BATCH = 32


def vit_b_16(threads: int, runs: int, exporter: str) -> dict:
    """MACs and latency of torchvision's vit_b_16 (`exporter`'s export) pruned at
    RATIOS[:2], interleaved."""
    spec = importlib.util.spec_from_file_location("zoo_export", ROOT / "samples/zoo/export.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    model = load(zoo.ensure_exported("vit_b_16", exporter))
    feeds = {"input": np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)}
    rows = [{"setting": "original", "macs": None, "params": None}]
    versions = [("original", model, feeds)]
    for ratio in RATIOS[:2]:
        pruned, summary = prune(model, PruneOptions(ratio=ratio))
        check(pruned)
        rows.append({
            "setting": f"vit_b_16 {ratio}",
            "macs": summary.macs_before / summary.macs_after,
            "params": summary.params_before / summary.params_after,
            "pruned": sorted({f"{g.size} -> {g.kept}" for g in summary.groups
                              if g.status == "pruned"}),
            "skipped": sum(g.status == "skipped" for g in summary.groups),
        })  # fmt: skip
        versions.append((rows[-1]["setting"], pruned, feeds))
        print(f"{rows[-1]['setting']}: MACs {rows[-1]['macs']:.2f}x fewer", flush=True)
    result = bench(versions, threads=threads, runs=runs, warmup=3)
    for row, latency in zip(rows, result.latencies, strict=True):
        row["p50_ms"], row["speedup"] = latency.median_ms, latency.speedup
    print(markdown_table(
        ["setting", "MACs fewer", "params fewer", "p50 ms (batch 1)", "speed-up"],
        [[r["setting"], "" if r["macs"] is None else f"{r['macs']:.2f}x",
          "" if r["params"] is None else f"{r['params']:.2f}x", f"{r['p50_ms']:.1f}",
          f"{r['speedup']:.2f}x"] for r in rows],
    ))  # fmt: skip
    return {"rows": rows, "bench": result.as_dict(), "exporter": exporter}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE / "vit_results.json")
    parser.add_argument("--vit-b-16", action="store_true")
    parser.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy",
                        help="the vit_b_16 export (--vit-b-16 only)")  # fmt: skip
    args = parser.parse_args()
    if args.vit_b_16:
        record = vit_b_16(args.threads, max(args.runs // 10, 10), args.exporter)
        suffix = "" if args.exporter == "legacy" else f"_{args.exporter}"
        path = args.json.with_name(f"vit_b_16{suffix}_results.json")
        path.write_text(json.dumps(record, indent=1, default=_plain) + "\n")
        return
    model = load(ROOT / "samples/vit_digits/model.onnx")
    calib = load_data(ROOT / "samples/digits/calib.npz", model)
    test = load_data(ROOT / "samples/digits/test.npz", model)
    feeds = {"input": test.inputs["input"][:BATCH]}
    reference = accuracy(run(model, test)["logits"], test.labels)
    # what prune's constant Reshape targets alone are worth, without pruning anything
    constant, _ = constant_reshape_targets(model)
    rows = [{"setting": setting, "macs": None, "params": None, "accuracy": reference}
            for setting in ("original", "original, Reshape targets constant")]  # fmt: skip
    versions = [("original", model, feeds), ("constant targets", constant, feeds)]
    for norms in (False, True):
        for ratio in RATIOS:
            options = PruneOptions(ratio=ratio, prune_norms=norms)
            pruned, summary = prune(model, options, calib)
            check(pruned)
            label = f"{'heads+MLP+width' if norms else 'heads+MLP'} {ratio}"
            rows.append({
                "setting": label,
                "macs": summary.macs_before / summary.macs_after,
                "params": summary.params_before / summary.params_after,
                "accuracy": accuracy(run(pruned, test)["logits"], test.labels),
                "groups": {g.id: f"{g.size} -> {g.kept}" for g in summary.groups
                           if g.status == "pruned"},
            })  # fmt: skip
            versions.append((label, pruned, feeds))
            print(f"{label}: MACs {rows[-1]['macs']:.2f}x fewer", flush=True)
    result = bench(versions, threads=args.threads, runs=args.runs, warmup=20)
    single = bench([(label, m, {"input": f["input"][:1]}) for label, m, f in versions],
                   threads=args.threads, runs=args.runs, warmup=20)  # fmt: skip
    for row, latency, one in zip(rows, result.latencies, single.latencies, strict=True):
        row["p50_ms"], row["speedup"] = latency.median_ms, latency.speedup
        row["p50_ms_batch_1"], row["speedup_batch_1"] = one.median_ms, one.speedup
    table = markdown_table(
        ["setting", "MACs fewer", "params fewer", "p50 ms (batch 32)", "speed-up",
         "speed-up (batch 1)", "accuracy, no fine-tune"],
        [[r["setting"], "" if r["macs"] is None else f"{r['macs']:.2f}x",
          "" if r["params"] is None else f"{r['params']:.2f}x", f"{r['p50_ms']:.3f}",
          f"{r['speedup']:.2f}x", f"{r['speedup_batch_1']:.2f}x",
          f"{100 * r['accuracy']:.2f}%"] for r in rows],
    )  # fmt: skip
    print(table)
    record = {"rows": rows, "bench": result.as_dict(), "bench_batch_1": single.as_dict(),
              "batch": BATCH, "median_ratio_runs": args.runs}  # fmt: skip
    args.json.write_text(json.dumps(record, indent=1, default=_plain) + "\n")


def _plain(value):
    return value.item() if isinstance(value, np.generic) else str(value)


if __name__ == "__main__":
    main()
