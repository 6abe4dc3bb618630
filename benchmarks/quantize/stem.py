"""The stem in FP32 against all-INT8, per model, timed against FP32 in one interleaved run.

For each benchmark model with a stem (`onnxslim_kd.quantize.stem`), our static INT8 at
its defaults but untimed (`bench_runs=0`, so no gate chooses) and with the budget off
(`max_drop=1`, so no layer falls back and the two builds differ in the stem alone), once
as built and once with the stem kept in FP32; the three models are timed in rotated
rounds and the table gives each one's speed-up over FP32 with its 95% interval, and the
stem's effect (ratio of the two INT8 medians). What `quantize` does with it: the gate
times both and keeps the faster.

    python benchmarks/quantize/peer_models.py && python benchmarks/quantize/shapes_detector.py
    PYTHONPATH=. python benchmarks/quantize/stem.py --json benchmarks/quantize/stem.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.stem import stem_region
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.table import markdown_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ROOT, case

MODELS = (
    "digits,textline,detector,detector_trained,mobilenet_v3_small,mobilenet_v2,resnet18,"
    "efficientnet_b0"
)


def measure(name: str, args: argparse.Namespace) -> dict:
    """Build both INT8 models of `name` and time them against FP32, interleaved."""
    setup = case(name, args.samples, args.cache, test_samples=1)
    model = load(setup.path)
    stem = stem_region(model)
    builds = {}
    for label, exclude in (("all-INT8", []), ("stem FP32", stem)):
        options = QuantizeOptions(samples=args.samples, bench_runs=0, max_drop=1.0,
                                  exclude=exclude)  # fmt: skip
        builds[label] = quantize_model(model, setup.calib, options)[0]
    feeds = setup.calib.first(1)
    timed = bench(
        [("FP32", model, feeds), *((label, q, feeds) for label, q in builds.items())],
        threads=args.threads, runs=args.runs,
    )  # fmt: skip
    rows = {lat.label: lat.as_dict() for lat in timed.latencies}
    effect = rows["all-INT8"]["p50_ms"] / rows["stem FP32"]["p50_ms"]
    return {"model": name, "stem": stem, "latency": rows, "stem_effect": round(effect, 4)}


def table(records: list[dict]) -> str:
    rows = []
    for record in records:
        cells = record["latency"]
        speed = [
            f"{cells[k]['speedup']:.2f}x ({cells[k]['speedup_interval'][0]:.2f}-"
            f"{cells[k]['speedup_interval'][1]:.2f}x)"
            for k in ("all-INT8", "stem FP32")
        ]
        stem = f"{record['stem'][0]} + {len(record['stem']) - 1}"
        rows.append([record["model"], stem, f"{cells['FP32']['p50_ms']:.2f}", *speed,
                     f"{record['stem_effect']:.3f}x"])  # fmt: skip
    headers = ["model", "stem", "FP32 ms", "all-INT8 vs FP32 (95%)", "stem FP32 vs FP32 (95%)",
               "stem FP32 vs all-INT8"]  # fmt: skip
    return markdown_table(headers, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    parser.add_argument("--json")
    args = parser.parse_args()
    records = [measure(name, args) for name in args.models.split(",")]
    print(table(records))
    if args.json:
        document = {"environment": environment(args.threads), "runs": args.runs,
                    "models": records}  # fmt: skip
        Path(args.json).write_text(json.dumps(document, indent=1) + "\n")


if __name__ == "__main__":
    main()
