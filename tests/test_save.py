"""Saving is atomic, never overwrites the input, and switches to external data when needed."""

from __future__ import annotations

import onnx
import pytest

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph import save as save_module
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.session import make_session
from onnxslim_kd.graph.validate import check
from tests.builders import conv_net


def test_save_and_reload_identical(tmp_path):
    model = conv_net()
    path = save(model, tmp_path / "m.onnx")
    assert load(path).SerializeToString() == model.SerializeToString()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_refuses_to_overwrite_input(tmp_path):
    path = save(conv_net(), tmp_path / "m.onnx")
    before = path.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite the input model"):
        save(conv_net(weights_as_constants=True), path, protect=(path,))
    assert path.read_bytes() == before


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(onnx, "save_model", explode)
    with pytest.raises(OSError, match="disk full"):
        save(conv_net(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_models_over_the_protobuf_limit_use_external_data(tmp_path, monkeypatch, digits):
    """Lower the 2 GB limit so a small model takes the large-model path end to end."""
    monkeypatch.setattr(save_module, "PROTOBUF_LIMIT", 1_000_000)
    model = load(digits / "model.onnx")
    path = save(model, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").stat().st_size > 1_000_000
    assert (tmp_path / "big.onnx").stat().st_size < 100_000
    check(model)
    assert make_session(load(path)).get_outputs()[0].name == "logits"


def test_missing_output_directory(tmp_path):
    with pytest.raises(InputError, match="output directory does not exist"):
        save(conv_net(), tmp_path / "nope" / "m.onnx")


def test_reports_are_written_whole_and_readable_like_any_file(tmp_path):
    import os
    import stat

    from onnxslim_kd.graph.save import write_text_atomic

    mask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "r.json", "{}\n")
    finally:
        os.umask(mask)
    assert path.read_text() == "{}\n" and list(tmp_path.iterdir()) == [path]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's 0600
