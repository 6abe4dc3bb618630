"""Normalisation: parameters are sliced with the channels they scale."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import attribute
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


class LayerNorm(Rule):
    """LayerNormalization over axes [axis, rank): channels before `axis` pass untouched
    (their statistics are per position); channels on the one normalised axis pass with
    scale and bias sliced, but the mean and variance are then taken over fewer channels,
    so the result is not exact: the space is marked lossy (pruned only when asked, to be
    fine-tuned after; see `PruneOptions.prune_norms`)."""

    def propagate(self, an: Analysis, node: onnx.NodeProto, index: int) -> None:
        source = an.layout(node.input[0])
        if source is None:
            return
        axis = attribute(node, "axis", -1) % source.rank
        where = f"LayerNormalization '{label(node, index)}'"
        if source.axis >= axis:
            if axis != source.rank - 1:
                an.block(source, f"{where} normalises the channels with other axes")
                return
            for position in (1, 2):
                if len(node.input) > position and node.input[position]:
                    an.slice_param(index, position, 0, source.with_axis(0, 1))
            an.mark_lossy(source, f"{where} normalises over these channels")
        an.set_layout(node.output[0], source)
