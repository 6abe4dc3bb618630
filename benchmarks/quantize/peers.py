"""INT8 side by side with the peers, interleaved in one run: FP32, onnxruntime's QDQ best
practice (and on a CPU without VNNI also with the 7-bit weights its docs advise there),
NNCF's ONNX PTQ and AMD Quark's ONNX quantizer (each when installed), onnxslim-kd;
fidelity per model.

Run in the benchmark environment (onnxslim-kd, nncf, amd-quark, which pins onnx 1.22 and
brings torch) after `peer_models.py` has exported the detector and the torchvision
classifiers, and `shapes_detector.py` has trained the other detector, in the test env:

    python -m venv /tmp/quark && /tmp/quark/bin/pip install torch==2.13.0
    /tmp/quark/bin/pip install amd-quark==0.13 nncf==3.4.0 onnxruntime==1.32.0 \
        onnx-graphsurgeon scikit-learn pillow && /tmp/quark/bin/pip install --no-deps -e .

    python benchmarks/quantize/peers.py [--models digits,textline,detector,...]
        [--samples 128] [--test-samples 512] [--runs 50] [--threads 2] [--json peers.json]

Each variant of ours is also compared with the best peer on the same test samples: the
difference of the headline metric and its 95% paired-bootstrap interval (the samples are
resampled together for both), since 128 near-tied random-weight predictions put a
single tool's agreement within about +-0.05 of its expectation.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import Dataset, load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.calibration import DatasetReader
from onnxslim_kd.quantize.speed_gate import describe_timing
from onnxslim_kd.quantize.target import detect_target
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy, ctc_decode, output_fidelity, top1_agreement
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
from photos import photo_crops  # noqa: E402

Metric = Callable[[np.ndarray, np.ndarray, Dataset], dict[str, float]]


@dataclass
class Case:
    """A model, its calibration and test data, and what fidelity means for it."""

    path: Path
    calib: Dataset
    test: Dataset
    metric: Metric


def labelled(reference: np.ndarray, candidate: np.ndarray, test: Dataset) -> dict[str, float]:
    return {"accuracy": accuracy(candidate, test.labels, -1)}


def text_lines(reference: np.ndarray, candidate: np.ndarray, test: Dataset) -> dict[str, float]:
    read = ctc_decode(candidate, len(test.labels))
    truth = [[c for c in row if c >= 0] for row in test.labels.tolist()]
    exact = float(np.mean([r == t for r, t in zip(read, truth, strict=True)]))
    return {"char_accuracy": accuracy(candidate, test.labels, -1), "exact_match": exact}


def agreement(reference: np.ndarray, candidate: np.ndarray, test: Dataset) -> dict[str, float]:
    return {"top1_agreement": top1_agreement(reference, candidate)}


#: Detections of the random-weight detector are anchors whose best class score is above
#: this quantile of FP32's (its scores are near-ties: no fixed threshold separates them).
DETECTION_QUANTILE = 0.99
#: The trained detector's (shapes_detector.py) score threshold, as deployed.
SCORE_THRESHOLD = 0.5


def detection_f1(
    reference: np.ndarray, candidate: np.ndarray, test: Dataset, threshold: float | None = None
) -> dict[str, float]:
    """F1 of the candidate's detections against FP32's, anchor by anchor: a hit is the
    same anchor detected with the same class and a box (cx, cy, w, h) at IoU >= 0.5.
    Detections score above `threshold`, by default above the DETECTION_QUANTILE of FP32's."""
    if threshold is None:
        threshold = np.quantile(reference[:, 4:].max(1), DETECTION_QUANTILE)

    def detect(out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return out[:, 4:].max(1) > threshold, out[:, 4:].argmax(1)

    ref_keep, ref_cls = detect(reference)
    cand_keep, cand_cls = detect(candidate)
    hits = ref_keep & cand_keep & (ref_cls == cand_cls) & (_iou(reference, candidate) >= 0.5)
    precision = hits.sum() / max(cand_keep.sum(), 1)
    recall = hits.sum() / max(ref_keep.sum(), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1_vs_fp32": float(f1), "detections_fp32": int(ref_keep.sum())}


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    def corners(out: np.ndarray) -> tuple[np.ndarray, ...]:
        cx, cy, w, h = (out[:, i] for i in range(4))
        return cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2

    ax0, ay0, ax1, ay1 = corners(a)
    bx0, by0, bx1, by1 = corners(b)
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = (ax1 - ax0) * (ay1 - ay0) + (bx1 - bx0) * (by1 - by0) - inter
    return inter / np.maximum(union, 1e-9)


def case(name: str, samples: int, cache: Path, test_samples: int) -> Case:
    if name in ("digits", "textline"):
        folder = ROOT / "samples" / name
        model = load(folder / "model.onnx")
        calib = load_data(folder / "calib.npz", model, samples=samples).without_labels()
        metric = labelled if name == "digits" else text_lines
        return Case(folder / "model.onnx", calib, load_data(folder / "test.npz", model), metric)
    path = cache / f"{name}.onnx"
    if not path.is_file():
        script = "shapes_detector.py" if name == "detector_trained" else "peer_models.py"
        raise SystemExit(f"{path} missing: run benchmarks/quantize/{script} first")
    if name == "detector_trained":
        model = load(path)
        calib = load_data(cache / "shapes_calib.npz", model, samples=samples)
        test = load_data(cache / "shapes_test.npz", model)
        return Case(path, calib, test, functools.partial(detection_f1, threshold=SCORE_THRESHOLD))
    size, key, metric = (320, "images", detection_f1) if name == "detector" else (
        224, "input", agreement)  # fmt: skip
    calib = Dataset({key: photo_crops(samples, seed=0, size=size)}, source="photo crops")
    test = Dataset({key: photo_crops(test_samples, seed=1, size=size)}, source="photo crops")
    return Case(path, calib, test, metric)


def ort_qdq(path: Path, calib: Dataset, out: Path, reduce_range: bool = False) -> None:
    """onnxruntime's documented CPU best practice: pre-process, QDQ, U8 activations, S8
    per-channel weights, MinMax; with `reduce_range`, 7-bit weights, as its docs advise
    where the CPU has no VNNI (the u8s8 multiply-add saturates)."""
    prepared = out.with_name("prepared.onnx")
    with contextlib.chdir(out.parent):  # it leaves temporary files in the working directory
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared), str(out), DatasetReader(calib, 0, len(calib), 1),
        quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8, per_channel=True, calibrate_method=CalibrationMethod.MinMax,
        reduce_range=reduce_range,
    )  # fmt: skip


