"""SmoothQuant (`quantize --smooth-quant ALPHA`) on and off, all-INT8, on the pre-norm
transformer samples: fidelity per scheme, and the outliers it evens out.

Static QDQ and dynamic MatMul INT8 on samples/textline (CTC recogniser with a pre-norm
mixing block) and samples/vit_digits (4 pre-norm blocks); the budget is switched off so
nothing falls back to FP32 and the variants differ only by the smoothing. SmoothQuant
changes weights and LayerNorm parameters, not the graph, so it is not timed.

    python benchmarks/quantize/smooth.py [--alphas 0.5,0.8]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy, output_fidelity
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import ROOT, text_lines  # noqa: E402

SAMPLES = {"textline": "samples/textline", "vit_digits": "samples/vit_digits"}


def measure(name: str, alphas: list[float]) -> list[dict]:
    folder = ROOT / SAMPLES[name]
    model = load(folder / "model.onnx")
    data_dir = folder if name == "textline" else ROOT / "samples/digits"
    calib = load_data(data_dir / "calib.npz", model).without_labels()
    test = load_data(data_dir / "test.npz", model)
    reference = run(model, test)
    output = next(iter(reference))
    rows = []
    for mode in ("static", "dynamic"):
        for alpha in (None, *alphas):
            options = QuantizeOptions(mode=mode, bench_runs=0, max_drop=1.0, min_sqnr=-1000.0,
                                      smooth_quant=alpha)  # fmt: skip
            quantized, summary = quantize_model(model, calib, options)
            produced = run(quantized, test)[output]
            quality = (text_lines(reference[output], produced, test) if name == "textline"
                       else {"accuracy": accuracy(produced, test.labels)})  # fmt: skip
            rows.append({
                "model": name, "scheme": mode, "alpha": alpha,
                "sqnr_db": round(output_fidelity(reference[output], produced).sqnr_db, 2),
                **quality, "smoothing": summary.smoothing,
            })  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alphas", default="0.5,0.8")
    parser.add_argument("--json", type=Path, default=HERE / "smooth.json")
    args = parser.parse_args()
    alphas = [float(a) for a in args.alphas.split(",")]
    rows = [row for name in SAMPLES for row in measure(name, alphas)]
    print(markdown_table(
        ["model", "scheme", "SmoothQuant", "fidelity", "SQNR dB", "outlier ratio before -> after"],
        [(r["model"], r["scheme"], "off" if r["alpha"] is None else f"alpha {r['alpha']}",
          ", ".join(f"{k} {v:.4f}" for k, v in r.items() if k in ("accuracy", "char_accuracy",
                                                                   "exact_match")),
          f"{r['sqnr_db']:.2f}",
          "" if r["smoothing"] is None else
          f"{r['smoothing']['outlier_ratio_before']} -> {r['smoothing']['outlier_ratio_after']}")
         for r in rows],
    ))  # fmt: skip
    args.json.write_text(json.dumps({"environment": environment(1), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
