"""The torch rules of the executor: one per (op type, op version), by family of ops.

Importing this package registers every rule in `RULES` (see `registry`). Rules follow the
ONNX spec; what they refuse they refuse with an InputError that names the attribute.
"""

from onnxslim_kd.distill.ops import (  # noqa: F401 - imported to register their rules
    elementwise,
    linear,
    norm,
    recurrent,
    reduce,
    resize,
    shape,
)
from onnxslim_kd.distill.ops.registry import RULES, OpContext, Rule, op_version

__all__ = ["RULES", "OpContext", "Rule", "op_version"]