def nncf_ptq(path: Path, calib: Dataset, out: Path) -> None:
    """`nncf.quantize` at its defaults on the ONNX model."""
    import nncf

    feeds = [calib.take(np.array([i])).inputs for i in range(len(calib))]
    quantized = nncf.quantize(onnx.load(str(path)), nncf.Dataset(feeds), subset_size=len(feeds))
    onnx.save(quantized, str(out))


def quark_ptq(path: Path, calib: Dataset, out: Path) -> None:
    """AMD Quark's ONNX quantizer with its recommended CPU INT8 configuration, U8S8_AAWS
    (QDQ, U8 activations with percentile ranges, S8 per-tensor weights, CLE)."""
    from quark.onnx import ModelQuantizer
    from quark.onnx.quantization.config import Config, get_default_config

    config = Config(global_quant_config=get_default_config("U8S8_AAWS"))
    reader = DatasetReader(calib, 0, len(calib), 1)
    with contextlib.chdir(out.parent):  # it writes quantized_info.csv there
        ModelQuantizer(config).quantize_model(str(path), str(out), reader)


def ours(**chosen: str) -> Callable[[Path, Dataset, Path], dict]:
    """`onnxslim-kd quantize` with the `chosen` options, otherwise its defaults (fidelity
    floor on a held-out fifth, speed gate)."""

    def quantize(path: Path, calib: Dataset, out: Path) -> dict:
        options = QuantizeOptions(samples=len(calib), **chosen)
        model, summary = quantize_model(load(path), calib, options)
        onnx.save(model, str(out))
        record = {"result": summary.result, "kept_float": sorted(summary.excluded)}
        if summary.latency:  # the speed gate's own timing and its verdict
            record["gate"] = f"{describe_timing(summary.latency)}: {summary.latency['verdict']}"
        if "auto" in summary.calibration:
            record["method"] = summary.calibration["auto"]["chosen"]
        return record

    return quantize


