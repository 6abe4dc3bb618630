"""LSTM, GRU and RNN read their input features through W [directions, gates * hidden,
input]: pruned input channels slice W's last axis. Hidden units stay (the gates interleave
them in W, R and B, and the states leave the layer): the outputs are untracked."""

from __future__ import annotations

import onnx

from onnxslim_kd.prune.analysis import Analysis
from onnxslim_kd.prune.rules.base import Rule, block_inputs, label


class Recurrent(Rule):
    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        weight = an.const(node.input[1])
        source = an.layout(node.input[0])
        where = f"{node.op_type} '{label(node, index)}'"
        if weight is None or an.const(node.input[2]) is None:
            block_inputs(an, node, f"{where} has computed weights")
            return
        if source is None:
            return
        if source.axis != source.rank - 1:
            an.block(source, f"{where} reads its input features on another axis")
            return
        an.slice_param(index, 1, 2, source.with_axis(2, 3))
        an.node_layouts[index] = (source, None)
