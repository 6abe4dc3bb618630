"""Which nodes stay in FP32: the user's patterns plus built-in rules, each with a reason."""

from __future__ import annotations

import re

import onnx

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.catalog import ops_where
from onnxslim_kd.graph.walk import producers

#: Ops whose output is the model's answer; quantizing a final Softmax costs precision in
#: exactly the probabilities users read, and saves nothing measurable.
_FINAL_OPS = ops_where(quantize="float")


def resolve_exclusions(model: onnx.ModelProto, patterns: list[str] | None) -> dict[str, str]:
    """Map excluded node names to the reason, built-in rules first.

    A pattern is `op:TYPE`, `re:REGEX` (full match on node names), or a plain string
    tried as an exact node name, then an op type, then a regex. A pattern that matches
    no node is an error: it is almost always a typo.
    """
    excluded = builtin_exclusions(model)
    nodes = list(model.graph.node)
    for pattern in patterns or []:
        matched = [node.name for node in nodes if _matches(node, pattern)]
        if not matched:
            raise InputError(
                f"--exclude {pattern!r} matches no node (use a node name, op:TYPE or re:REGEX)"
            )
        for name in matched:
            excluded[name] = f"--exclude {pattern}"
    return excluded


def builtin_exclusions(model: onnx.ModelProto) -> dict[str, str]:
    """Nodes kept in FP32 by default: a Softmax/LogSoftmax that produces a graph output."""
    writers = producers(model.graph)
    excluded = {}
    for output in model.graph.output:
        node = writers.get(output.name)
        if node is not None and node.op_type in _FINAL_OPS:
            excluded[node.name] = f"built-in: final {node.op_type} keeps FP32 probabilities"
    return excluded


def _matches(node: onnx.NodeProto, pattern: str) -> bool:
    kind, _, value = pattern.partition(":")
    if kind == "op" and value:
        return node.op_type == value
    if kind == "re" and value:
        return _regex(value).fullmatch(node.name) is not None
    if pattern in (node.name, node.op_type):
        return True
    try:
        return re.fullmatch(pattern, node.name) is not None
    except re.error:
        return False


def _regex(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise InputError(
            f"--exclude re:{pattern!r}: not a valid regular expression ({exc})"
        ) from exc
