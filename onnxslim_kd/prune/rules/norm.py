"""Per-channel normalisation: parameters are sliced with the channels they scale."""

from __future__ import annotations

import onnx

from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.rules.base import Rule, label


class PerChannelParams(Rule):
    """BatchNormalization (inputs 1-4) and InstanceNormalization (inputs 1-2) on axis 1."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        if source is None:
            return
        if source.axis != 1:
            an.block(source, f"{node.op_type} '{label(node, index)}' normalises another axis")
            return
        for position in range(1, len(node.input)):
            if node.input[position]:
                an.slice_param(index, position, 0, source.with_axis(0, 1))
        an.set_layout(node.output[0], source)
