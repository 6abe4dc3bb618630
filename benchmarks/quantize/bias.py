"""Bias correction on and off (`quantize --no-bias-correction`), all-INT8, on the peer
benchmark's models: fidelity per model and what it costs in quantize time.

Both builds are the same graph with different INT32 bias values, so they run at the same
speed; nothing is timed but the quantize call. The budget is switched off (max drop 1,
no SQNR floor) so no layer falls back to FP32 and the two differ only by the correction.
Run in the test env after `peer_models.py` has exported the detector and mobile nets:

    python benchmarks/quantize/bias.py [--models digits,textline,...] [--samples 128]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import output_fidelity
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import ROOT, case  # noqa: E402

MODELS = "digits,textline,detector,mobilenet_v3_small,mobilenet_v2"


def measure(name: str, samples: int, cache: Path) -> dict:
    c = case(name, samples, cache)
    model = load(c.path)
    reference = run(model, c.test)
    output = next(iter(reference))
    record: dict = {"model": name, "samples": len(c.calib), "variants": {}}
    for corrected in (False, True):
        options = QuantizeOptions(samples=len(c.calib), bench_runs=0, max_drop=1.0,
                                  min_sqnr=-1000.0, bias_correction=corrected)  # fmt: skip
        start = time.perf_counter()
        quantized, summary = quantize_model(model, c.calib, options)
        seconds = time.perf_counter() - start
        candidate = run(quantized, c.test)[output]
        record["variants"]["on" if corrected else "off"] = {
            "seconds": round(seconds, 1),
            "sqnr_db": round(output_fidelity(reference[output], candidate).sqnr_db, 2),
            **c.metric(reference[output], candidate, c.test),
            "bias_correction": summary.bias_correction,
        }
        print(name, corrected, record["variants"]["on" if corrected else "off"], flush=True)
    return record


def table(records: list[dict]) -> str:
    rows = []
    for rec in records:
        off, on = rec["variants"]["off"], rec["variants"]["on"]
        metric = next(k for k in on if k not in ("seconds", "sqnr_db", "bias_correction",
                                                  "detections_fp32"))  # fmt: skip
        corr = on["bias_correction"]
        rows.append((
            rec["model"], metric, f"{off[metric]:.4f} -> {on[metric]:.4f}",
            f"{off['sqnr_db']:.2f} -> {on['sqnr_db']:.2f}",
            f"{corr['relative_mean_error_before']:.4f} -> {corr['relative_mean_error_after']:.4f}",
            str(corr["corrected"]), f"{off['seconds']:.1f} -> {on['seconds']:.1f}",
        ))  # fmt: skip
    return markdown_table(
        ["model", "fidelity", "off -> on", "SQNR dB off -> on",
         "layer mean error / spread", "layers", "quantize s"], rows,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    parser.add_argument("--json", type=Path, default=HERE / "bias.json")
    args = parser.parse_args()
    records = [measure(m, args.samples, args.cache) for m in args.models.split(",")]
    print(table(records))
    args.json.write_text(json.dumps({"environment": environment(1), "models": records},
                                    indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
