"""Acceptance on real exports: torchvision resnet18 from both exporters."""

from __future__ import annotations

import json

import pytest

import onnxslim_kd as sk
from onnxslim_kd.graph.load import file_uses_external_data

pytestmark = pytest.mark.zoo

RESNET18_PARAMS = 11_689_512
RESNET18_MACS = 1.82e9


@pytest.mark.parametrize("exporter", ["legacy", "dynamo"])
def test_resnet18_params_and_macs(cli, zoo, exporter):
    result = cli("inspect", zoo("resnet18", exporter), "--json")
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["params"] == pytest.approx(RESNET18_PARAMS, rel=1e-3)
    assert record["macs"] == pytest.approx(RESNET18_MACS, rel=0.03)


def test_dynamo_external_data_canonicalizes_saves_and_runs(zoo, tmp_path):
    source = zoo("resnet18", "dynamo")
    assert file_uses_external_data(source)
    model = sk.load(source)
    canonical, _ = sk.canonicalize(model)
    out = sk.save(canonical, tmp_path / "r18.onnx", external_data=True)
    assert (tmp_path / "r18.onnx.data").is_file()
    reloaded = sk.load(out)
    sk.check(reloaded)
    data = sk.random_data(model, batch=1)
    fidelity = sk.compare_models(model, reloaded, data)
    assert fidelity["logits"].max_rel_diff <= 1e-5
