"""Do onnxruntime's offline transformer fusions pay on our transformers? FP32, timed
interleaved against the graphs as they are (onnxruntime's session fusions apply to both).

`onnxruntime.transformers.optimizer.optimize_model(model_type="vit")` on the ViT sample
and on it pruned at 0.75 (heads + MLP, what `prune()` writes), at batch 1 and 32, 2
threads; fidelity checked on the calibration images.

    python benchmarks/quantize/fusions.py [--runs 100]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from onnxruntime.transformers.optimizer import optimize_model

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.fidelity import output_fidelity
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path, default=HERE / "fusions.json")
    args = parser.parse_args()
    model = load(ROOT / "samples/vit_digits/model.onnx")
    calib = load_data(ROOT / "samples/digits/calib.npz", model)
    pruned, _ = prune(model, PruneOptions(ratio=0.75), calib)
    versions, record = [], {}
    for name, graph, heads in (("ViT sample", model, 4), ("pruned 0.75", pruned, 1)):
        optimizer = optimize_model(graph, model_type="vit", num_heads=heads, hidden_size=64,
                                   opt_level=0)  # fmt: skip
        fused = optimizer.model
        sqnr = output_fidelity(run(graph, calib)["logits"], run(fused, calib)["logits"]).sqnr_db
        stats = {k: v for k, v in optimizer.get_fused_operator_statistics().items() if v}
        record[name] = {"fused_ops": stats, "sqnr_db": sqnr}
        versions += [(name, graph), (f"{name}, fused", fused)]
    rows = []
    for batch in (1, 32):
        feeds = {"input": calib.inputs["input"][:batch]}
        timing = bench([(k, m, feeds) for k, m in versions], threads=2, runs=args.runs)
        ms = {lat.label: lat.median_ms for lat in timing.latencies}
        for name in record:
            record[name][f"speedup_b{batch}"] = ms[name] / ms[f"{name}, fused"]
            rows.append(
                (
                    name,
                    batch,
                    ", ".join(f"{k} {v}" for k, v in record[name]["fused_ops"].items()),
                    f"{ms[name]:.3f}",
                    f"{ms[f'{name}, fused']:.3f}",
                    f"{record[name][f'speedup_b{batch}']:.2f}x",
                )
            )
    print(markdown_table(["model", "batch", "fused", "p50 ms as is", "p50 ms fused",
                          "fused vs as is"], rows))  # fmt: skip
    args.json.write_text(json.dumps(record, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
