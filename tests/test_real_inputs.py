"""Several inputs as voice and sequence models have them: a recurrent state whose batch
is on axis 1 and a scalar sample rate fed whole with every batch."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from onnxslim_kd.data import load_data
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import batch_axes, fixed_batch
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from tests.real_exports import voice_activity


@pytest.fixture(scope="module")
def vad(tmp_path_factory):
    root = tmp_path_factory.mktemp("vad")
    rng = np.random.default_rng(0)
    np.savez(root / "vad.npz", audio=rng.standard_normal((48, 64)).astype(np.float32),
             state=0.1 * rng.standard_normal((2, 48, 16)).astype(np.float32),
             sr=np.array(16000, np.int64))  # fmt: skip
    return save(voice_activity(), root / "vad.onnx"), root / "vad.npz"


def test_sample_axes_come_from_where_the_batch_symbol_sits():
    model = voice_activity()
    assert batch_axes(model) == {"audio": 0, "state": 1, "sr": None}
    assert batch_axes(model, outputs=True) == {"speech": 0, "next_state": 1}
    assert fixed_batch(model) is None  # [2, batch, 16] is not a fixed batch of 2


def test_the_loader_takes_each_input_on_its_own_axis(vad):
    model_path, data_path = vad
    from onnxslim_kd.graph.load import load

    model = load(model_path)
    data = load_data(data_path, model)
    assert len(data) == 48
    part = data.subset(10)
    assert part.inputs["state"].shape == (2, 10, 16) and part.inputs["sr"].shape == ()
    outputs = run(model, data, batch_size=16)  # three batches, joined on each output's axis
    assert outputs["next_state"].shape == (2, 48, 16) and outputs["speech"].shape == (48, 1)
    session = ort.InferenceSession(str(model_path))
    whole = session.run(None, data.inputs)
    np.testing.assert_allclose(outputs["next_state"], whole[1], rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="different sample counts"):
        load_data(data_path, model, axes={"state": 2})


@pytest.mark.parametrize("command", [
    ["inspect"], ["prune", "--ratio", "0.3"], ["decompose"], ["quantize", "--bench-runs", "2"],
    ["bench", "--runs", "3"], ["compress", "--distill-epochs", "1", "--bench-runs", "2"],
])  # fmt: skip
def test_every_command_runs_on_a_state_and_a_scalar_input(cli, tmp_path, vad, command):
    model_path, data_path = vad
    name, *options = command
    out = ["-o", tmp_path / "out.onnx"] if name in ("prune", "decompose", "quantize",
                                                   "compress") else []  # fmt: skip
    data = [] if name == "decompose" else ["--data", data_path]
    result = cli(name, model_path, *out, *data, *options, "--json")
    assert result.code in (0, 3), result.stderr
    assert "empty" not in result.stderr
    json.loads(result.stdout)
    if out:
        session = ort.InferenceSession(str(out[1]))
        got = session.run(None, {"audio": np.zeros((3, 64), np.float32),
                                 "state": np.zeros((2, 3, 16), np.float32),
                                 "sr": np.array(8000, np.int64)})  # fmt: skip
        assert [g.shape for g in got] == [(3, 1), (2, 3, 16)]


def test_batch_axis_option_is_parsed_and_checked(cli, vad):
    model_path, data_path = vad
    result = cli("bench", model_path, "--data", data_path, "--batch-axis", "state=one")
    assert result.code == 2 and "--batch-axis 'state=one': expected NAME=AXIS" in result.stderr
    ok = cli("bench", model_path, "--data", data_path, "--batch-axis", "state=1",
             "--batch-axis", "sr=none", "--runs", "2")  # fmt: skip
    assert ok.code == 0, ok.stderr
