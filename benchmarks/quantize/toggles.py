"""One quantize option off and on, all-INT8, on the peer benchmark's models: fidelity per
model, what the option did, and what it costs in quantize time.

`--option bias_correction` (on by default: `quantize --no-bias-correction` turns it off),
`--option equalize` (`quantize --equalize`, off by default) or `--option rounding`
(`quantize --rounding gptq` on, nearest off). Both builds have the same graph and differ
in weight or bias values, so they run at the same speed; nothing is timed but the
quantize call. The budget is switched off (max drop 1, no SQNR floor) so no
layer falls back to FP32 and the two differ only by the option. Run in the test env after
`peer_models.py` has exported the detector and mobile nets:

    python benchmarks/quantize/toggles.py --option equalize [--models digits,...]
        [--samples 128]   # writes benchmarks/quantize/equalize.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.quantize import QuantizeOptions, quantize_model
from onnxslim_kd.quantize.bias import describe_correction
from onnxslim_kd.quantize.equalize import describe_equalization
from onnxslim_kd.quantize.rounding import describe_rounding
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import output_fidelity
from onnxslim_kd.report.table import markdown_table

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from peers import ROOT, case  # noqa: E402

MODELS = "digits,textline,detector,mobilenet_v3_small,mobilenet_v2,resnet18,efficientnet_b0"


@dataclass(frozen=True)
class Toggle:
    """A QuantizeOptions field's off and on values, the summary field that records what it
    did, its one-line description, and the JSON file written by default."""

    record_field: str
    describe: Callable[[dict], str]
    json: str
    off: Any = False
    on: Any = True


TOGGLES = {
    "bias_correction": Toggle("bias_correction", describe_correction, "bias.json"),
    "equalize": Toggle("equalization", describe_equalization, "equalize.json"),
    "rounding": Toggle("rounding", describe_rounding, "rounding.json", "nearest", "gptq"),
}


def measure(name: str, option: str, samples: int, cache: Path) -> dict:
    c = case(name, samples, cache)
    model = load(c.path)
    reference = run(model, c.test)
    output = next(iter(reference))
    toggle = TOGGLES[option]
    record: dict = {"model": name, "samples": len(c.calib), "variants": {}}
    for enabled in (False, True):
        value = toggle.on if enabled else toggle.off
        options = QuantizeOptions(samples=len(c.calib), bench_runs=0, max_drop=1.0,
                                  min_sqnr=-1000.0, **{option: value})  # fmt: skip
        start = time.perf_counter()
        quantized, summary = quantize_model(model, c.calib, options)
        seconds = time.perf_counter() - start
        candidate = run(quantized, c.test)[output]
        record["variants"]["on" if enabled else "off"] = {
            "seconds": round(seconds, 1),
            "sqnr_db": round(output_fidelity(reference[output], candidate).sqnr_db, 2),
            **c.metric(reference[output], candidate, c.test),
            toggle.record_field: getattr(summary, toggle.record_field),
        }
        print(name, option, enabled, record["variants"]["on" if enabled else "off"], flush=True)
    return record


def table(records: list[dict], option: str) -> str:
    record_field, describe = TOGGLES[option].record_field, TOGGLES[option].describe
    rows = []
    for rec in records:
        off, on = rec["variants"]["off"], rec["variants"]["on"]
        metric = next(k for k in on if k not in ("seconds", "sqnr_db", record_field,
                                                  "detections_fp32"))  # fmt: skip
        rows.append((
            rec["model"], metric, f"{off[metric]:.4f} -> {on[metric]:.4f}",
            f"{off['sqnr_db']:.2f} -> {on['sqnr_db']:.2f}", describe(on[record_field]),
            f"{off['seconds']:.1f} -> {on['seconds']:.1f}",
        ))  # fmt: skip
    return markdown_table(
        ["model", "fidelity", "off -> on", "SQNR dB off -> on", "what it did", "quantize s"],
        rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--option", choices=sorted(TOGGLES), required=True)
    parser.add_argument("--models", default=MODELS)
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache/bench")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    records = [measure(m, args.option, args.samples, args.cache) for m in args.models.split(",")]
    print(table(records, args.option))
    path = args.json or HERE / TOGGLES[args.option].json
    path.write_text(json.dumps({"environment": environment(1), "option": args.option,
                                "models": records}, indent=2) + "\n")  # fmt: skip


if __name__ == "__main__":
    main()