#: Peer tools by label: the module that tells they are installed, and how to run them.
PEERS = {"nncf": ("nncf", nncf_ptq), "quark": ("quark.onnx", quark_ptq)}


def peer_available(module: str) -> bool:
    """Whether a peer tool is installed (they live in the benchmark environment only)."""
    return importlib.util.find_spec(module) is not None


#: Resamples of the test set for the paired interval against the best peer.
BOOTSTRAP_ROUNDS = 1000


def paired_difference(
    metric: Metric, reference: np.ndarray, ours_out: np.ndarray, peer_out: np.ndarray,
    test: Dataset, rounds: int = BOOTSTRAP_ROUNDS,
) -> dict:  # fmt: skip
    """Ours minus the peer on the metric's first (headline) value, and its 95% percentile
    interval over test sets resampled with replacement, the same samples for both."""

    labels = Dataset({}, test.labels, test.source)  # what metrics read: no inputs to copy

    def difference(index: np.ndarray) -> float:
        sub, ref = labels.take(index), reference[index]
        return headline(metric, ref, ours_out[index], sub) - headline(
            metric, ref, peer_out[index], sub
        )

    count = len(reference)
    rng = np.random.default_rng(0)
    draws = [difference(rng.integers(0, count, count)) for _ in range(rounds)]
    low, high = np.percentile(draws, [2.5, 97.5])
    delta = difference(np.arange(count))
    return {"delta": round(delta, 4), "interval": [round(float(low), 4), round(float(high), 4)]}


def headline(metric: Metric, reference: np.ndarray, output: np.ndarray, test: Dataset) -> float:
    """The metric's first value, the one the tools are ranked on."""
    return next(iter(metric(reference, output, test).values()))


def against_best_peer(record: dict, outputs: dict[str, np.ndarray], reference: np.ndarray,
                      c: Case) -> None:  # fmt: skip
    """Each variant of ours against the peer with the best headline metric."""
    peers = [label for label in record["tools"] if not label.startswith("ours")]
    best = max(peers, key=lambda label: headline(c.metric, reference, outputs[label], c.test))
    for label in record["tools"]:
        if label.startswith("ours"):
            record["tools"][label]["vs_best_peer"] = {
                "peer": best,
                **paired_difference(c.metric, reference, outputs[label], outputs[best], c.test),
            }


