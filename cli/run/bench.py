"""The work of `onnxslim-kd bench`, imported only when the command runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.run.common import (
    data_from,
    emit_json,
    say,
    shapes_from,
)
from onnxslim_kd.bench.latency import BenchResult, bench
from onnxslim_kd.bench.profile import op_type_profile
from onnxslim_kd.data import random_data
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import write_text_atomic
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    shapes = shapes_from(args)
    entries = []
    for path in args.models:
        model = load(path)
        batch = fixed_batch(model) or args.batch
        data = data_from(args, model, args.data)
        feeds = data.first(batch) if data else random_data(model, shapes, batch=batch).inputs
        entries.append((Path(path).name, model, feeds))
    result = bench(entries, threads=args.threads, runs=args.runs, warmup=args.warmup)
    record = result.as_dict()
    table = render(result)
    if args.profile:
        profiles = {
            label: op_type_profile(m, f, runs=args.runs, warmup=args.warmup, threads=args.threads)
            for label, m, f in entries
        }
        record["profile"] = profiles
        table += "\n\n" + render_profiles(profiles)
    emit_json(args.json, record)
    if args.markdown:
        write_text_atomic(args.markdown, table + "\n")
    say(args, table)
    return 0


def render_profiles(profiles: dict[str, dict]) -> str:
    """One table: time per op type for each model, then the profiled run they add up to."""
    ops = list(dict.fromkeys(op for profile in profiles.values() for op in profile["ops"]))
    rows = [[op, *(_profile_cell(p["ops"].get(op)) for p in profiles.values())] for op in ops]
    rows.append(["profiled run (mean)", *(f"{p['run_ms']:.3f}" for p in profiles.values())])
    rows.append(["profiled run (median)", *(f"{p['median_ms']:.3f}" for p in profiles.values())])
    return markdown_table(["op type (ms/run, share)", *profiles], rows)


def _profile_cell(entry: dict[str, float] | None) -> str:
    return "-" if entry is None else f"{entry['ms_per_run']:.3f} ({entry['share']:.0%})"


def render(result: BenchResult) -> str:
    """Markdown table of the latencies and the machine they were measured on."""
    rows = [
        (
            lat.label,
            lat.batch,
            f"{lat.median_ms:.3f}",
            f"{lat.percentile(90):.3f}",
            f"{lat.percentile(99):.3f}",
            f"{lat.throughput:.1f}",
            f"{lat.speedup:.2f}x",
            f"{lat.interval[0]:.2f}-{lat.interval[1]:.2f}x" if lat.interval else "",
        )
        for lat in result.latencies
    ]
    env = result.environment
    cpu = env["cpu"]
    header = ["model", "batch", "p50 ms", "p90 ms", "p99 ms", "samples/s", "speed-up", "95%"]
    mode = "interleaved" if len(rows) > 1 else "single model"
    footer = (
        f"{cpu['model']} ({', '.join(cpu['isa']) or 'no AVX2/AVX512/VNNI'}), "
        f"{env['threads']} threads, onnxruntime {env['onnxruntime']}, "
        f"{result.runs} runs after {result.warmup} warm-up, {mode}; speed-up = ratio of "
        "medians, 95% = interval of the per-round ratio's median"
    )
    return markdown_table(header, rows) + "\n\n" + footer
