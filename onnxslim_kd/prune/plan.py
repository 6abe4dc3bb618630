"""Prune plans: the channels kept per group, saved as JSON to inspect, edit and re-apply."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.save import write_text_atomic

PLAN_FORMAT = "onnxslim-kd/prune-plan/1"


def plan_record(groups: dict[str, dict], criterion: str) -> dict:
    """The JSON document for `groups` ({id: {size, keep, nodes}})."""
    return {"format": PLAN_FORMAT, "criterion": criterion, "groups": groups}


def write_plan(record: dict, path: str | os.PathLike) -> None:
    write_text_atomic(path, json.dumps(record, indent=1) + "\n")


def read_plan(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such plan file")
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a JSON prune plan ({exc})") from exc
    if not isinstance(record, dict) or record.get("format") != PLAN_FORMAT:
        raise InputError(f"{path}: not a prune plan (expected format '{PLAN_FORMAT}')")
    return record


def planned_keep(group_id: str, entry: dict, size: int, groups: int) -> np.ndarray:
    """Validate one group's kept channels from a plan."""
    keep = entry.get("keep")
    if not isinstance(keep, list) or not keep or not all(isinstance(k, int) for k in keep):
        raise InputError(f"plan group '{group_id}': 'keep' must be a non-empty list of ints")
    kept = np.unique(np.array(keep, dtype=np.int64))
    if len(kept) != len(keep) or kept[0] < 0 or kept[-1] >= size:
        raise InputError(f"plan group '{group_id}': keep indices must be unique and in [0, {size})")
    if groups > 1 and len(np.unique(np.bincount(kept // (size // groups), minlength=groups))) > 1:
        raise InputError(f"plan group '{group_id}': every one of {groups} groups must keep as many")
    return kept