def measure(name: str, args: argparse.Namespace) -> dict:
    c = case(name, args.samples, args.cache, args.test_samples)
    fp32 = load(c.path)
    tools: dict[str, Callable] = {"ort_qdq": ort_qdq}
    if detect_target() == "x86-avx2":
        tools["ort_qdq_rr"] = functools.partial(ort_qdq, reduce_range=True)
    tools |= {"ours": ours(), "ours_nearest": ours(rounding="nearest"),
              "ours_auto": ours(method="auto")}  # fmt: skip
    tools |= {label: tool for label, (module, tool) in PEERS.items() if peer_available(module)}
    record: dict = {"model": name, "samples": len(c.calib), "tools": {}}
    models = [("fp32", fp32)]
    reference = run(fp32, c.test)
    output = next(iter(reference))
    record["fp32"] = c.metric(reference[output], reference[output], c.test)
    outputs: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, tool in tools.items():
            out = Path(tmp) / f"{label}.onnx"
            start = time.perf_counter()
            extra = tool(c.path, c.calib, out) or {}
            seconds = time.perf_counter() - start
            model = load(out)
            models.append((label, model))
            cand = outputs[label] = run(model, c.test)[output]
            record["tools"][label] = {
                "seconds": round(seconds, 1),
                "sqnr_db": output_fidelity(reference[output], cand).sqnr_db,
                **c.metric(reference[output], cand, c.test),
                **extra,
            }
            print(f"{name}: {label} {record['tools'][label]}", flush=True)
    against_best_peer(record, outputs, reference[output], c)
    feeds = c.test.first(1)
    timing = bench([(label, m, feeds) for label, m in models], threads=args.threads,
                   runs=args.runs)  # fmt: skip
    record["latency"] = timing.as_dict()
    return record


LABELS = {"fp32": "FP32", "ort_qdq": "ORT QDQ U8S8 per-channel",
          "ort_qdq_rr": "ORT QDQ U8S8 per-channel reduce_range", "nncf": "NNCF (defaults)",
          "quark": "Quark U8S8_AAWS", "ours": "onnxslim-kd (defaults)",
          "ours_nearest": "onnxslim-kd --rounding nearest",
          "ours_auto": "onnxslim-kd --method auto"}  # fmt: skip


#: Record keys that the fidelity column leaves out.
NOT_FIDELITY = ("seconds", "sqnr_db", "kept_float", "vs_best_peer")


def table(records: list[dict]) -> str:
    rows = []
    for rec in records:
        latency = {m["label"]: m for m in rec["latency"]["models"]}
        for label in ("fp32", *rec["tools"]):
            side = rec["fp32"] if label == "fp32" else rec["tools"][label]
            metrics = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in side.items()
                                if k not in NOT_FIDELITY)  # fmt: skip
            interval = latency[label].get("speedup_interval")
            versus = side.get("vs_best_peer")
            rows.append((
                rec["model"] if label == "fp32" else "", LABELS[label],
                f"{latency[label]['p50_ms']:.2f}", f"{latency[label]['speedup']:.2f}x",
                f"{interval[0]:.2f}-{interval[1]:.2f}x" if interval else "",
                metrics, f"{side['sqnr_db']:.1f}" if "sqnr_db" in side else "",
                _versus(versus) if versus else "",
            ))  # fmt: skip
    headers = ["model", "variant", "p50 ms", "vs FP32", "95%", "fidelity", "SQNR dB",
               "vs best peer (95%)"]  # fmt: skip
    return markdown_table(headers, rows)


def _versus(versus: dict) -> str:
    low, high = versus["interval"]
    return f"{versus['delta']:+.3f} ({low:+.3f} to {high:+.3f}) vs {LABELS[versus['peer']]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="digits,textline,detector,detector_trained,"
                        "mobilenet_v3_small,mobilenet_v2,resnet18,efficientnet_b0")  # fmt: skip
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--test-samples", type=int, default=512,
                        help="photo crops to score the torchvision models and the random "
                        "detector on (the other models bring their own test sets)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    parser.add_argument("--json")
    args = parser.parse_args()
    args.cache = args.cache.resolve()  # the tools run in temporary working directories
    records = [measure(m, args) for m in args.models.split(",")]
    env = environment(args.threads)
    print(table(records))
    print(f"\n{env['cpu']['model']} ({', '.join(env['cpu']['isa'])}), {args.threads} threads, "
          f"onnxruntime {env['onnxruntime']}, batch 1, {args.runs} interleaved runs")  # fmt: skip
    if args.json:
        env["nncf"], env["amd-quark"] = _version("nncf"), _version("amd-quark")
        Path(args.json).write_text(json.dumps({"environment": env, "models": records}, indent=2))


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
