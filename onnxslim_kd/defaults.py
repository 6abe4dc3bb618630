"""Defaults and choice names that `--help` shows, free of heavy imports.

The CLI builds its parsers from these without importing onnx, onnxruntime or numpy, so
`onnxslim-kd --help` and `onnxslim-kd COMMAND --help` answer at once. Each pass reads its
own defaults from here; tests/test_cli.py checks the choice names against the registries
they select from.
"""

from __future__ import annotations

#: --max-drop is a fraction of accuracy (or top-1 agreement): 0.01 = one point.
MAX_DROP_RANGE = "[0, 1]"
#: Without --max-drop, fidelity is still guarded (quantize; decompose warns): class outputs
#: may lose one point of accuracy or top-1 agreement, other outputs keep --min-sqnr.
DEFAULT_MAX_DROP = 0.01
#: --min-sqnr of compress: the floor of outputs that are not class scores (dB).
DEFAULT_MIN_SQNR = 20.0
#: Fine-tuned candidates of the --target-speedup search at most.
MAX_TRIALS = 3
#: How much longer than --distill-epochs the search fine-tunes the structures it adds with
#: a transformer's residual width pruned (ViT sample at 0.08 of the MACs: -1.30 points
#: after 30 epochs, -0.37 after 150; benchmarks/prune/README.md).
PRUNE_NORMS_EPOCHS = 5
#: Channel-importance criteria of prune (prune.importance.CRITERIA).
PRUNE_CRITERIA = ("l1", "l2", "fpgm", "bn", "random", "apoz", "mean-act")
#: Factorisations of decompose (decompose.candidates).
DECOMPOSE_METHODS = ("auto", "svd", "tucker")
#: Calibration methods of quantize (quantize.calibration.METHODS, and auto: the best of
#: them on the held-out data, quantize.method_choice).
CALIBRATION_METHODS = ("minmax", "entropy", "percentile", "mse", "auto")
#: Weight rounding of static quantize (quantize.rounding): to nearest, or learned per layer;
#: gptq by default: level or better on all 7 models of benchmarks/quantize/toggles.py
#: --option rounding (resnet18 +1.1 dB), for 0.8-51 s more quantize time there
#: (benchmarks/quantize/rounding.json).
WEIGHT_ROUNDINGS = ("nearest", "gptq")
DEFAULT_WEIGHT_ROUNDING = "gptq"
#: quantize's speed gate (quantize.speed_gate) times at most this many times --bench-runs
#: rounds before calling a tie.
MAX_ROUNDS_FACTOR = 8
#: How far from 1.0 the gate's interval must lie for a verdict. Two sessions of the same
#: model differ by more than their rounds' noise: two identical copies of mobilenet_v3_small
#: read 0.973-1.004x against each other over 240 rounds, the interval excluding 1.0 once
#: in six runs (benchmarks/bench/position.py, position_pair.json). So INT8 is faster
#: only when its whole interval is above 1.02, slower only when it is below 0.98.
SESSION_MARGIN = 0.02
#: Calibration samples and the memory for histogram calibration, by default.
DEFAULT_CALIB_SAMPLES = 256
DEFAULT_CALIB_MEMORY_MB = 1024
#: CPUs quantize chooses data types for (quantize.target).
QUANTIZE_TARGETS = ("x86-vnni", "x86-avx2", "arm")
#: Quantization schemes of quantize (quantize.api.MODES).
QUANTIZE_MODES = ("auto", "static", "dynamic")


def max_drop_error(value: float) -> str | None:
    """Why `value` is not a valid --max-drop (a fraction: 0.01 = one point), or None."""
    if 0 <= value <= 1:
        return None
    return f"must be a fraction in {MAX_DROP_RANGE} (0.01 = one point), got {value:g}"
