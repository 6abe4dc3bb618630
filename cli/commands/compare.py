"""`onnxslim-kd compare`: fidelity of a candidate model against a reference on real data."""

from __future__ import annotations

import argparse

from cli.commands.common import (
    add_command,
    add_data_options,
    add_json_option,
    data_from,
    emit_json,
    say,
)
from cli.commands.paths import PathRoles
from cli.commands.values import POSITIVE
from onnxslim_kd import progress
from onnxslim_kd.graph.load import load
from onnxslim_kd.graph.save import write_text_atomic
from onnxslim_kd.graph.validate import run_pair
from onnxslim_kd.report.fidelity import accuracy
from onnxslim_kd.report.outputs import output_roles
from onnxslim_kd.report.table import markdown_table

EXAMPLES = """examples:
  onnxslim-kd compare model.onnx model.int8.onnx --data test.npz
  onnxslim-kd compare model.onnx model.slim.onnx --data images/ --samples 500 --json -
"""


def register(subparsers, common: argparse.ArgumentParser) -> None:
    parser = add_command(
        subparsers,
        common,
        "compare",
        "top-1 agreement, accuracy, max abs diff, cosine and SQNR of CAND against REF",
        EXAMPLES,
    )
    parser.add_argument("reference", help="reference ONNX model (usually the original)")
    parser.add_argument("candidate", help="candidate ONNX model (usually the compressed one)")
    add_data_options(parser, required=True)
    parser.add_argument("--batch", type=POSITIVE, default=32, help="samples per inference (32)")
    parser.add_argument("--label-output", metavar="NAME",
                        help="the output the labels describe (default: the one [N, C] output "
                        "whose C is the labels' class count)")  # fmt: skip
    add_json_option(parser, "the fidelity record")
    parser.add_argument("--markdown", metavar="FILE", help="write the table to FILE")
    parser.set_defaults(
        handler=run,
        paths=PathRoles(inputs=("reference", "candidate", "data"), files=("json", "markdown")),
    )


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
            entry["accuracy_reference"] = accuracy(ref, data.labels)
            entry["accuracy_candidate"] = accuracy(cand_out[name], data.labels)
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
