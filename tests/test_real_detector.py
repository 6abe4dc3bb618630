"""A YOLO-style detector as users export it (C2f, SPPF, upsample + Concat neck, one
[N, 4 + classes, anchors] output): pruning reaches its C2f blocks, every command runs,
and the result still runs at other sizes."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

pytest.importorskip("torch")

from tests.yolo_like import export_detector


@pytest.fixture(scope="module", params=[12, 17], ids=["opset12", "opset17"])
def detector(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"yolo{request.param}")
    model = export_detector(root / "yolo.onnx", opset=request.param)
    data = root / "images.npz"
    rng = np.random.default_rng(0)
    np.savez(data, images=rng.standard_normal((16, 3, 64, 96)).astype(np.float32))
    return model, data


def _runs_at_two_sizes(path) -> None:
    session = ort.InferenceSession(str(path))
    for h, w in ((64, 96), (96, 64)):
        (out,) = session.run(None, {"images": np.zeros((2, 3, h, w), np.float32)})
        assert out.shape == (2, 7, (h // 8) * (w // 8) + (h // 16) * (w // 16))
    dims = onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "h", "w"]


def test_prune_reaches_the_c2f_blocks(cli, tmp_path, detector):
    model, data = detector
    out = tmp_path / "p.onnx"
    result = cli("prune", model, "-o", out, "--ratio", "0.3", "--data", data, "--json")
    assert result.code == 0, result.stderr
    record = json.loads(result.stdout)
    # Not prunable by design: the stem (kept by default) and the head's last convs, whose
    # 4 and 3 channels are the box coordinates and class scores of the output.
    inner = [g for g in record["groups"] if "stem" not in g["id"]
             and not g["id"].startswith(("/box.0/box.0.1", "/box.1/box.1.1", "/cls.0/cls.0.1",
                                         "/cls.1/cls.1.1"))]  # fmt: skip
    pruned = [g for g in inner if g["status"] == "pruned"]
    assert len(inner) == 25 and len(pruned) >= 0.8 * len(inner), [
        (g["id"], g["status"]) for g in inner
    ]
    assert record["macs_before"] / record["macs_after"] >= 1.6
    _runs_at_two_sizes(out)


@pytest.mark.parametrize("command", [
    ["quantize", "--bench-runs", "2"],
    ["compress", "--distill-epochs", "1", "--bench-runs", "2"],
])  # fmt: skip
def test_quantize_and_compress_run_and_judge_the_output_by_sqnr(cli, tmp_path, detector, command):
    model, data = detector
    out = tmp_path / "out.onnx"
    result = cli(command[0], model, "-o", out, "--data", data, *command[1:], "--json")
    assert result.code in (0, 3, 4), result.stderr
    _runs_at_two_sizes(out)
    if command[0] == "compress":
        record = json.loads(result.stdout)
        assert record["outputs"]["regression"] == ["output"]  # boxes + scores: no softmax
        assert record["fidelity"]["output"]["top1_agreement"] is None
