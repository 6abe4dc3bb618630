"""Does a model's position in an interleaved round bias its time? K identical copies of
one model timed in one fixed order (A B C ...) and in the rotated order `bench` uses
(each round starts one model later): each copy's speed-up against the first copy should
be 1.00x, with a 95% interval holding 1.0.

    python benchmarks/bench/position.py [--model samples/digits/model.onnx] [--copies 8]
        [--runs 100] [--repeat 1] [--threads 2] [--json benchmarks/bench/position.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import onnx

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def random_feeds(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """One sample of standard-normal float inputs (dynamic dims at 1): enough for timing."""
    rng = np.random.default_rng(0)
    return {
        spec.name: rng.standard_normal(
            [d.dim_value or 1 for d in spec.type.tensor_type.shape.dim]
        ).astype(np.float32)
        for spec in model.graph.input
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "samples/digits/model.onnx")
    parser.add_argument("--data", type=Path, help="an .npz (default: test.npz beside it or random)")
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="both orders this many times")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=HERE / "position.json")
    args = parser.parse_args()
    model = load(args.model)
    npz = args.data or args.model.with_name("test.npz")
    feeds = load_data(npz, model).first(1) if npz.is_file() else random_feeds(model)
    copies = [(f"copy {i}", model, feeds) for i in range(args.copies)]
    records, rows = {"fixed": [], "rotated": []}, []
    for order in [*records] * args.repeat:
        result = bench(copies, threads=args.threads, runs=args.runs, rotate=order == "rotated")
        records[order].append(result.as_dict())
        for lat in result.latencies[1:]:
            low, high = lat.interval
            holds = "yes" if low <= 1.0 <= high else "NO"
            rows.append((order, lat.label, f"{lat.median_ms:.3f}", f"{lat.speedup:.3f}x",
                         f"{low:.3f}-{high:.3f}x", holds))  # fmt: skip
        print(order, "done", flush=True)
    print(markdown_table(["order", "copy", "p50 ms", "vs copy 0", "95%", "holds 1.0"], rows))
    args.json.write_text(json.dumps({"model": str(args.model), "copies": args.copies,
                                     "orders": records}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
