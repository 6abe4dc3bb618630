"""Quantization data types for the CPU the model will run on.

onnxruntime's x86 integer kernels are u8 x s8: QDQ with U8 activations and S8
symmetric per-channel weights fuses into QLinearConv/QGemm everywhere, while S8
activations only convert to U8 where a QuantizeLinear has a single consumer (branching
graphs keep float convs), and QOperator S8S8 is slower than FP32. Without VNNI the
u8s8 multiply-add (vpmaddubsw) can saturate, hence 7-bit weights (reduce_range).
ARM kernels take S8 activations natively.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from onnxslim_kd.bench.cpu import cpu_info
from onnxslim_kd.defaults import QUANTIZE_TARGETS
from onnxslim_kd.errors import InputError

TARGETS = QUANTIZE_TARGETS
_VNNI = {"AVX512-VNNI", "AVX-VNNI", "AMX-INT8"}
_ARM_ARCHS = ("aarch64", "arm64", "armv8", "armv7")


@dataclass
class DataTypes:
    """What the quantizer is told to emit, and why."""

    target: str
    detected: bool
    format: str = "QDQ"
    activations: str = "uint8"
    weights: str = "int8"
    weight_symmetric: bool = True
    per_channel: bool = True
    reduce_range: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def detect_target(info: dict | None = None) -> str:
    """x86-vnni, x86-avx2 or arm for the CPU described by `info` (default: this one)."""
    info = info or cpu_info()
    if info["arch"].lower().startswith(_ARM_ARCHS):
        return "arm"
    return "x86-vnni" if _VNNI & set(info["isa"]) else "x86-avx2"


def choose_data_types(target: str | None = None, per_channel: bool = True) -> DataTypes:
    """Data types for `target` (detected when None); never QOperator, never S8S8 on x86."""
    if target is not None and target not in TARGETS:
        raise InputError(f"--target-cpu {target!r}: expected one of {', '.join(TARGETS)}")
    chosen = DataTypes(target or detect_target(), detected=target is None, per_channel=per_channel)
    if chosen.target == "arm":
        chosen.activations = "int8"
    elif chosen.target == "x86-avx2":
        chosen.reduce_range = True
        chosen.warnings.append(
            "CPU without VNNI: weights use 7 bits (reduce_range) to avoid u8s8 overflow; "
            "expect a smaller speed-up and slightly lower accuracy than on a VNNI CPU"
        )
    return chosen
