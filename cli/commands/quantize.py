"""`onnxslim-kd quantize`: INT8 for the CPU it will run on, verified and timed."""

from __future__ import annotations

import argparse
import os

from cli.commands.common import (
    add_budget_options,
    add_command,
    add_data_options,
    add_json_option,
)
from cli.commands.paths import PathRoles
from cli.commands.values import NON_NEGATIVE, POSITIVE
from onnxslim_kd.defaults import (
    CALIBRATION_METHODS,
    DEFAULT_CALIB_MEMORY_MB,
    DEFAULT_CALIB_SAMPLES,
    DEFAULT_WEIGHT_ROUNDING,
    MAX_ROUNDS_FACTOR,
    QUANTIZE_MODES,
    QUANTIZE_TARGETS,
    SESSION_MARGIN,
    WEIGHT_ROUNDINGS,
)

EXAMPLES = """examples:
  onnxslim-kd quantize samples/digits/model.onnx -o /tmp/digits.int8.onnx \\
      --data samples/digits/calib.npz --eval-data samples/digits/test.npz
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib/ \\
      --preprocess resize=256,crop=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib.npz \\
      --max-drop 0.005 --eval-data test.npz --json=report.json
  onnxslim-kd quantize model.onnx -o model.int8.onnx --data calib.npz \\
      --exclude op:Gemm --exclude 're:/layer4/.*' --target-cpu arm --method percentile

exit codes: 0 done, 2 bad input, 3 saved but the budget was not met, or INT8 was slower
than FP32 and the FP32 model was written (--force-int8 keeps INT8)
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "quantize",
        "INT8 post-training quantization with CPU-aware data types and an accuracy budget",
        EXAMPLES,
    )
    parser.add_argument("model", help="input FP32 ONNX model (never modified)")
    parser.add_argument("-o", "--output", required=True, help="where to write the INT8 model")
    add_data_options(parser, required=True)
    parser.set_defaults(samples=DEFAULT_CALIB_SAMPLES)
    parser.add_argument(
        "--method",
        choices=sorted(CALIBRATION_METHODS),
        default="minmax",
        help="activation ranges: minmax, onnxruntime's entropy or percentile, mse (per "
        "tensor the range of least quantization error on the calibration histograms), or "
        "auto: each of those built all-INT8 and the one closest to FP32 on the held-out "
        "data kept (about 4x the calibration time) (minmax)",
    )
    granularity = parser.add_mutually_exclusive_group()
    granularity.add_argument(
        "--per-channel", dest="per_channel", action="store_true", default=True,
        help="one weight scale per output channel (default)",
    )  # fmt: skip
    granularity.add_argument(
        "--per-tensor", dest="per_channel", action="store_false", help="one scale per weight"
    )
    parser.add_argument(
        "--mode", choices=QUANTIZE_MODES, default="auto",
        help="static: calibrated QDQ on every compute op; dynamic: MatMul weights INT8, "
        "activations quantized per batch at run time; auto: static, and dynamic too where "
        "MatMuls with constant weights hold most of the MACs (transformers), keeping the "
        "faster within the budget (auto)",
    )  # fmt: skip
    parser.add_argument(
        "--no-bias-correction", dest="bias_correction", action="store_false",
        help="keep onnxruntime's INT32 biases as rounded (default: each quantized Conv/Gemm "
        "bias is shifted by the mean error its INT8 weights put on its output, measured on "
        "the calibration data)",
    )  # fmt: skip
    parser.add_argument(
        "--smooth-quant", type=float, metavar="ALPHA",
        help="SmoothQuant: divide each LayerNorm output channel by max|X|^ALPHA / "
        "max|W|^(1-ALPHA) and multiply the MatMul weights it feeds by it (exact in float; "
        "evens out outlier channels before INT8; 0.5 is the paper's). Off by default: "
        "no gain measured on the bundled samples",
    )  # fmt: skip
    parser.add_argument(
        "--equalize", action="store_true",
        help="cross-layer equalization: rescale each Conv -> [Relu|LeakyRelu] -> Conv pair's "
        "channels so both weights have the same per-channel ranges (exact in float; for "
        "per-tensor weights and uneven depthwise convs). Off by default: see "
        "benchmarks/quantize/toggles.py --option equalize",
    )  # fmt: skip
    parser.add_argument(
        "--rounding", choices=WEIGHT_ROUNDINGS, default=DEFAULT_WEIGHT_ROUNDING,
        help="static INT8 weights: gptq: per layer, the integer weights that keep its "
        "output on the calibration data closest to FP32's (GPTQ's closed-form answer to "
        "AdaRound's objective; 0.8-51 s more quantize time on the benchmark models), or "
        "nearest: each weight to its nearest level, as onnxruntime rounds (%(default)s; "
        "benchmarks/quantize/toggles.py --option rounding)",
    )  # fmt: skip
    parser.add_argument(
        "--target-cpu",
        choices=QUANTIZE_TARGETS,
        help="data types for this CPU instead of the detected one",
    )
    parser.add_argument(
        "--exclude", action="append", default=[], metavar="PATTERN",
        help="keep nodes in FP32: node name, op:TYPE or re:REGEX (repeatable)",
    )  # fmt: skip
    add_budget_options(
        parser,
        "accuracy budget as a fraction (0.01 = one point); sensitive layers fall back to "
        "FP32. Without it the same search runs when all-INT8 drops more than 0.01",
        "budget for outputs that are not class scores: output SQNR floor in dB (%(default)s)",
        min_sqnr=30.0,
    )
    parser.add_argument(
        "--eval-data", help="held-out data (with labels: accuracy) for the budget and fidelity"
    )
    parser.add_argument(
        "--max-calib-memory", type=POSITIVE, default=DEFAULT_CALIB_MEMORY_MB, metavar="MB",
        help=f"memory for entropy/percentile activation histograms ({DEFAULT_CALIB_MEMORY_MB})",
    )  # fmt: skip
    parser.add_argument(
        "--force-int8", action="store_true",
        help="write INT8 even when it is not measurably faster than FP32 here (default: the "
        "FP32 model is written, with a warning and exit code 3)",
    )  # fmt: skip
    parser.add_argument(
        "--bench-runs",
        type=NON_NEGATIVE,
        default=30,
        help=f"interleaved FP32/INT8 timed rounds, repeated up to {MAX_ROUNDS_FACTOR}x while "
        f"the speed-up's 95%% interval is neither above {1 + SESSION_MARGIN:g} nor below "
        f"{1 - SESSION_MARGIN:g} (30; 0 skips)",
    )
    parser.add_argument(
        "--bench-batch", type=POSITIVE, default=1,
        help="samples per timed run: INT8 is kept where it is faster at this batch (1)",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=POSITIVE, default=os.cpu_count(), help="intra-op threads for timing"
    )
    add_json_option(parser, "the quantization report")
    parser.set_defaults(
        handler="cli.run.quantize",
        paths=PathRoles(inputs=("model", "data", "eval_data"), models=("output",), files=("json",)),
    )
