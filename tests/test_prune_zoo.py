"""Structural sweep: every torchvision export from both exporters prunes at ratio 0.5."""

from __future__ import annotations

import pytest

import onnxslim_kd as sk
from onnxslim_kd.prune.prune import PruneOptions, prune

pytestmark = pytest.mark.zoo

ARCHITECTURES = (
    "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
    "densenet121", "shufflenet_v2_x1_0", "regnet_x_400mf", "squeezenet1_1", "vgg11_bn",
    "googlenet", "convnext_tiny", "mnasnet1_0", "resnext50_32x4d",
)  # fmt: skip
#: The architecture itself limits pruning: channel shuffle (Reshape -> Transpose ->
#: Reshape) mixes the two branches, so only the branch-internal channels can go, and
#: the legacy export computes the shuffle's shapes with Shape ops.
LIMITED = {("shufflenet_v2_x1_0", "legacy"): 1.2}


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_prunes_at_half(zoo, name, exporter):
    model = sk.load(zoo(name, exporter))
    pruned, summary = prune(model, PruneOptions(ratio=0.5))
    sk.check(pruned)
    floor = LIMITED.get((name, exporter), 1.8)
    assert summary.macs_before / summary.macs_after >= floor
    for group in summary.groups:
        assert group.status != "skipped" or group.reasons
    outputs = sk.compare_models(model, pruned, sk.random_data(model))
    assert list(outputs) == ["logits"]
