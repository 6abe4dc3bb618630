"""Output helpers shared by the commands' work: data, shapes, saving, JSON and tables."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import onnx

from onnxslim_kd import progress
from onnxslim_kd.data import Dataset, Preprocess, load_data, with_data_shapes
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import parse_shapes
from onnxslim_kd.graph.load import file_uses_external_data
from onnxslim_kd.graph.save import save, write_text_atomic


def save_output(model: onnx.ModelProto, output: str | Path, source: str, *inputs: str) -> Path:
    """Atomic save that never overwrites an input; external data when the source used it."""
    external = True if file_uses_external_data(source) else None
    return save(model, output, external_data=external, protect=(source, *inputs))


def shapes_from(args: argparse.Namespace) -> dict[str, list[int]]:
    return parse_shapes(args.shape)


def shapes_for(
    args: argparse.Namespace, model: onnx.ModelProto, data: Dataset | None
) -> dict[str, list[int]]:
    """Concrete input shapes: --shape where given, else the data's sample sizes."""
    return with_data_shapes(model, data, shapes_from(args))


def data_from(
    args: argparse.Namespace, model: onnx.ModelProto, source: str | None, *, whole: bool = False
) -> Dataset | None:
    """Load `source` for `model` with the command's --preprocess and --batch-axis, and its
    --samples subset unless `whole`."""
    if source is None:
        return None
    return load_data(
        source,
        model,
        samples=None if whole else args.samples,
        preprocess=Preprocess.parse(args.preprocess),
        axes=parse_batch_axes(getattr(args, "batch_axis", None)),
    )


def parse_batch_axes(items: list[str] | None) -> dict[str, int | None]:
    """`--batch-axis state=1` / `sr=none` as {name: axis or None}."""
    axes: dict[str, int | None] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name or not (value.isdigit() or value.lower() == "none"):
            raise InputError(
                f"--batch-axis {item!r}: expected NAME=AXIS or NAME=none, e.g. state=1"
            )
        axes[name] = None if value.lower() == "none" else int(value)
    return axes


def emit_json(target: str | None, record: dict[str, Any]) -> None:
    """Write `record` to stdout ('-') or to a file; do nothing without a target."""
    if target is None:
        return
    text = json.dumps(record, indent=2, default=_jsonable)
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        write_text_atomic(target, text + "\n")


def _jsonable(value: Any) -> Any:
    """numpy scalars and paths in records become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def say(args: argparse.Namespace, text: str) -> None:
    """Human-readable output: on stdout unless JSON goes there (then stderr, unless that
    carries JSON log events) or --quiet is set."""
    if args.quiet:
        return
    stream = sys.stderr if getattr(args, "json", None) == "-" else sys.stdout
    if stream is sys.stderr and progress.MODE == "json":
        return
    print(text, file=stream)
