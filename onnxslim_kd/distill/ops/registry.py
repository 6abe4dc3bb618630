"""The torch rules of the executor, one per (op type, op version), duplicates refused.

Like onnx2torch's `add_converter(operation_type, version)`: a rule is registered for the
op version (schema `since_version`) from which its behaviour holds, and a node is run by
the newest rule not newer than the version its model's opset selects. So an attribute
that became an input (Clip 11, Split 13, Reduce* 18) is a second rule, not an `if` on
the opset inside one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import onnx
from torch import Tensor

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.walk import attribute


@cache
def op_version(op_type: str, opset: int) -> int:
    """The schema version (since_version) of `op_type` that `opset` selects; 0 if none."""
    try:
        return onnx.defs.get_schema(op_type, opset).since_version
    except onnx.defs.SchemaError:
        return 0


@dataclass(frozen=True)
class OpContext:
    """What a rule may read besides its inputs: the node (attributes) and the model's opset."""

    node: onnx.NodeProto
    opset: int

    def attr(self, name: str, default=None):
        value = attribute(self.node, name, default)
        return value.decode() if isinstance(value, bytes) else value

    def unsupported(self, what: str) -> InputError:
        return InputError(
            f"distill: {self.node.op_type} node '{self.node.name}' uses {what}, "
            "which the torch executor does not support"
        )


RuleFn = Callable[..., Tensor | tuple[Tensor, ...] | list[Tensor]]


@dataclass(frozen=True)
class Rule:
    """How to run one op type from op version `since`; `weights` are trainable inputs.

    `per_channel` marks element-wise ops whose constant operands with more than one element
    (per-channel scales and shifts) are trainable too; scalar constants stay fixed.
    """

    fn: RuleFn
    since: int = 1
    weights: frozenset[int] = frozenset()
    per_channel: bool = False


class RuleTable:
    """Op type -> rules by version; `register` refuses a second rule for the same key."""

    def __init__(self) -> None:
        self._rules: dict[str, dict[int, Rule]] = {}

    def register(
        self, *op_types: str, since: int = 1, weights: tuple[int, ...] = (),
        per_channel: bool = False,
    ) -> Callable[[RuleFn], RuleFn]:  # fmt: skip
        """Decorator adding `fn` as the rule of every op type in `op_types` from `since`."""

        def wrap(fn: RuleFn) -> RuleFn:
            for op_type in op_types:
                versions = self._rules.setdefault(op_type, {})
                if since in versions:
                    raise ValueError(f"a torch rule for {op_type} version {since} exists")
                versions[since] = Rule(fn, since, frozenset(weights), per_channel)
            return fn

        return wrap

    def __contains__(self, op_type: str) -> bool:
        return op_type in self._rules

    def op_types(self) -> list[str]:
        return sorted(self._rules)

    def versions(self, op_type: str) -> list[int]:
        """The op versions from which `op_type` has a rule, oldest first."""
        return sorted(self._rules.get(op_type, {}))

    def lookup(self, op_type: str, opset: int) -> Rule | None:
        """The rule for `op_type` in a model of `opset`, or None (unknown or too old)."""
        versions = self._rules.get(op_type)
        if not versions:
            return None
        version = op_version(op_type, opset) or opset
        usable = [since for since in versions if since <= version]
        return versions[max(usable)] if usable else None


RULES = RuleTable()
register = RULES.register
