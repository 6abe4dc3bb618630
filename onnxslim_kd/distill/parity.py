"""The torch student against onnxruntime on real data, output by output.

Run before training (a student that computes another function would be trained on the
wrong one, for the whole run) and after write-back (the saved graph must be the student).
"""

from __future__ import annotations

import onnx
import torch

from onnxslim_kd.data.dataset import Dataset
from onnxslim_kd.distill.executor import GraphModule, to_torch
from onnxslim_kd.errors import InputError
from onnxslim_kd.graph.io import fixed_batch
from onnxslim_kd.graph.validate import run
from onnxslim_kd.report.fidelity import output_fidelity

#: Samples compared; a static batch compares one batch of its size.
PARITY_SAMPLES = 8
#: Largest relative difference (max |torch - ORT| / max |ORT|) training may start from;
#: exact rules differ from onnxruntime by float rounding only (about 1e-6).
PARITY_TOLERANCE = 1e-4


def parity(
    model: onnx.ModelProto, module: GraphModule, data: Dataset, device: str = "cpu",
    samples: int = PARITY_SAMPLES,
) -> dict[str, dict[str, float]]:  # fmt: skip
    """{output: {max_abs, max_rel}} of `module` against onnxruntime running `model`."""
    sample = data.subset(fixed_batch(model) or samples)
    reference = run(model, sample)
    with torch.no_grad():
        feeds = {k: v.to(device) for k, v in to_torch(sample.inputs).items()}
        produced = module.run(feeds)
    found = {}
    for name in module.output_names:
        fidelity = output_fidelity(reference[name], produced[name].float().cpu().numpy())
        found[name] = {"max_abs": fidelity.max_abs_diff, "max_rel": fidelity.max_rel_diff}
    return found


def check_parity(
    model: onnx.ModelProto, module: GraphModule, data: Dataset, device: str = "cpu"
) -> dict[str, dict[str, float]]:
    """`parity`, raising InputError naming the first output beyond PARITY_TOLERANCE."""
    found = parity(model, module, data, device)
    for name, diff in found.items():
        if not diff["max_rel"] <= PARITY_TOLERANCE:  # NaN fails too
            raise InputError(
                f"distill: the torch student differs from onnxruntime on output '{name}' "
                f"(max abs {diff['max_abs']:.3g}, relative {diff['max_rel']:.3g} > "
                f"{PARITY_TOLERANCE:g}) on a batch of the data; training "
                "it would fit the wrong function (report the model's ops at the issue tracker)"
            )
    return found
