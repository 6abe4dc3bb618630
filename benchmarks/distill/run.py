"""Distillation after pruning: digits pruned to 30% of its MACs, fine-tuned at one budget.

Test accuracy (onnxruntime, 540 images) with no fine-tune, CE-only fine-tune, logit KD and
KD plus each feature loss, all at the same epochs, learning rate and seed; a table like the
CRD paper's. The teacher is the unpruned digits model.

    python benchmarks/distill/run.py [--epochs 8] [--lr 1e-3] [--threads 2] [--json out.json]
        [--losses ce,kd,hint,at,rkd,sp]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from onnxslim_kd.data import load_data
from onnxslim_kd.distill.api import distill
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.table import markdown_table

DIGITS = Path(__file__).resolve().parents[2] / "samples" / "digits"
TARGET_MACS = 0.3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--losses", default="ce,kd,hint,at,rkd,sp")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    teacher = load(DIGITS / "model.onnx")
    train = load_data(DIGITS / "train.npz", teacher)
    test = load_data(DIGITS / "test.npz", teacher)
    student, _ = prune(teacher, PruneOptions(target_macs=TARGET_MACS), train, {})
    macs = model_stats(student).macs / model_stats(teacher).macs

    def test_accuracy(model) -> float:
        return accuracy(run(model, test)["logits"], test.labels)

    rows = [("teacher (unpruned)", test_accuracy(teacher), "", "")]
    rows.append((f"pruned to {macs:.0%} MACs, no fine-tune", test_accuracy(student), "", ""))
    records = []
    for loss in args.losses.split(","):
        options = DistillOptions(epochs=args.epochs, loss=loss, lr=args.lr, patience=args.epochs)
        start = time.perf_counter()
        model, summary = distill(student, [teacher], train, options=options)
        seconds = time.perf_counter() - start
        label = "CE only" if loss == "ce" else "KD" if loss == "kd" else f"KD + {loss}"
        rows.append(
            (label, test_accuracy(model), f"{seconds:.0f} s", summary["training"]["best_epoch"])
        )
        records.append({"loss": loss, "test_accuracy": rows[-1][1], "seconds": seconds, **summary})
        print(label, f"{rows[-1][1]:.2%}", f"{seconds:.0f} s", flush=True)
    table = [(name, f"{acc:.2%}", t, best) for name, acc, t, best in rows]
    print(markdown_table(["student", "test accuracy", "time", "best epoch"], table))
    if args.json:
        record = {"environment": environment(args.threads), "epochs": args.epochs, "lr": args.lr,
                  "macs_fraction": macs, "rows": table, "runs": records}  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
