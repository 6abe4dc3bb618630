"""The work of `onnxslim-kd distill`, imported only when the command runs."""

from __future__ import annotations

import argparse

from cli.run.common import (
    data_from,
    emit_json,
    save_output,
    say,
)
from onnxslim_kd import progress
from onnxslim_kd.distill import require_torch
from onnxslim_kd.distill.options import DistillOptions
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.load import load
from onnxslim_kd.report.table import markdown_table


def run(args: argparse.Namespace) -> int:
    require_torch()
    from onnxslim_kd.distill.api import distill
    from onnxslim_kd.distill.distributed import joined

    try:
        options = DistillOptions(
            epochs=args.epochs, loss=args.loss, temperature=args.temperature, alpha=args.alpha,
            lr=args.lr, batch=args.batch, optimizer=args.optimizer, max_seconds=args.max_seconds,
            patience=args.patience, seed=args.seed, device=args.device, pairs=args.pair,
            augment_shift=args.augment_shift, augment_flip=args.augment_flip,
            augment_noise=args.augment_noise, checkpoint_dir=args.checkpoint_dir,
        )  # fmt: skip
    except ValueError as exc:
        raise InputError(f"distill: {exc}") from exc
    student = load(args.student)
    teachers = [load(path) for path in args.teacher]
    data = data_from(args, student, args.data)
    val = data_from(args, student, args.eval_data)
    with joined(options.device) as world:
        if not world.main:  # under torchrun only rank 0 shows progress and writes
            progress.configure(quiet=True)
        model, summary = distill(student, teachers, data, val=val, options=options)
    if not world.main:
        return 0
    save_output(model, args.output, args.student, *args.teacher)
    record = {"student": args.student, "teachers": args.teacher, "output": args.output, **summary}
    emit_json(args.json, record)
    say(args, render(summary, args.output))
    progress.warn("distill", _shortfall(summary, args))
    return 0


#: How far below the teacher (held-out accuracy) the student may end without a warning.
WARN_BELOW_TEACHER = 0.01


def _shortfall(summary: dict, args: argparse.Namespace) -> list[str]:
    """A warning when the student ends more than WARN_BELOW_TEACHER below the teacher."""
    after, teacher = summary.get("val_after"), summary.get("val_teacher")
    if after is None or teacher is None or after >= teacher - WARN_BELOW_TEACHER:
        return []
    epochs = summary["training"]["epochs"]
    return [
        f"the student ends {100 * (teacher - after):.1f} points below the teacher on the "
        f"held-out data ({after:.2%} vs {teacher:.2%}) after {epochs} epochs; train longer "
        f"(--epochs {2 * args.epochs}) or with more data"
    ]


def render(summary: dict, output: str) -> str:
    """Held-out metric before/after, the teacher's, and how training went."""
    training = summary["training"]
    rows = [(key.removeprefix("val_"), f"{summary[key]:.2%}")
            for key in ("val_before", "val_after", "val_teacher") if key in summary]  # fmt: skip
    rows.append(("epochs (best)", f"{training['epochs']} ({training['best_epoch']})"))
    if training["resumed_from"] is not None:
        rows.append(("resumed from checkpoint after epoch", str(training["resumed_from"])))
    if training["processes"] > 1:
        rows.append(("torchrun processes", str(training["processes"])))
    rows += [
        ("time", f"{training['seconds']:.1f} s, {training['stopped']}"),
        ("write-back max rel diff", f"{summary['writeback_max_rel_diff']:.2g}"),
    ]
    metric = summary.get("metric", "held-out metric").replace("_", " ")
    return markdown_table([metric, "value"], rows) + f"\n\nwrote {output}"
