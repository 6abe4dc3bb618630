"""Structured channel pruning: MACs reduction vs measured latency, and Torch-Pruning side by side.

Part 1 (zoo): resnet18, resnet50, mobilenet_v2, efficientnet_b0 (random weights, legacy
export, batch 1) pruned with criterion l1 at ratios 0.25 / 0.5 / 0.7 plus a `--target-macs`
sweep on resnet50. Each model and its pruned versions are timed interleaved in one
onnxruntime run (2 threads), so the ratio of medians survives a noisy shared machine.

Part 2 (digits): the torch source of samples/digits (`DigitsResNet`, with BatchNorm) is
rebuilt by `train.py`'s own seeded training function, checked to export to exactly the
weights of samples/digits/model.onnx, then pruned by Torch-Pruning (MetaPruner, L1 group
magnitude, stem conv and fc ignored, round_to 8) at the same MACs targets as
`onnxslim-kd prune --target-macs` gets on the ONNX (BN folded). Accuracy is measured right
after pruning, no fine-tuning, on the test split in onnxruntime for both tools.

    python benchmarks/prune/run.py [--runs 200] [--threads 2] [--skip-zoo] [--skip-digits]
        [--retrain]   # ignore the cached digits torch weights and retrain (minutes)
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import importlib.util
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from onnxslim_kd.bench.cpu import cpu_info
from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data
from onnxslim_kd.graph.stats import model_stats
from onnxslim_kd.prune.prune import PruneOptions, prune
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parent.parents[1]
HERE = Path(__file__).resolve().parent
ZOO_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "efficientnet_b0")
RATIOS = (0.25, 0.5, 0.7)
R50_TARGETS = (0.5, 0.35, 0.25)
# keep 90/75/50/30 % of the MACs; 0.5 and 0.3 (50 % and 70 % reduction) are the issue's
# targets, the milder two are where an unfine-tuned model is not yet at chance level
DIGITS_TARGETS = (0.9, 0.75, 0.5, 0.3)
SEED = 0
CACHE = Path.home() / ".cache" / "onnxslim-kd" / "bench-prune"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- part 1: zoo


def prune_timed(model: onnx.ModelProto, options: PruneOptions):
    start = time.perf_counter()
    pruned, summary = prune(model, options)
    seconds = time.perf_counter() - start
    onnx.checker.check_model(pruned)
    row = {
        "seconds": round(seconds, 3),
        "macs_before": summary.macs_before,
        "macs_after": summary.macs_after,
        "macs_reduction": round(summary.macs_before / summary.macs_after, 3),
        "params_before": summary.params_before,
        "params_after": summary.params_after,
        "groups_pruned": sum(g.status == "pruned" for g in summary.groups),
        "groups_skipped": sum(g.status == "skipped" for g in summary.groups),
        "warnings": summary.warnings,
    }
    return pruned, row


def zoo_model(name: str, settings: list[tuple[str, PruneOptions]], args) -> dict:
    """Prune one zoo model with every setting, then time all versions interleaved."""
    zoo = load_module("zoo_export", ROOT / "samples/zoo/export.py")
    model = onnx.load(str(zoo.ensure_exported(name, "legacy")))
    feeds = {"input": np.random.default_rng(SEED).standard_normal((1, 3, 224, 224), np.float32)}
    rows, versions = [], [("original", model, feeds)]
    for label, options in settings:
        pruned, row = prune_timed(model, options)
        rows.append({"model": name, "setting": label, **row})
        versions.append((label, pruned, feeds))
        print(
            f"{name} {label}: MACs {row['macs_reduction']:.2f}x fewer, "
            f"pruned in {row['seconds']:.2f}s",
            flush=True,
        )
    result = bench(versions, threads=args.threads, runs=args.runs, warmup=args.warmup)
    original_ms = result.latencies[0].median_ms
    for row, lat in zip(rows, result.latencies[1:], strict=True):
        row["original_ms"] = round(original_ms, 3)
        row["pruned_ms"] = round(lat.median_ms, 3)
        row["speedup"] = round(lat.speedup, 3)
        row["efficiency"] = round(lat.speedup / row["macs_reduction"], 3)
        print(
            f"{name} {row['setting']}: {original_ms:.2f} -> {lat.median_ms:.2f} ms "
            f"(x{lat.speedup:.2f}, {row['efficiency']:.2f} of the MACs reduction)",
            flush=True,
        )
    return {"rows": rows, "bench": result.as_dict()}


def run_zoo(args) -> dict:
    ratio_rows, benches = [], {}
    for name in ZOO_MODELS:
        settings = [(f"ratio {r}", PruneOptions(ratio=r, criterion="l1")) for r in RATIOS]
        out = zoo_model(name, settings, args)
        ratio_rows += out["rows"]
        benches[name] = out["bench"]
    settings = [
        (f"target-macs {t}", PruneOptions(target_macs=t, criterion="l1")) for t in R50_TARGETS
    ]
    out = zoo_model("resnet50", settings, args)
    benches["resnet50 target-macs"] = out["bench"]
    target_rows = out["rows"]
    checked = [r for r in ratio_rows + target_rows if r["model"] == "resnet50"]
    checked = [r for r in checked if r["macs_reduction"] <= 4.2]  # target-macs 0.25 lands at ~4.1x
    target = {
        "rule": "resnet50: measured speed-up >= 0.8 x MACs reduction for reductions up to 4x",
        "checked": [r["setting"] for r in checked],
        "met": all(r["efficiency"] >= 0.8 for r in checked),
        "prune_seconds_resnet50_max": max(
            r["seconds"] for r in ratio_rows + target_rows if r["model"] == "resnet50"
        ),
    }
    return {
        "ratios": ratio_rows,
        "resnet50_targets": target_rows,
        "target": target,
        "bench": benches,
    }


# ------------------------------------------------------------------------ part 2: digits


def conv_linear_macs(model: nn.Module, example: torch.Tensor) -> int:
    """MACs of Conv2d and Linear layers, counted like onnxslim_kd.graph.stats (batch 1)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kernel = module.weight.shape[1] * module.weight.shape[2] * module.weight.shape[3]
            total += output.numel() * kernel
        else:
            total += module.in_features * module.out_features * output.shape[0]

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model.eval()(example)
    for handle in handles:
        handle.remove()
    return total


