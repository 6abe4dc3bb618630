"""Where the time goes: onnxruntime's profiler aggregated per op type."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxslim_kd.graph.save import needs_external_data


def op_type_profile(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], runs: int = 20, threads: int | None = None
) -> dict[str, dict[str, float]]:
    """Per op type (as onnxruntime executes it, after fusions): total ms per run and share."""
    if needs_external_data(model):
        raise ValueError("profiling models over 2 GB is not supported")
    with tempfile.TemporaryDirectory(prefix="onnxslim-kd-profile-") as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"] / 1000.0
    overall = sum(totals.values()) or 1.0
    return {
        op: {"ms_per_run": round(ms / runs, 4), "share": round(ms / overall, 4)}
        for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])
    }
