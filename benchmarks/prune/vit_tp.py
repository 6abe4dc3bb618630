"""Torch-Pruning's ViT head and MLP pruning beside onnxslim-kd's, on one trained ViT.

The torch source of samples/vit_digits (`DigitsViT`) is trained by that file's own
seeded `train()` (60 epochs, cached in ~/.cache/onnxslim-kd/bench-prune/ by the hash of
train.py) and exported with its own `export`, so both tools start from the same network:
Torch-Pruning 1.6.1 sees the torch modules, onnxslim-kd the exported ONNX. Both prune
attention heads and MLP hidden units at the same ratio with the same criterion (L1
magnitude: Torch-Pruning's `GroupMagnitudeImportance(p=1)`, `prune_num_heads=True`,
`prune_head_dims=False`, the residual width left whole: patch embedding, output
projections, second MLP layers and the head ignored; onnxslim-kd `--ratio R`, defaults).
Torch-Pruning's result is exported the same way. MACs from `onnxslim_kd.graph.stats`,
accuracy on the 540 test digits in onnxruntime with no fine-tuning, latency interleaved
at batch 32 (2 threads).

Torch-Pruning goes into the benchmark environment only, e.g.:
    pip install --target /tmp/tp --no-deps torch-pruning==1.6.1
    PYTHONPATH=/tmp/tp:. python benchmarks/prune/vit_tp.py [--runs 100]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import tempfile
from pathlib import Path
from types import MethodType

import torch
import torch_pruning as tp

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.graph.validate import check, run
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SAMPLE = ROOT / "samples/vit_digits/train.py"
RATIOS = (0.25, 0.5)
CACHE = Path.home() / ".cache/onnxslim-kd/bench-prune"


def sample_module():
    spec = importlib.util.spec_from_file_location("vit_train", SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained(sample) -> torch.nn.Module:
    """The sample's ViT trained as train.py trains it (cached by train.py's hash)."""
    key = hashlib.sha256(SAMPLE.read_bytes()).hexdigest()[:16]
    cached = CACHE / f"vit_digits-{key}.pt"
    sample.configure_determinism(0)
    model = sample.DigitsViT()
    if cached.is_file():
        model.load_state_dict(torch.load(cached))
    else:
        sample.train(model, *sample.load_split("train"), epochs=60, seed=0)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cached)
    return model.eval()


def _attention_forward(self, x: torch.Tensor) -> torch.Tensor:
    """The sample's attention with the head size read off the projection (as Torch-Pruning
    users patch their forwards), so fewer heads compute the same per-head products."""
    n, steps, _ = x.shape
    size = self.query.out_features // self.heads

    def split(t: torch.Tensor) -> torch.Tensor:
        return t.view(n, steps, self.heads, size).transpose(1, 2)

    q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
    weights = (q @ k.transpose(-2, -1) * self.scale).softmax(-1)
    return self.out((weights @ v).transpose(1, 2).reshape(n, steps, self.heads * size))


def tp_prune(model: torch.nn.Module, ratio: float) -> torch.nn.Module:
    pruned = copy.deepcopy(model)
    heads, ignored = {}, [pruned.patch_embed, pruned.head]
    for block in pruned.blocks:
        attention = block.attention
        attention.forward = MethodType(_attention_forward, attention)
        for projection in (attention.query, attention.key, attention.value):
            heads[projection] = attention.heads
        ignored += [attention.out, block.mlp[2]]
    pruner = tp.pruner.MetaPruner(
        pruned, torch.zeros(1, 1, 32, 32), importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio, ignored_layers=ignored, num_heads=heads, prune_num_heads=True,
        prune_head_dims=False, head_pruning_ratio=ratio,
    )  # fmt: skip
    pruner.step()
    for block in pruned.blocks:
        block.attention.heads = pruner.num_heads[block.attention.query]
    return pruned.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", type=Path, default=HERE / "vit_tp.json")
    args = parser.parse_args()
    sample = sample_module()
    model = trained(sample)
    with tempfile.TemporaryDirectory() as tmp:

        def exported(module: torch.nn.Module, name: str):
            path = Path(tmp) / f"{name}.onnx"
            sample.DIGITS_TRAIN.export(module, path, source=sample.SOURCE)
            return load(path)

        original = exported(model, "original")
        test = load_data(ROOT / "samples/digits/test.npz", original)
        versions = {"original": original}
        for ratio in RATIOS:
            versions[f"onnxslim-kd {ratio}"], _ = prune(original, PruneOptions(ratio=ratio))
            versions[f"Torch-Pruning {ratio}"] = exported(tp_prune(model, ratio), f"tp{ratio}")
    shapes = {"input": [1, 1, 32, 32]}
    rows = []
    for name, version in versions.items():
        check(version)
        stats = model_stats(version, shapes)
        rows.append({"setting": name, "macs": stats.macs, "params": stats.params,
                     "accuracy": accuracy(run(version, test)["logits"], test.labels)})  # fmt: skip
    feeds = test.first(32)
    timing = bench([(k, v, feeds) for k, v in versions.items()], threads=2, runs=args.runs)
    for row, latency in zip(rows, timing.latencies, strict=True):
        row["p50_ms"], row["speedup"] = latency.median_ms, latency.speedup
    print(markdown_table(
        ["setting", "MACs", "params", "accuracy, no fine-tune", "p50 ms (batch 32)", "speed-up"],
        [[r["setting"], f"{r['macs']:,}", f"{r['params']:,}", f"{100 * r['accuracy']:.2f}%",
          f"{r['p50_ms']:.3f}", f"{r['speedup']:.2f}x"] for r in rows],
    ))  # fmt: skip
    record = {"rows": rows, "bench": timing.as_dict(), "torch_pruning": tp.__version__}
    args.json.write_text(json.dumps(record, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
