"""Peak memory of calibrating resnet18 on 256 samples of 3x224x224, per method.

Each method runs in a fresh process and reports its peak RSS (ru_maxrss), so the
numbers include onnxruntime, the model and the data (256 x 3 x 224 x 224 float32 =
154 MB).

    python benchmarks/quantize/memory.py [--methods minmax,entropy,percentile] [--samples 256]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from run import model_and_data  # the benchmark's photo crops (this script's directory)

from onnxslim_kd.graph.load import load
from onnxslim_kd.quantize.calibration import calibrate
from onnxslim_kd.quantize.prepare import prepare


def calibrate_once(method: str, samples: int) -> None:
    """Child process: calibrate and print seconds and peak RSS in MB."""
    path, calib, _ = model_and_data("resnet18", samples)
    prepared, _ = prepare(load(path))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        _, report = calibrate(prepared, calib, Path(tmp), method=method, samples=samples)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{method} {time.perf_counter() - start:.1f} {peak:.0f} {report.chunk_samples}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        calibrate_once(args.child, args.samples)
        return
    print("| method | samples | chunk | seconds | peak RSS MB |\n|---|---|---|---|---|")
    for method in args.methods.split(","):
        command = [sys.executable, __file__, "--child", method, "--samples", str(args.samples)]
        out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
        _, seconds, peak, chunk = out[-4:]
        print(f"| {method} | {args.samples} | {chunk} | {seconds} | {peak} |")


if __name__ == "__main__":
    main()
