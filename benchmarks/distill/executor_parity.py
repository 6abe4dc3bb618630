"""Executor parity: the torch student against onnxruntime on every zoo export (both
exporters) and on the real-model families the tests build (recognisers with LSTM/GRU,
a YOLO-style detector, a voice-activity net with state inputs).

Random inputs at batch 2 (and a second width where the width is dynamic); relative
difference = max |torch - ORT| / max |ORT| over every output. Exports come from the zoo
cache (samples/zoo/export.py, exported on first use).

    python benchmarks/distill/executor_parity.py --json benchmarks/distill/executor_parity.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from onnxslim_kd.data import random_data  # noqa: E402
from onnxslim_kd.distill.executor import GraphModule, to_torch  # noqa: E402
from onnxslim_kd.graph.load import load  # noqa: E402
from onnxslim_kd.graph.session import make_session  # noqa: E402
from tests.real_exports import voice_activity  # noqa: E402
from tests.recognizer import HEIGHT, export_recognizer  # noqa: E402
from tests.yolo_like import export_detector  # noqa: E402


def relative_diff(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> float:
    reference = make_session(model).run(None, feeds)
    with torch.no_grad():
        ours = GraphModule(model)(*to_torch(feeds).values())
    return max(
        float(np.abs(r - o.numpy()).max() / max(np.abs(r).max(), 1e-12))
        for r, o in zip(reference, ours, strict=True)
    )


def _row(model: str, exporter: str, diff: float) -> dict:
    return {"model": model, "exporter": exporter, "max_rel_diff": diff}


def zoo_rows(exporters: list[str]) -> list[dict]:
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "samples/zoo/export.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    rows = []
    for exporter in exporters:
        for name in zoo.ARCHITECTURES:
            model = load(zoo.ensure_exported(name, exporter))
            diff = relative_diff(model, random_data(model, batch=2).inputs)
            rows.append(_row(name, exporter, diff))
            print(f"{name:20s} {exporter:7s} {diff:.2e}", file=sys.stderr)
    return rows


def family_rows(folder: Path) -> list[dict]:
    rows = []
    rng = np.random.default_rng(0)
    for rnn in ("lstm", "gru"):
        for opset in (12, 17):
            model = onnx.load(export_recognizer(folder / f"{rnn}{opset}.onnx", rnn, opset))
            diff = max(
                relative_diff(model, {"image": rng.standard_normal((2, 1, HEIGHT, w), np.float32)})
                for w in (64, 100)
            )
            rows.append(_row(f"recogniser ({rnn.upper()})", f"legacy opset {opset}", diff))
    for opset in (12, 17):
        model = onnx.load(export_detector(folder / f"yolo{opset}.onnx", opset=opset))
        name = model.graph.input[0].name
        diff = max(
            relative_diff(model, random_data(model, {name: [2, 3, size, size]}).inputs)
            for size in (64, 96)
        )
        rows.append(_row("YOLO-style detector", f"legacy opset {opset}", diff))
    vad = voice_activity()
    feeds = random_data(vad, batch=2).inputs
    rows.append(
        _row("voice activity (state, scalar inputs)", "onnx helper", relative_diff(vad, feeds))
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--exporters", nargs="+", default=["legacy", "dynamo"])
    args = parser.parse_args()
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as folder:
        rows = family_rows(Path(folder)) + zoo_rows(args.exporters)
    print("| model | exporter | max relative diff |\n|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['exporter']} | {row['max_rel_diff']:.1e} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
