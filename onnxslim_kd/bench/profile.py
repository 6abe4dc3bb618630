"""Where the time goes: onnxruntime's profiler aggregated per op type.

The profiled session is made with the latency runs' options (threads, no spinning, full
optimization), the warm-up runs are left out, and the per-op times are reconciled with
the runs themselves: what no kernel accounts for (the executor's own overhead, copies)
is its own row, so the rows add up to the profiled run time.
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from onnxslim_kd.graph.save import needs_external_data
from onnxslim_kd.graph.session import session_options

#: The row of the run time that no kernel event accounts for.
OVERHEAD = "(between kernels)"


def op_type_profile(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], *, runs: int = 20, warmup: int = 5,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """{"run_ms": the profiled runs' mean, which the rows add up to, "median_ms", "runs",
    "ops": per op type (as onnxruntime executes it, after fusions) ms per run and share of
    the run, OVERHEAD included}."""
    if needs_external_data(model):
        raise ValueError("profiling models over 2 GB is not supported")
    with tempfile.TemporaryDirectory(prefix="onnxslim-kd-profile-") as tmp:
        options = session_options(threads=threads, spinning=False)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(model.SerializeToString(), options, ["CPUExecutionProvider"])
        for _ in range(warmup + runs):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    timed = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    timed = timed[warmup:]
    start = timed[0]["ts"] if timed else 0
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        kernel = event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
        if kernel and event["ts"] >= start:
            totals[event["args"]["op_name"]] += event["dur"] / 1000.0
    run_total = sum(e["dur"] for e in timed) / 1000.0
    totals[OVERHEAD] = max(run_total - sum(totals.values()), 0.0)
    count = max(len(timed), 1)
    profile = {
        op: {"ms_per_run": round(ms / count, 4), "share": round(ms / (run_total or 1.0), 4)}
        for op, ms in sorted(totals.items(), key=lambda kv: -kv[1])
    }
    median = statistics.median(e["dur"] for e in timed) / 1000.0 if timed else 0.0
    return {"run_ms": round(run_total / count, 4), "median_ms": round(median, 4),
            "runs": len(timed), "ops": profile}  # fmt: skip
