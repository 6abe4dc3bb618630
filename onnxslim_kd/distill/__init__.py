"""Distillation fine-tune: the compressed ONNX graph as a torch student, taught by the original.

torch is an optional extra, so this package's `__init__` and its `pass_`/`options` modules
never import it; everything else here does, and is imported only when distillation runs.
"""

from __future__ import annotations

from onnxslim_kd.errors import InputError

INSTALL_HINT = "pip install 'onnxslim-kd[distill]'"


def require_torch() -> None:
    """Fail with one line naming the pip command when the optional torch extra is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise InputError(
            f"distillation needs torch, which is not installed: {INSTALL_HINT}"
        ) from None
