"""Distillation fine-tune: the compressed ONNX graph as a torch student, taught by the original.

torch is an optional extra, so this package's `__init__` and its `pass_`/`options` modules
never import it; everything else here does, and is imported only when distillation runs.
"""

from __future__ import annotations

import os

from onnxslim_kd.errors import InputError

# torch's OpenMP threads busy-wait between ops by default. Between the student's torch ops
# the teacher runs in onnxruntime, and on a shared machine the spinning threads take the
# cores from it and from each other: 2 epochs of KD on the pruned digits student took 59 s
# wall / 32 s CPU with 2 threads, 28 s / 12 s with passive waiting (26 s / 10 s with one
# thread), with other jobs on the 2 cores. Set before torch loads; a user's value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

INSTALL_HINT = "pip install 'onnxslim-kd[distill]'"


def require_torch() -> None:
    """Fail with one line naming the pip command when the optional torch extra is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(
            f"distillation needs torch, which is not installed: {INSTALL_HINT}"
        ) from None
