"""Every command on models shaped like real exports, one row per (family, command).

Families (built here, no downloads; the digits weights are real, the heads random):
dynamic H/W (a detector-style export of the digits CNN), static batch 1 with the batch
baked into a Reshape, a face-detector-like net (box [N,4], landmarks [N,10], Softmax face
probability [N,2], box first), weights in Constant nodes at opset 11 with dynamic H/W,
a voice-activity net with a state input on axis 1 and a scalar sample rate, a
YOLO-style detector (tests/yolo_like.py), a CRNN text recogniser with a bidirectional LSTM
and a [T, N, C] output (tests/recognizer.py), and torchvision's segmenters LR-ASPP and
DeepLabV3 (MobileNetV3) and FCN-ResNet50 with dynamic H/W, LR-ASPP also with a static
batch of 1 (tests/segmentation.py). Random weights and random inputs beyond digits:
structure only.

Each row: the command, its exit code, MACs before/after, the latency ratio (compress
times original and result interleaved in one run), and the fidelity of every output
against the original on held-out data (SQNR in dB; top-1 agreement for class outputs).
Writes results.json and prints the Markdown table for the README.

    python benchmarks/real/run.py [--epochs 30] [--out benchmarks/real]
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

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from onnxslim_kd.graph.load import load  # noqa: E402
from onnxslim_kd.graph.save import save  # noqa: E402
from onnxslim_kd.graph.stats import model_stats  # noqa: E402
from onnxslim_kd.report.environment import environment  # noqa: E402
from onnxslim_kd.report.table import markdown_table  # noqa: E402
from tests.builders import conv_net  # noqa: E402
from tests.real_exports import (  # noqa: E402
    dynamic_spatial,
    face_like,
    static_batch,
    voice_activity,
)
from tests.recognizer import HEIGHT, export_recognizer  # noqa: E402
from tests.segmentation import SIZE, export_segmenter  # noqa: E402
from tests.yolo_like import export_detector  # noqa: E402

DIGITS = ROOT / "samples" / "digits"


def families(work: Path) -> dict[str, tuple[Path, Path, Path]]:
    """name -> (model, training/calibration data, held-out data)."""
    digits = load(DIGITS / "model.onnx")
    train, test = DIGITS / "train.npz", DIGITS / "test.npz"
    rng = np.random.default_rng(0)
    made = {
        "dynamic H/W (digits CNN)": (dynamic_spatial(digits), train, test),
        "static batch 1, view(1,-1)": (static_batch(digits), train, test),
    }
    face = face_like(conv_net())
    for name, count in (("faces_train", 512), ("faces_test", 128)):
        np.savez(work / f"{name}.npz", input=rng.standard_normal((count, 3, 8, 8), np.float32),
                 labels=rng.integers(0, 2, count))  # fmt: skip
    made["face-like (box, landmarks, prob)"] = (face, work / "faces_train.npz",
                                                work / "faces_test.npz")  # fmt: skip
    constants = dynamic_spatial(conv_net(weights_as_constants=True))
    constants.opset_import[0].version = 11
    for name, count in (("cls_train", 256), ("cls_test", 64)):
        np.savez(work / f"{name}.npz",
                 input=rng.standard_normal((count, 3, 48, 64), np.float32))  # fmt: skip
    made["Constant weights, opset 11, dynamic H/W"] = (constants, work / "cls_train.npz",
                                                      work / "cls_test.npz")  # fmt: skip
    for name, count in (("vad_train", 512), ("vad_test", 128)):
        np.savez(work / f"{name}.npz", audio=rng.standard_normal((count, 64), np.float32),
                 state=0.1 * rng.standard_normal((2, count, 16), np.float32),
                 sr=np.array(16000, np.int64))  # fmt: skip
    made["voice activity (state on axis 1, scalar sr)"] = (voice_activity(), work / "vad_train.npz",
                                                         work / "vad_test.npz")  # fmt: skip
    out = {}
    for index, (name, (model, data, held_out)) in enumerate(made.items()):
        out[name] = (save(model, work / f"family{index}.onnx"), data, held_out)
    for name, count in (("images_train", 128), ("images_test", 32)):
        np.savez(work / f"{name}.npz",
                 images=rng.standard_normal((count, 3, 64, 96), np.float32))  # fmt: skip
    out["YOLO-style detector, opset 12, dynamic H/W"] = (
        export_detector(work / "yolo.onnx", opset=12), work / "images_train.npz",
        work / "images_test.npz",
    )  # fmt: skip
    for name, count in (("lines_train", 128), ("lines_test", 32)):
        np.savez(work / f"{name}.npz",
                 image=rng.standard_normal((count, 1, HEIGHT, 64), np.float32))  # fmt: skip
    out["CRNN recogniser (BiLSTM, [T,N,C]), opset 12, dynamic width"] = (
        export_recognizer(work / "crnn.onnx", "lstm", 12), work / "lines_train.npz",
        work / "lines_test.npz",
    )  # fmt: skip
    for name, count in (("scenes_train", 64), ("scenes_test", 16)):
        np.savez(work / f"{name}.npz",
                 input=rng.standard_normal((count, 3, *SIZE), np.float32))  # fmt: skip
    scenes = (work / "scenes_train.npz", work / "scenes_test.npz")
    for label, name, opset, dynamic in (
        ("LR-ASPP MobileNetV3, opset 12, dynamic H/W", "lraspp_mobilenet_v3_large", 12, True),
        ("LR-ASPP MobileNetV3, opset 17, static batch 1", "lraspp_mobilenet_v3_large", 17, False),
        ("DeepLabV3 MobileNetV3, opset 17, dynamic H/W", "deeplabv3_mobilenet_v3_large", 17, True),
        ("FCN-ResNet50, opset 12, dynamic H/W", "fcn_resnet50", 12, True),
    ):
        path = export_segmenter(work / f"{name}{opset}{dynamic}.onnx", name, opset, dynamic)
        out[label] = (path, *scenes)
    return out


def commands(model: Path, data: Path, held_out: Path, out: Path, epochs: int) -> dict:
    """The command lines of one family, as a user would type them."""
    base = [sys.executable, "-m", "onnxslim_kd"]
    compress = [*base, "compress", model, "-o", out, "--data", data, "--eval-data", held_out,
                "--distill-epochs", str(epochs), "--bench-runs", "50",
                "--threads", "2"]  # fmt: skip
    return {
        "inspect --data": [*base, "inspect", model, "--data", data],
        "prune --ratio 0.3": [*base, "prune", model, "-o", out, "--ratio", "0.3", "--data", data],
        "decompose --data": [*base, "decompose", model, "-o", out, "--data", data],
        "quantize": [
            *base,
            "quantize",
            model,
            "-o",
            out,
            "--data",
            data,
            "--eval-data",
            held_out,
            "--threads",
            "2",
        ],
        "compress (default)": compress,
        "compress --target-speedup 2": [*compress, "--target-speedup", "2"],
    }


def fidelity(original: Path, result: Path, held_out: Path) -> str:
    """Every output's SQNR (and agreement for class outputs) against the original."""
    proc = subprocess.run(
        [sys.executable, "-m", "onnxslim_kd", "compare", original, result, "--data", held_out,
         "--json"], capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        return f"compare failed: {proc.stderr.strip()}"
    parts = []
    for name, entry in json.loads(proc.stdout)["outputs"].items():
        text = f"{name} {entry['sqnr_db']:.1f} dB"
        if entry["top1_agreement"] is not None:
            text += f" / {entry['top1_agreement']:.0%}"
        parts.append(text)
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30, help="compress --distill-epochs")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for family, (model, data, held_out) in families(work).items():
            macs_before = model_stats(load(model), shapes_of(model, data)).macs
            for label, line in commands(model, data, held_out, work / "out.onnx",
                                        args.epochs).items():  # fmt: skip
                (work / "out.onnx").unlink(missing_ok=True)
                started = time.perf_counter()
                proc = subprocess.run([str(a) for a in line], capture_output=True, text=True,
                                      check=False)  # fmt: skip
                seconds = time.perf_counter() - started
                record = {"family": family, "command": label, "exit": proc.returncode,
                          "seconds": round(seconds, 1),
                          "stderr": proc.stderr.strip().splitlines()[-1:]}  # fmt: skip
                wrote = (work / "out.onnx").exists()
                if wrote:
                    after = model_stats(load(work / "out.onnx"), shapes_of(model, data)).macs
                    record["macs_ratio"] = round(macs_before / max(after, 1), 2)
                    record["fidelity"] = fidelity(model, work / "out.onnx", held_out)
                    report = work / "out.onnx.report.json"
                    if label.startswith("compress") and report.exists():
                        stages = json.loads(report.read_text())["stages"]
                        record["speedup"] = stages[-1]["speedup"] if stages else None
                records.append(record)
                rows.append((family, label, record["exit"], f"{record['seconds']:.0f} s",
                             _fmt(record.get("macs_ratio"), "x"), _fmt(record.get("speedup"), "x"),
                             record.get("fidelity", "-")))  # fmt: skip
                print(f"{family} | {label} | exit {proc.returncode}", file=sys.stderr, flush=True)
    header = ["family", "command", "exit", "time", "MACs", "speed-up", "fidelity per output"]
    table = markdown_table(header, rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(
        json.dumps({"environment": environment(2), "rows": records}, indent=2) + "\n"
    )
    print(table)


def shapes_of(model: Path, data: Path) -> dict:
    from onnxslim_kd.data import load_data, with_data_shapes

    loaded = load(model)
    return with_data_shapes(loaded, load_data(data, loaded, samples=1), None)


def _fmt(value, unit: str) -> str:
    return "-" if value is None else f"{value:.2f}{unit}"


if __name__ == "__main__":
    main()