def digits_torch_model(train_module, retrain: bool) -> tuple[nn.Module, dict]:
    """The sample's torch model with BN, trained by train.py's own function (cached)."""
    source = (ROOT / "samples/digits/train.py").read_bytes()
    cache = CACHE / f"digits-{hashlib.sha256(source).hexdigest()[:16]}.pt"
    model = train_module.DigitsResNet()
    info = {"cache": str(cache)}
    if cache.is_file() and not retrain:
        model.load_state_dict(torch.load(cache, weights_only=True))
        info["retrained"] = False
    else:
        start = time.perf_counter()
        train_module.configure_determinism()
        splits = train_module.split(*train_module.load_images())
        train_module.train(model, *splits["train"], epochs=12)
        info["retrained"] = True
        info["train_seconds"] = round(time.perf_counter() - start, 1)
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), cache)
    model.eval()
    # The torch weights must be the ones behind samples/digits/model.onnx.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "re.onnx"
        train_module.export(copy.deepcopy(model), path)
        ours = {
            t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer
        }
    sample = onnx.load(str(ROOT / "samples/digits/model.onnx"))
    ref = {t.name: onnx.numpy_helper.to_array(t) for t in sample.graph.initializer}
    same_names = sorted(ours) == sorted(ref)
    info["matches_sample_onnx"] = same_names
    info["max_abs_weight_diff"] = (
        float(max(np.abs(ours[k] - ref[k]).max() for k in ref)) if same_names else None
    )
    return model, info


