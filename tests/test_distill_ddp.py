"""Data-parallel distillation: sharding, gradient reduction, and torchrun end to end (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import onnx
import pytest

from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import save
from onnxslim_kd.graph.validate import run
from tests.builders import conv_net
from tests.conftest import ROOT
from tests.test_distill import damaged
from tests.test_distill_resume import _max_diff

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from onnxslim_kd.distill.api import distill  # noqa: E402
from onnxslim_kd.distill.distributed import World, joined  # noqa: E402
from onnxslim_kd.distill.executor import GraphModule  # noqa: E402
from onnxslim_kd.distill.losses import Objective, Signals  # noqa: E402
from onnxslim_kd.distill.options import DistillOptions  # noqa: E402


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("batch", [1, 7, 64])
def test_shards_are_disjoint_and_cover_the_batch(size, batch):
    order = torch.randperm(batch, generator=torch.Generator().manual_seed(0))
    shards = [World(rank, size).shard(order) for rank in range(size)]
    together = torch.cat(shards)
    assert sorted(together.tolist()) == sorted(order.tolist())  # covering, nothing twice
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_outside_torchrun_there_is_one_process(monkeypatch):
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    with joined("cpu") as world:
        assert world == World(0, 1) and world.main and not dist.is_initialized()
    assert torch.get_num_threads() == threads


def _reduce_worker(rank: int, size: int, init: str) -> None:
    """One of `size` gloo ranks: sliced gradients, reduced, equal the whole batch's."""
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        torch.manual_seed(0)  # same weights, adapter and batch on every rank
        student = GraphModule(conv_net())
        objective = Objective({"kd": 0.9, "ce": 0.1, "hint": 1.0}, [(4, 6)])  # a 1x1 adapter
        unused = torch.nn.Parameter(torch.zeros(3))
        params = [*student.parameters(), *objective.parameters(), unused]
        feeds = torch.randn(7, 3, 8, 8)
        labels = torch.randint(0, 5, (7,))
        teacher_probs = torch.softmax(torch.randn(7, 5), dim=1)
        teacher_maps = torch.randn(7, 6, 8, 8)

        def backward(index: torch.Tensor) -> None:
            for param in params:
                param.grad = None
            values = student.run({"input": feeds[index]}, ["r"])
            signals = Signals(values["logits"], teacher_probs[index], 4.0, labels[index],
                              [values["r"]], [teacher_maps[index]])  # fmt: skip
            objective(signals).backward()

        backward(torch.arange(7))
        expected = [param.grad for param in params]
        world = World.current()
        index = world.shard(torch.arange(7))  # 4 samples on rank 0, 3 on rank 1
        backward(index)
        world.reduce_gradients(params, len(index) / 7)
        assert unused.grad is None and expected[-1] is None
        for param, want in zip(params[:-1], expected[:-1], strict=True):
            assert torch.allclose(param.grad, want, atol=1e-6), param.shape
        assert world.total(rank + 1.0) == 3.0 and world.any(rank == 1)
    finally:
        dist.destroy_process_group()


def test_reduced_gradients_equal_the_whole_batch_gradient(tmp_path):
    torch.multiprocessing.spawn(_reduce_worker, args=(2, f"file://{tmp_path / 'rdzv'}"), nprocs=2)


def test_torchrun_two_processes_write_once_and_train_like_one(tmp_path, digits):
    teacher = load(digits / "model.onnx")
    student = damaged(teacher)
    save(student, tmp_path / "damaged.onnx")
    out = tmp_path / "kd.onnx"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node", "2", "-m", "onnxslim_kd", "distill", "damaged.onnx",
               "-o", out.name, "--teacher", str(digits / "model.onnx"), "--data",
               str(digits / "train.npz"), "--samples", "256", "--epochs", "2", "--batch", "32",
               "--lr", "1e-4", "--augment-shift", "0", "--json"]  # a short, gentle run  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads(result.stdout)  # one JSON document: rank 1 printed nothing
    assert result.stderr.count("wrote kd.onnx") == 1  # the table, on stderr beside --json
    assert record["training"]["processes"] == 2 and record["training"]["steps"] == 16
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.onnx", "kd.onnx"]
    trained = load(out)
    onnx.checker.check_model(trained, full_check=True)

    test = load_data(digits / "test.npz", teacher)

    def accuracy(model: onnx.ModelProto) -> float:
        return float(np.mean(run(model, test)["logits"].argmax(1) == test.labels))

    assert accuracy(trained) > accuracy(student) + 0.25
    # the same run in one process: each step is the same whole-batch step
    train = load_data(digits / "train.npz", teacher, samples=256)
    options = DistillOptions(epochs=2, batch=32, lr=1e-4, augment_shift=0)
    single, summary = distill(student, [teacher], train, options=options)
    assert _max_diff(single, trained) < 1e-4
    one = [epoch["loss"] for epoch in summary["training"]["history"]]
    two = [epoch["loss"] for epoch in record["training"]["history"]]
    assert two == pytest.approx(one, rel=1e-5)
    assert record["val_after"] == summary["val_after"]
