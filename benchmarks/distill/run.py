"""Distillation after compression on digits: which loss recovers the most, at one budget.

Three students of the digits sample: pruned to 30% of its MACs (global ranking with the
training data as calibration, as the `compress` default recipe prunes), Tucker-
decomposed at a low energy, and run at half resolution after the stem (spatial pruning,
25% of the MACs, what `compress --target-speedup` starts from). Each is fine-tuned with
every loss at the default recipe's settings (30 epochs, lr 1e-3, 2-pixel shift
augmentation, no early stop, seed 0) and measured on the 540 test images in
onnxruntime; a table like the CRD paper's. The `ensemble` row is KD from two teachers:
the sample model and a second one trained by the sample's own code with another
initialisation seed, cached in ~/.cache/onnxslim-kd/.

    python benchmarks/distill/run.py [--epochs 30] [--jobs 2] [--json results.json]
        [--losses ce,kd,ensemble,dml,fsp,fspx,sp,at,hint,rkd] [--tucker-losses ce,kd,ensemble]
        [--half-res-losses ce,kd]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import onnx
import torch

from onnxslim_kd.data import load_data
from onnxslim_kd.decompose.core import decompose
from onnxslim_kd.decompose.ranks import make_selector
from onnxslim_kd.distill.api import distill
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.table import markdown_table

DIGITS = Path(__file__).resolve().parents[2] / "samples" / "digits"
CACHE = Path.home() / ".cache" / "onnxslim-kd" / "distill-benchmark"
TARGET_MACS = 0.3
TUCKER_ENERGY = 0.5
SECOND_TEACHER_SEED = 1
LABELS = {"ce": "CE only", "kd": "KD", "ensemble": "KD, two-teacher ensemble"}


@dataclass
class Job:
    """One fine-tune: a student file, its loss and its teacher files."""

    student: str  # "pruned", "tucker" or "half-res"
    path: str
    loss: str
    teachers: list[str]
    epochs: int
    lr: float
    threads: int


def test_accuracy(model: onnx.ModelProto) -> float:
    test = load_data(DIGITS / "test.npz", model)
    return accuracy(run(model, test)["logits"], test.labels)


def fine_tune(job: Job) -> dict:
    """Run one job (in a worker process) and return its record."""
    torch.set_num_threads(job.threads)
    teachers = [load(path) for path in job.teachers]
    train = load_data(DIGITS / "train.npz", teachers[0])
    loss = "kd" if job.loss == "ensemble" else job.loss
    options = DistillOptions(epochs=job.epochs, loss=loss, lr=job.lr, augment_shift=2,
                             patience=job.epochs)  # fmt: skip
    start = time.perf_counter()
    model, summary = distill(load(job.path), teachers, train, options=options)
    seconds = time.perf_counter() - start
    return {**asdict(job), "test_accuracy": test_accuracy(model), "seconds": seconds, **summary}


def second_teacher() -> Path:
    """The digits recipe retrained with another init seed (same data, shifts and schedule)."""
    path = CACHE / f"digits-seed{SECOND_TEACHER_SEED}.onnx"
    if path.exists():
        return path
    spec = importlib.util.spec_from_file_location("digits_train", DIGITS / "train.py")
    sample = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sample)
    sample.configure_determinism()
    torch.manual_seed(SECOND_TEACHER_SEED)
    model = sample.DigitsResNet()
    sample.train(model, *sample.split(*sample.load_images())["train"], epochs=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    sample.export(model, path)
    return path


def students(teacher: onnx.ModelProto, losses: dict[str, str]) -> dict[str, Path]:
    """The compressed students that have losses to run, written to the cache so worker
    processes can load them."""
    train = load_data(DIGITS / "train.npz", teacher)
    made = {}
    if losses["pruned"]:
        made["pruned"], _ = prune(teacher, PruneOptions(target_macs=TARGET_MACS,
                                  global_ranking=True), train, {})  # fmt: skip
    if losses["tucker"]:
        made["tucker"], _ = decompose(teacher, make_selector(energy=TUCKER_ENERGY), method="tucker")
    if losses["half-res"]:  # spatial pruning: the stem's stride doubled, channels untouched
        made["half-res"], _ = prune(teacher, PruneOptions(ratio=0.0, downsample=2))
    CACHE.mkdir(parents=True, exist_ok=True)
    return {name: save(model, CACHE / f"{name}.onnx") for name, model in made.items()}


def table(
    teacher_accuracy: float, base: dict[str, dict], records: list[dict], losses: dict[str, str]
) -> str:
    """Rows are methods, columns the two students, as in the CRD paper."""
    names = list(base)
    header = ["fine-tune", *(f"{n} ({base[n]['macs']:.0%} MACs)" for n in names)]
    rows = [["teacher (uncompressed)", *(f"{teacher_accuracy:.2%}" for _ in names)]]
    rows.append(["no fine-tune", *(f"{base[n]['accuracy']:.2%}" for n in names)])
    for loss in dict.fromkeys(filter(None, ",".join(losses.values()).split(","))):
        found = {r["student"]: r["test_accuracy"] for r in records if r["loss"] == loss}
        label = LABELS.get(loss, f"KD + {loss}")
        rows.append([label, *(f"{found[n]:.2%}" if n in found else "not run" for n in names)])
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--losses", default="ce,kd,ensemble,dml,fsp,fspx,sp,at,hint,rkd")
    parser.add_argument("--tucker-losses", default="ce,kd,ensemble", help="'' skips Tucker")
    parser.add_argument("--half-res-losses", default="ce,kd", help="'' skips half resolution")
    parser.add_argument("--jobs", type=int, default=2, help="fine-tunes run in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--json", help="write the results here (again after every run)")
    args = parser.parse_args()
    teacher_path = DIGITS / "model.onnx"
    teacher = load(teacher_path)
    losses = {"pruned": args.losses, "tucker": args.tucker_losses,
              "half-res": args.half_res_losses}  # fmt: skip
    paths = students(teacher, losses)
    base = {
        name: {"accuracy": test_accuracy(load(path)),
               "macs": model_stats(load(path)).macs / model_stats(teacher).macs}
        for name, path in paths.items()
    }  # fmt: skip
    jobs = [
        Job(name, str(path), loss, [str(teacher_path)], args.epochs, args.lr, args.threads)
        for name, path in paths.items()
        for loss in losses[name].split(",")
    ]
    record = {
        "command": "python benchmarks/distill/run.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "json"),
        "environment": environment(args.threads * args.jobs),
        "teacher_accuracy": test_accuracy(teacher),
        "students": base,
        "runs": [],
    }  # fmt: skip
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=spawn) as pool:
        futures = [pool.submit(fine_tune, job) for job in jobs if job.loss != "ensemble"]
        if any(job.loss == "ensemble" for job in jobs):  # trained while the others run
            extra = second_teacher()
            record["second_teacher_accuracy"] = test_accuracy(load(extra))
            futures += [
                pool.submit(fine_tune, replace(job, teachers=[*job.teachers, str(extra)]))
                for job in jobs
                if job.loss == "ensemble"
            ]
        for future in as_completed(futures):
            run_record = future.result()
            record["runs"].append(run_record)
            print(run_record["student"], run_record["loss"],
                  f"{run_record['test_accuracy']:.2%}", f"{run_record['seconds']:.0f} s",
                  flush=True)  # fmt: skip
            record["table"] = table(record["teacher_accuracy"], base, record["runs"], losses)
            if args.json:
                Path(args.json).write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(record["table"])


if __name__ == "__main__":
    main()
