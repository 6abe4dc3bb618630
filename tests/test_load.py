"""Loading: every way a model file can be bad gives one clear InputError."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from tests.builders import matmul_net


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load(tmp_path / "absent.onnx")


def test_not_onnx(tmp_path):
    path = tmp_path / "notes.onnx"
    path.write_text("this is not a model\n" * 10)
    with pytest.raises(InputError, match="not an ONNX model"):
        load(path)


def test_truncated(tmp_path, digits):
    data = (digits / "model.onnx").read_bytes()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="not an ONNX model or truncated"):
        load(path)


@pytest.mark.parametrize("opset", [9, 22])
def test_unsupported_opset(tmp_path, opset):
    path = tmp_path / "old.onnx"
    onnx.save_model(matmul_net(opset=opset), str(path))
    with pytest.raises(InputError, match=f"unsupported opset {opset} \\(supported: 11 to 21\\)"):
        load(path)


def test_external_data_round_trip(tmp_path, digits):
    model = load(digits / "model.onnx")
    path = save(model, tmp_path / "ext.onnx", external_data=True)
    assert (tmp_path / "ext.onnx.data").is_file()
    loaded = load(path)
    for a, b in zip(model.graph.initializer, loaded.graph.initializer, strict=True):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(a), onnx.numpy_helper.to_array(b))


def test_missing_external_data(tmp_path, digits):
    path = save(load(digits / "model.onnx"), tmp_path / "ext.onnx", external_data=True)
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(InputError, match=r"external data file 'ext\.onnx\.data' .* not found"):
        load(path)


def test_truncated_external_data(tmp_path, digits):
    path = save(load(digits / "model.onnx"), tmp_path / "ext.onnx", external_data=True)
    data_file = tmp_path / "ext.onnx.data"
    data_file.write_bytes(data_file.read_bytes()[:100])
    with pytest.raises(InputError, match="is truncated"):
        load(path)
