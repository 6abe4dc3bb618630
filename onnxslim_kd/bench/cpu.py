"""Describe the CPU a latency number was measured on: model and the ISA that matters."""

from __future__ import annotations

import os
import platform
from pathlib import Path

#: /proc/cpuinfo flags that decide which onnxruntime kernels run (and INT8 speed).
RELEVANT_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX512F",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8",
    "asimddp": "ARM-DOTPROD",
    "i8mm": "ARM-I8MM",
}


def cpu_info() -> dict:
    """CPU model, logical cores, architecture and relevant instruction sets."""
    model, flags = _read_cpuinfo(Path("/proc/cpuinfo"))
    return {
        "model": model or platform.processor() or platform.machine(),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "isa": [label for flag, label in RELEVANT_FLAGS.items() if flag in flags],
    }


def _read_cpuinfo(path: Path) -> tuple[str, set[str]]:
    if not path.exists():
        return "", set()
    model, flags = "", set()
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags
