"""KD throughput on a static-batch-1 export: the freed batch (mini-batches of 32) against
feeding one sample at a time (what training at the model's own batch means).

The digits CNN exported with batch 1 and `x.view(1, -1)`, distilled from the original for
one epoch on the same 512 training samples each way, alternated `--repeats` times; the
median training time per epoch gives samples per second.

    python benchmarks/real/kd_batch.py [--repeats 3] [--samples 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from onnxslim_kd.data import load_data  # noqa: E402
from onnxslim_kd.distill.api import distill  # noqa: E402
from onnxslim_kd.distill.options import DistillOptions  # noqa: E402
from onnxslim_kd.graph.load import load  # noqa: E402
from tests.real_exports import static_batch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=512)
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = static_batch(load(ROOT / "samples/digits/model.onnx"))
    data = load_data(ROOT / "samples/digits/train.npz", model, samples=args.samples)
    seconds: dict[str, list[float]] = {"batch 32 (freed)": [], "one sample at a time": []}
    for _ in range(args.repeats):
        for label, batch in (("batch 32 (freed)", 32), ("one sample at a time", 1)):
            options = DistillOptions(epochs=1, batch=batch, lr=1e-3, val_fraction=0.0)
            _, summary = distill(model, [model], data, options=options)
            seconds[label].append(summary["training"]["seconds"])
            print(label, summary["batching"], summary["training"]["seconds"], file=sys.stderr)
    result = {
        label: {
            "median_s": statistics.median(v),
            "samples_per_s": args.samples / statistics.median(v),
        }
        for label, v in seconds.items()
    }
    fast, slow = (result[k]["samples_per_s"] for k in seconds)
    result["ratio"] = fast / slow
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
