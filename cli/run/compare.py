"""The work of `onnxslim-kd compare`, imported only when the command runs."""

from __future__ import annotations

import argparse

from cli.run.common import (
    data_from,
    emit_json,
    say,
)
from onnxslim_kd import progress
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import write_text_atomic
from onnxslim_kd.graph.validate import run_pair
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.outputs import output_roles
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    reference, candidate = load(args.reference), load(args.candidate)
    data = data_from(args, reference, args.data)
    ref_out, cand_out = run_pair(reference, candidate, data, args.batch)
    roles = output_roles(reference, ref_out, data.labels, args.label_output)
    record: dict = {"samples": len(data), "outputs": {}, "roles": roles.as_dict()}
    rows = []
    for name, ref in ref_out.items():
        fid = roles.fidelity(name, ref, cand_out[name])
        entry = fid.as_dict()
        if name == roles.label_output:
            axis = roles.class_axes.get(name)
            entry["accuracy_reference"] = accuracy(ref, data.labels, axis)
            entry["accuracy_candidate"] = accuracy(cand_out[name], data.labels, axis)
        record["outputs"][name] = entry
        rows.append([name, *(_fmt(entry.get(k)) for k in COLUMNS)])
    emit_json(args.json, record)
    table = markdown_table(["output", *COLUMNS], rows) + f"\n\n{len(data)} samples"
    if args.markdown:
        notes = "".join(f"\nwarning: {w}" for w in roles.warnings)
        write_text_atomic(args.markdown, table + notes + "\n")
    say(args, table)
    progress.warn("compare", roles.warnings)
    return 0


COLUMNS = [
    "top1_agreement",
    "accuracy_reference",
    "accuracy_candidate",
    "max_abs_diff",
    "cosine",
    "sqnr_db",
]


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
