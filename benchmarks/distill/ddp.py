"""Two torchrun processes (DDP, gloo) against one process: same options, same accuracy?

Digits pruned to 30% of its MACs is distilled from the unpruned model through the command
line as one process, under `torchrun --nproc_per_node 2`, and as one process again with one
thread (OMP_NUM_THREADS=1): same seed and options. The test accuracy (onnxruntime, 540
images) of each result and its largest weight difference from the first are recorded; the
one-thread run shows how far float summation order alone moves a run. Issue 7's target:
DDP within 0.5 points of one process.

    nice python benchmarks/distill/ddp.py [--epochs 10] [--lr 1e-3] [--seeds 0,1]
        [--launchers one,torchrun2,one1thread] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from onnx import numpy_helper

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "samples" / "digits"
TARGET_MACS = 0.3
#: name -> (command prefix, extra environment)
LAUNCHERS = {
    "one": ([sys.executable, "-m", "onnxslim_kd"], {}),
    "torchrun2": ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "2", "-m", "onnxslim_kd"], {}),
    "one1thread": ([sys.executable, "-m", "onnxslim_kd"], {"OMP_NUM_THREADS": "1"}),
}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--augment-shift", type=int, default=2)
    parser.add_argument("--seeds", default="0", help="comma-separated")
    parser.add_argument("--launchers", default=",".join(LAUNCHERS), help="comma-separated")
    parser.add_argument("--json", default=str(Path(__file__).with_name("ddp.json")))
    args = parser.parse_args()
    teacher = load(DIGITS / "model.onnx")
    train = load_data(DIGITS / "train.npz", teacher)
    test = load_data(DIGITS / "test.npz", teacher)
    student, _ = prune(teacher, PruneOptions(target_macs=TARGET_MACS), train, {})
    options = ["--epochs", str(args.epochs), "--lr", str(args.lr), "--patience", str(args.epochs),
               "--augment-shift", str(args.augment_shift), "-q"]  # fmt: skip
    names = args.launchers.split(",")
    runs, models = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        student_path = save(student, Path(tmp) / "pruned.onnx")
        for seed, name in ((seed, name) for seed in args.seeds.split(",") for name in names):
            launcher, env = LAUNCHERS[name]
            label = f"{name} seed {seed}"
            out, report = Path(tmp) / f"{len(runs)}.onnx", Path(tmp) / f"{len(runs)}.json"
            command = [*launcher, "distill", str(student_path), "-o", str(out), "--teacher",
                       str(DIGITS / "model.onnx"), "--data", str(DIGITS / "train.npz"),
                       "--json", str(report), "--seed", seed, *options]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(command, check=True, cwd=ROOT, env={**os.environ, **env})
            seconds = time.perf_counter() - start
            models[label] = load(out)
            summary = json.loads(report.read_text())
            test_accuracy = accuracy(run(models[label], test)["logits"], test.labels)
            runs[label] = {
                "test_accuracy": test_accuracy,
                "seconds": round(seconds, 1),
                "val_after": summary["val_after"],
                "training": summary["training"],
            }
            print(f"{label}: test accuracy {test_accuracy:.2%}, {seconds:.0f} s", flush=True)
    for label, result in runs.items():  # against the first launcher at the same seed
        first = f"{names[0]} seed {label.rsplit(' ', 1)[1]}"
        result["against"] = first
        result["gap_points"] = round(
            (result["test_accuracy"] - runs[first]["test_accuracy"]) * 100, 3
        )
        result["max_abs_weight_diff"] = _max_diff(models[first], models[label])
    record = {
        "environment": environment(None),
        "command_options": options,
        "teacher_test_accuracy": accuracy(run(teacher, test)["logits"], test.labels),
        "pruned_test_accuracy": accuracy(run(student, test)["logits"], test.labels),
        "runs": runs,
    }
    Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")
    for label, result in runs.items():
        print(f"{label}: {result['gap_points']:+.2f} points, max weight diff "
              f"{result['max_abs_weight_diff']:.2g} against {result['against']}")  # fmt: skip
    print(f"wrote {args.json}")


def _max_diff(a, b) -> float:
    want = {t.name: numpy_helper.to_array(t) for t in a.graph.initializer}
    got = {t.name: numpy_helper.to_array(t) for t in b.graph.initializer}
    return max(float(np.abs(want[name] - got[name]).max()) for name in want)


if __name__ == "__main__":
    main()
