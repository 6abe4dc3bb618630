"""Headline benchmark on the digits sample: every route side by side, timed in one run.

Rows: the original; onnxslim alone (lossless cleanup, `pip install onnxslim`);
onnxruntime's quantize_static with its defaults; our quantize alone; our prune + KD;
our full default recipe; and `compress --target-speedup` at 4x, 8x, 10x and 12x. All
models are timed interleaved (A B C ... A B C ...) at batch 1 and batch 32 with 2
threads; accuracy is on the 540 test images. Writes results.json and prints the
Markdown table that goes into the README.

    python benchmarks/headline/run.py [--runs 100] [--out benchmarks/headline]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, quantize_static

import onnxslim_kd as sk
from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Dataset
from onnxslim_kd.graph.load import external_files
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "samples" / "digits"


class _Reader(CalibrationDataReader):
    def __init__(self, data: Dataset) -> None:
        self.batches = iter(data.batches(1))

    def get_next(self):
        return next(self.batches, None)


def _cli(*args: str) -> float:
    """Run an onnxslim-kd command as a user would; return its wall time."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "onnxslim_kd", *args, "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}")
    return time.perf_counter() - start


def build(work: Path) -> dict[str, tuple[Path, float]]:
    """Every variant's model file and how long it took to make."""
    model = str(DIGITS / "model.onnx")
    train, calib, test = (str(DIGITS / f"{s}.npz") for s in ("train", "calib", "test"))
    out: dict[str, tuple[Path, float]] = {"original": (DIGITS / "model.onnx", 0.0)}

    import onnxslim

    start = time.perf_counter()
    onnx.save(onnxslim.slim(onnx.load(model)), work / "onnxslim.onnx")
    out["onnxslim (lossless cleanup)"] = (work / "onnxslim.onnx", time.perf_counter() - start)

    start = time.perf_counter()
    loaded = sk.load(model)
    quantize_static(model, work / "ort.onnx", _Reader(sk.load_data(calib, loaded)))
    out["quantize_static defaults"] = (work / "ort.onnx", time.perf_counter() - start)

    seconds = _cli("quantize", model, "-o", str(work / "q.onnx"), "--data", calib)
    out["onnxslim-kd quantize"] = (work / "q.onnx", seconds)

    recipe = work / "prune_kd.yaml"
    recipe.write_text(
        "passes:\n  - prune: {target_macs: 0.5, global_ranking: true}\n"
        "  - distill: {epochs: 30, lr: 0.001, augment_shift: 2, patience: 30}\n"
    )
    seconds = _cli("compress", model, "-o", str(work / "pkd.onnx"), "--recipe", str(recipe),
                   "--data", train, "--eval-data", test, "--bench-runs", "0")  # fmt: skip
    out["onnxslim-kd prune + KD"] = (work / "pkd.onnx", seconds)

    shared = str(work / "checkpoints")  # the default recipe is also the search's first candidate
    seconds = _cli("compress", model, "-o", str(work / "default.onnx"), "--data", train,
                   "--eval-data", test, "--bench-runs", "0", "--work-dir", shared)  # fmt: skip
    out["onnxslim-kd compress (default)"] = (work / "default.onnx", seconds)

    for target in (4, 8, 10, 12):
        path = work / f"target{target}.onnx"
        seconds = _cli("compress", model, "-o", str(path), "--data", train, "--eval-data", test,
                       "--target-speedup", str(target), "--bench-batch", "32",
                       "--work-dir", shared)  # fmt: skip
        out[f"onnxslim-kd --target-speedup {target}"] = (path, seconds)
    return out


def measure(variants: dict[str, tuple[Path, float]], runs: int) -> list[dict]:
    models = {name: sk.load(path) for name, (path, _) in variants.items()}
    test = sk.load_data(DIGITS / "test.npz", models["original"])
    rows = []
    timings = {}
    for batch in (1, 32):
        feeds = test.first(batch)
        result = bench([(n, m, feeds) for n, m in models.items()], threads=2, runs=runs)
        timings[batch] = {lat.label: lat for lat in result.latencies}
    for name, model in models.items():
        logits = run(model, test)["logits"]
        path, seconds = variants[name]
        size = path.stat().st_size + sum(p.stat().st_size for p in external_files(path))
        rows.append({
            "variant": name,
            "accuracy": float(np.mean(logits.argmax(1) == test.labels)),
            "size_bytes": size,
            "params": sk.inspect(model).params,
            "macs": sk.inspect(model).macs,
            "p50_ms_batch1": timings[1][name].median_ms,
            "speedup_batch1": timings[1][name].speedup,
            "p50_ms_batch32": timings[32][name].median_ms,
            "speedup_batch32": timings[32][name].speedup,
            "seconds_to_make": round(seconds, 1),
        })  # fmt: skip
    return rows


def table(rows: list[dict]) -> str:
    base = rows[0]["accuracy"]
    return markdown_table(
        ["variant", "accuracy", "drop (pts)", "size", "MACs", "batch 1", "batch 32", "made in"],
        [
            (r["variant"], f"{r['accuracy']:.2%}", f"{(base - r['accuracy']) * 100:+.2f}",
             f"{r['size_bytes'] / 1e6:.2f} MB", f"{r['macs'] / 1e6:.1f} M",
             f"{r['p50_ms_batch1']:.3f} ms ({r['speedup_batch1']:.2f}x)",
             f"{r['p50_ms_batch32']:.2f} ms ({r['speedup_batch32']:.2f}x)",
             f"{r['seconds_to_make']:.0f} s")
            for r in rows
        ],
    )  # fmt: skip


def _search_record(output: Path) -> dict:
    """The search section of a compress report: structures timed untuned, trials, choice."""
    report = json.loads(output.with_name(output.name + ".report.json").read_text())
    return report["search"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        variants = build(Path(tmp))
        rows = measure(variants, args.runs)
        searches = {name: _search_record(path) for name, (path, _) in variants.items()
                    if "--target-speedup" in name}  # fmt: skip
    record = {"environment": environment(2), "runs": args.runs, "rows": rows,
              "searches": searches}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(record, indent=2) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
