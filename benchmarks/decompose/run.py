"""Low-rank decomposition: MACs, interleaved onnxruntime latency, decomposition time, accuracy.

resnet50 and vgg11_bn (legacy torchvision exports, random weights) and a MatMul-heavy
transformer encoder built here with onnx.helper, each at rank ratios 0.5 and 0.25, with
and without --measure, all variants of a model timed interleaved in one run. The trained
digits sample at energies 0.99/0.95/0.9/0.8: test accuracy, MACs and speed-up.

    python benchmarks/decompose/run.py [--models resnet50,vgg11_bn,transformer,digits]
        [--runs 30] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnxslim_kd.bench.latency import bench
from onnxslim_kd.data import load_data, random_data
from onnxslim_kd.decompose import EnergySelector, RankSelector, RatioSelector, decompose
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.environment import environment
from onnxslim_kd.report.fidelity import accuracy, output_fidelity
from onnxslim_kd.report.table import markdown_table

ROOT = Path(__file__).resolve().parents[2]
RATIOS = (0.5, 0.25)
ENERGIES = (0.99, 0.95, 0.9, 0.8)
#: The digits model runs in about a millisecond: time it this many times more often.
DIGITS_RUNS_FACTOR = 10


def transformer(layers: int = 4, tokens: int = 128, width: int = 512, hidden: int = 2048):
    """A pre-norm single-head transformer encoder, [1, tokens, width] -> same (opset 17).

    Per layer: Q/K/V/output projections (width x width) and a ReLU MLP (width -> hidden ->
    width), all MatMul with constant 2-D weights on 3-D activations; the two attention
    MatMuls multiply activations and are listed as skipped.
    """
    rng = np.random.default_rng(0)
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def weight(name: str, shape: tuple[int, ...]) -> str:
        return const(name, rng.standard_normal(shape) / np.sqrt(shape[0]))

    def node(op: str, inputs: list[str], name: str, **attrs) -> str:
        nodes.append(helper.make_node(op, inputs, [f"{name}_out"], name=name, **attrs))
        return f"{name}_out"

    ones, zeros = const("ln.scale", np.ones(width)), const("ln.bias", np.zeros(width))
    x = "input"
    for i in range(layers):
        p = f"/layers.{i}"
        h = node("LayerNormalization", [x, ones, zeros], f"{p}/ln1", axis=-1)
        q, k, v = (
            node("MatMul", [h, weight(f"{p}.{n}.weight", (width, width))], f"{p}/attn/{n}/MatMul")
            for n in ("q", "k", "v")
        )
        kt = node("Transpose", [k], f"{p}/attn/kT", perm=[0, 2, 1])
        scores = node("MatMul", [q, kt], f"{p}/attn/scores/MatMul")
        scale = const(f"{p}.scale", 1 / np.sqrt(width))
        probs = node(
            "Softmax",
            [node("Mul", [scores, scale], f"{p}/attn/scale")],
            f"{p}/attn/softmax",
            axis=-1,
        )
        attended = node("MatMul", [probs, v], f"{p}/attn/context/MatMul")
        o = node(
            "MatMul", [attended, weight(f"{p}.o.weight", (width, width))], f"{p}/attn/o/MatMul"
        )
        x = node("Add", [x, o], f"{p}/residual1")
        h = node("LayerNormalization", [x, ones, zeros], f"{p}/ln2", axis=-1)
        up = node("MatMul", [h, weight(f"{p}.up.weight", (width, hidden))], f"{p}/mlp/up/MatMul")
        up = node(
            "Relu",
            [node("Add", [up, weight(f"{p}.up.bias", (hidden,))], f"{p}/mlp/up/Add")],
            f"{p}/mlp/relu",
        )
        down = node(
            "MatMul", [up, weight(f"{p}.down.weight", (hidden, width))], f"{p}/mlp/down/MatMul"
        )
        x = node("Add", [x, down], f"{p}/residual2")
    nodes[-1].output[0] = "output"
    graph = helper.make_graph(
        nodes, "transformer",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, tokens, width])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, tokens, width])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def zoo_model(name: str) -> onnx.ModelProto:
    spec = importlib.util.spec_from_file_location("zoo", ROOT / "samples/zoo/export.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    return load(zoo.ensure_exported(name, "legacy"))


def variants(name: str) -> list[tuple[str, RankSelector, bool]]:
    """(label, selector, measure) of every decomposed variant of a model."""
    if name == "digits":
        selectors = [(f"energy {e}", EnergySelector(e)) for e in ENERGIES]
    else:
        selectors = [(f"ratio {r}", RatioSelector(r)) for r in RATIOS]
    return [
        (f"{label}{' --measure' if measure else ''}", selector, measure)
        for label, selector in selectors
        for measure in (False, True)
    ]


def measure(name: str, runs: int, threads: int) -> dict:
    if name == "digits":
        model = load(ROOT / "samples/digits/model.onnx")
        data = load_data(ROOT / "samples/digits/test.npz", model)
    else:
        model = transformer() if name == "transformer" else zoo_model(name)
        data = random_data(model, batch=8)
    reference = run(model, data)
    first = next(iter(reference))
    rows, timed = [], [("original", model, data.first(1))]
    for label, selector, with_measure in variants(name):
        start = time.perf_counter()
        out, summary = decompose(model, selector, measure=with_measure)
        seconds = time.perf_counter() - start
        output = run(out, data)[first]
        rows.append(
            {
                "variant": label,
                "decompose_seconds": round(seconds, 2),
                "layers_decomposed": summary.decomposed,
                "candidates": len(summary.layers),
                "macs_before": summary.macs_before,
                "macs_after": summary.macs_after,
                "sqnr_db": round(output_fidelity(reference[first], output).sqnr_db, 2),
                "accuracy": accuracy(output, data.labels) if data.labels is not None else None,
            }
        )
        timed.append((label, out, data.first(1)))
    runs = runs * DIGITS_RUNS_FACTOR if name == "digits" else runs
    latency = bench(timed, threads=threads, runs=runs).as_dict()
    for row, lat in zip(rows, latency["models"][1:], strict=True):
        row["p50_ms"], row["speedup"] = lat["p50_ms"], lat["speedup"]
    base = latency["models"][0]
    original = {"variant": "original", "p50_ms": base["p50_ms"], "speedup": 1.0}
    if data.labels is not None:
        original["accuracy"] = accuracy(reference[first], data.labels)
    return {"model": name, "rows": [original, *rows]}


def table(records: list[dict]) -> str:
    header = ["model", "variant", "layers", "MACs", "p50 ms", "speed-up", "decompose s",
              "SQNR dB", "accuracy"]  # fmt: skip
    lines = []
    for rec in records:
        for i, row in enumerate(rec["rows"]):
            macs = (
                f"{row['macs_after'] / row['macs_before']:.2f}x" if "macs_after" in row else "1.00x"
            )
            lines.append((
                rec["model"] if i == 0 else "",
                row["variant"],
                f"{row['layers_decomposed']}/{row['candidates']}" if "candidates" in row else "",
                macs,
                f"{row['p50_ms']:.2f}",
                f"{row['speedup']:.2f}x",
                f"{row['decompose_seconds']:.1f}" if "decompose_seconds" in row else "",
                f"{row['sqnr_db']:.1f}" if "sqnr_db" in row else "",
                f"{row['accuracy']:.2%}" if row.get("accuracy") is not None else "",
            ))  # fmt: skip
    return markdown_table(header, lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg11_bn,transformer,digits")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json")
    args = parser.parse_args()
    records = []
    for name in args.models.split(","):
        records.append(measure(name, args.runs, args.threads))
        print(table(records[-1:]), flush=True)
    env = environment(args.threads)
    print("\n" + table(records))
    print(f"\n{env['cpu']['model']} ({', '.join(env['cpu']['isa'])}), {args.threads} threads, "
          f"onnxruntime {env['onnxruntime']}, batch 1, {args.runs} interleaved runs "
          f"({args.runs * DIGITS_RUNS_FACTOR} for digits)")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "models": records}, indent=2))


if __name__ == "__main__":
    main()