def fold_bn(model: nn.Module) -> nn.Module:
    """Copy of DigitsResNet with every BatchNorm folded into its conv (what the ONNX holds)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    pairs = [(folded.stem, "0", "1")]
    for block in folded.stages:
        pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2")]
        if isinstance(block.shortcut, nn.Sequential):
            pairs.append((block.shortcut, "0", "1"))
    for parent, conv, bn in pairs:
        fused = fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn))
        setattr(parent, conv, fused)
        setattr(parent, bn, nn.Identity())
    return folded


def tp_prune(model: nn.Module, ratio: float, global_pruning: bool) -> nn.Module:
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    example = torch.zeros(1, 1, 32, 32)
    pruner = tp.pruner.MetaPruner(
        pruned,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),  # group L1, TP defaults otherwise
        pruning_ratio=ratio,
        global_pruning=global_pruning,
        max_pruning_ratio=0.8,  # = onnxslim-kd's --max-ratio default
        ignored_layers=[pruned.stem[0], pruned.fc],  # = onnxslim-kd's keep_stem + classifier
        round_to=8,
    )
    pruner.step()
    return pruned


def tp_for_target(model: nn.Module, target: float, global_pruning: bool) -> tuple[nn.Module, float]:
    """Smallest pruning_ratio whose MACs are <= target x original (bisection, like
    onnxslim-kd's ratio_for_macs); returns the pruned model and the ratio."""
    example = torch.zeros(1, 1, 32, 32)
    base = conv_linear_macs(model, example)
    lo, hi = 0.0, 0.8
    best = None
    for _ in range(8):  # 0.003 resolution; channel counts move in steps of 8 anyway
        mid = (lo + hi) / 2
        candidate = tp_prune(model, mid, global_pruning)
        if conv_linear_macs(candidate, example) <= target * base:
            hi, best = mid, (candidate, mid)
        else:
            lo = mid
    if best is None:
        best = (tp_prune(model, hi, global_pruning), hi)
    return best


def onnx_eval(model: onnx.ModelProto, images: np.ndarray, labels: np.ndarray) -> dict:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
    (logits,) = session.run(None, {session.get_inputs()[0].name: images})
    stats = model_stats(model)
    return {
        "accuracy": round(float((logits.argmax(1) == labels).mean()) * 100, 2),
        "macs": stats.macs,
        "params": stats.params,
    }


def torch_to_onnx(train_module, model: nn.Module) -> onnx.ModelProto:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tp.onnx"
        train_module.export(copy.deepcopy(model).eval(), path)
        return onnx.load(str(path))


def run_digits(args) -> dict:
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    train_module = load_module("digits_train", ROOT / "samples/digits/train.py")
    test = np.load(ROOT / "samples/digits/test.npz")
    images, labels = test["input"], test["labels"]
    start = time.perf_counter()
    model, info = digits_torch_model(train_module, args.retrain)
    info["model_seconds"] = round(time.perf_counter() - start, 1)
    print(f"digits torch model: {info}", flush=True)
    sample = onnx.load(str(ROOT / "samples/digits/model.onnx"))
    calib = load_data(ROOT / "samples/digits/calib.npz", sample)
    base = onnx_eval(sample, images, labels)
    rows = [{"tool": "original", "setting": "-", "target_macs": 1.0, **base}]
    folded = fold_bn(model)
    for target in DIGITS_TARGETS:
        for global_pruning in (False, True):
            scope = "global" if global_pruning else "uniform"
            ratio = None
            for source, torch_model in (("", model), (" on BN-folded torch", folded)):
                t0 = time.perf_counter()
                if ratio is not None and not global_pruning:
                    # uniform: channel counts (so MACs) depend on the ratio only, reuse it
                    pruned = tp_prune(torch_model, ratio, global_pruning)
                else:
                    pruned, ratio = tp_for_target(torch_model, target, global_pruning)
                seconds = time.perf_counter() - t0
                row = onnx_eval(torch_to_onnx(train_module, pruned), images, labels)
                rows.append({
                    "tool": f"Torch-Pruning{source}",
                    "setting": f"L1 {scope}, pruning_ratio {ratio:.3f}",
                    "target_macs": target,
                    "seconds": round(seconds, 2),
                    **row,
                })  # fmt: skip
                print(rows[-1], flush=True)
            options = PruneOptions(
                target_macs=target, criterion="l1", global_ranking=global_pruning
            )
            # data-free (the comparison), then the same plan with --data calib.npz, which
            # folds the removed channels' mean output into the next layer's bias
            for tool, data in (("onnxslim-kd", None), ("onnxslim-kd + calib data", calib)):
                t0 = time.perf_counter()
                pruned_onnx, summary = prune(sample, options, data=data)
                seconds = time.perf_counter() - t0
                row = onnx_eval(pruned_onnx, images, labels)
                flag = " --global" if global_pruning else ""
                flag += " --data calib.npz" if data is not None else ""
                rows.append({
                    "tool": tool,
                    "setting": f"--criterion l1 --target-macs {target}{flag}",
                    "target_macs": target,
                    "seconds": round(seconds, 2),
                    "warnings": summary.warnings,
                    **row,
                })  # fmt: skip
                print(rows[-1], flush=True)
    comparison = []
    for target in DIGITS_TARGETS:
        for scope in ("uniform", "global"):
            tp_row = next(
                r for r in rows
                if r["tool"] == "Torch-Pruning" and r["target_macs"] == target
                and scope in r["setting"]
            )  # fmt: skip
            ours = next(
                r for r in rows
                if r["tool"] == "onnxslim-kd" and r["target_macs"] == target
                and (("--global" in r["setting"]) == (scope == "global"))
            )  # fmt: skip
            with_data = next(
                r for r in rows
                if r["tool"] == "onnxslim-kd + calib data" and r["target_macs"] == target
                and (("--global" in r["setting"]) == (scope == "global"))
            )  # fmt: skip
            best_ours = max(
                r["accuracy"]
                for r in rows
                if r["tool"].startswith("onnxslim-kd") and r["target_macs"] == target
            )
            comparison.append({
                "target_macs": target,
                "scope": scope,
                "torch_pruning": tp_row["accuracy"],
                "onnxslim_kd": ours["accuracy"],
                "gap_points": round(ours["accuracy"] - tp_row["accuracy"], 2),
                "onnxslim_kd_with_calib": with_data["accuracy"],
                "within_0.5": ours["accuracy"] >= tp_row["accuracy"] - 0.5,
                "best_onnxslim_kd_within_0.5": best_ours >= tp_row["accuracy"] - 0.5,
            })  # fmt: skip
    return {"torch_model": info, "rows": rows, "comparison": comparison}


# ------------------------------------------------------------------------------ report


def fmt_macs(value: int) -> str:
    return f"{value / 1e9:.2f} G" if value >= 1e8 else f"{value / 1e6:.1f} M"


def fmt_params(value: int) -> str:
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.0f} k"


def zoo_table(rows: list[dict]) -> str:
    header = [
        "model", "setting", "MACs before -> after", "MACs reduction", "params after",
        "latency orig -> pruned (ms)", "speed-up", "speed-up / MACs red.", "prune time",
    ]  # fmt: skip
    body = [
        [
            r["model"], r["setting"],
            f"{fmt_macs(r['macs_before'])} -> {fmt_macs(r['macs_after'])}",
            f"{r['macs_reduction']:.2f}x", fmt_params(r["params_after"]),
            f"{r['original_ms']:.2f} -> {r['pruned_ms']:.2f}", f"{r['speedup']:.2f}x",
            f"{r['efficiency']:.2f}", f"{r['seconds']:.2f} s",
        ]
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, body)


def digits_table(rows: list[dict]) -> str:
    header = ["tool", "setting", "MACs target", "MACs", "params", "test accuracy"]
    body = [
        [
            r["tool"], r["setting"], f"{r['target_macs']:.2f}",
            f"{fmt_macs(r['macs'])} ({r['macs'] / rows[0]['macs']:.3f})",
            f"{fmt_params(r['params'])} ({r['params'] / rows[0]['params']:.3f})",
            f"{r['accuracy']:.2f} %",
        ]
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, body)


def write_readme(results: dict, path: Path) -> None:
    marker = "<!-- results -->"
    text = path.read_text() if path.is_file() else f"# Pruning benchmark\n\n{marker}\n"
    head = text.split(marker)[0] + marker + "\n"
    parts = [f"Measured {results['date']}, script run time {results['seconds']:.0f} s.", ""]
    cpu = results["cpu"]
    parts += [
        f"Machine: {cpu['model']} ({cpu['arch']}, {cpu['logical_cores']} logical cores, "
        f"{', '.join(cpu['isa'])}); onnxruntime {results['environment'].get('onnxruntime')}, "
        f"{results['threads']} threads, batch 1, {results['runs']} interleaved runs after "
        f"{results['warmup']} warm-up rounds, medians. The machine was shared with other jobs.",
        "",
    ]
    if "zoo" in results:
        zoo = results["zoo"]
        parts += ["### Zoo, ratios (criterion l1)", "", zoo_table(zoo["ratios"]), ""]
        parts += ["### resnet50, `--target-macs`", "", zoo_table(zoo["resnet50_targets"]), ""]
        parts += [
            f"Target: {zoo['target']['rule']}: **{'met' if zoo['target']['met'] else 'NOT met'}**",
            "",
        ]
    if "digits" in results:
        digits = results["digits"]
        parts += ["### digits: Torch-Pruning vs onnxslim-kd (no fine-tune)", ""]
        parts += [digits_table(digits["rows"]), ""]
        body = [
            [
                f"{c['target_macs']:.2f}", c["scope"], f"{c['torch_pruning']:.2f} %",
                f"{c['onnxslim_kd']:.2f} %", f"{c['gap_points']:+.2f}",
                "yes" if c["within_0.5"] else "no", f"{c['onnxslim_kd_with_calib']:.2f} %",
            ]
            for c in digits["comparison"]
        ]  # fmt: skip
        header = [
            "MACs target",
            "ranking",
            "Torch-Pruning",
            "onnxslim-kd",
            "gap (points)",
            "within 0.5",
            "onnxslim-kd + calib data",
        ]
        parts += [markdown_table(header, body), ""]
    path.write_text(head + "\n".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-zoo", action="store_true")
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--json", type=Path, default=HERE / "results.json")
    parser.add_argument("--readme", type=Path, default=HERE / "README.md")
    args = parser.parse_args()
    start = time.perf_counter()
    results: dict = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu": cpu_info(),
        "environment": environment(args.threads),
        "threads": args.threads,
        "runs": args.runs,
        "warmup": args.warmup,
    }
    if not args.skip_digits:
        results["digits"] = run_digits(args)
    if not args.skip_zoo:
        results["zoo"] = run_zoo(args)
    results["seconds"] = round(time.perf_counter() - start, 1)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_readme(results, args.readme)
    print(f"done in {results['seconds']:.0f} s; wrote {args.json} and {args.readme}")


if __name__ == "__main__":
    main()
