"""The ONNX project's backend node tests, run against the torch executor.

Each case is a folder `test_*/` holding `model.onnx` and `test_data_set_*/input_*.pb`,
`output_*.pb` (protobuf tensors). The folders ship inside the onnx wheel pinned in
`CONFORMANCE_WHEEL`; `scripts/test.sh` downloads it and unpacks only those folders into
`.cache/`, like any other test dependency (no network at test time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
CONFORMANCE_WHEEL = "onnx==1.22.0"
DEFAULT_NODE_TESTS = ROOT / ".cache/onnx-1.22.0/onnx/backend/test/data/node"
NODE_TESTS = Path(os.environ.get("ONNXSLIM_KD_NODE_TESTS", DEFAULT_NODE_TESTS))
#: Op versions (schema since_version at the model's opset) the executor must pass.
REQUIRED_VERSIONS = range(11, 22)
RTOL, ATOL = 1e-3, 1e-5


@dataclass(frozen=True)
class Case:
    """One node test: its folder, model, and the (op type, op version) of each node."""

    name: str
    folder: Path
    model: onnx.ModelProto
    ops: tuple[tuple[str, int], ...]

    @property
    def required(self) -> bool:
        return all(version in REQUIRED_VERSIONS for _, version in self.ops)


def op_versions(model: onnx.ModelProto) -> tuple[tuple[str, int], ...]:
    """(op type, schema since_version) of every default-domain node, in graph order."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    found = []
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            found.append((f"{node.domain}.{node.op_type}", 0))
            continue
        try:
            version = onnx.defs.get_schema(node.op_type, opset).since_version
        except onnx.defs.SchemaError:
            version = 0
        found.append((node.op_type, version))
    return tuple(found)


def cases() -> list[Case]:
    """Every node test folder, sorted by name; raise if the data was never fetched."""
    if not NODE_TESTS.is_dir():
        raise FileNotFoundError(
            f"ONNX node tests not found at {NODE_TESTS}: run `bash scripts/test.sh`, which "
            f"fetches them from the {CONFORMANCE_WHEEL} wheel"
        )
    found = []
    for folder in sorted(NODE_TESTS.iterdir()):
        model_path = folder / "model.onnx"
        if model_path.is_file():
            model = onnx.load(model_path)
            found.append(Case(folder.name, folder, model, op_versions(model)))
    return found


def _tensor(path: Path) -> np.ndarray | None:
    """A protobuf tensor file as numpy; None for sequences, optionals and maps."""
    tensor = onnx.TensorProto()
    try:
        tensor.ParseFromString(path.read_bytes())
        if not tensor.dims and not tensor.raw_data and tensor.data_type == 0:
            return None
        return numpy_helper.to_array(tensor)
    except Exception:
        return None


def data_sets(case: Case) -> list[tuple[list[np.ndarray | None], list[np.ndarray | None]]]:
    """(inputs, expected outputs) of each test_data_set_* folder, in index order."""
    sets = []
    for folder in sorted(case.folder.glob("test_data_set_*")):

        def load(kind: str, folder: Path = folder) -> list[np.ndarray | None]:
            files = sorted(folder.glob(f"{kind}_*.pb"), key=lambda p: int(p.stem.split("_")[1]))
            return [_tensor(path) for path in files]

        sets.append((load("input"), load("output")))
    return sets


def mismatch(expected: np.ndarray, actual: np.ndarray) -> str | None:
    """Why `actual` is not `expected` (shape, dtype, values), or None when they agree."""
    if expected.shape != actual.shape:
        return f"shape {actual.shape} != {expected.shape}"
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype} != {expected.dtype}"
    if expected.dtype.kind == "V":  # bfloat16 and float8 (ml_dtypes): compare their values
        expected, actual = expected.astype(np.float32), actual.astype(np.float32)
    if expected.dtype.kind in "fc":
        if np.allclose(actual, expected, rtol=RTOL, atol=ATOL, equal_nan=True):
            return None
        diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
        return f"values differ (max abs {np.nanmax(diff):.3g})"
    if np.array_equal(actual, expected):
        return None
    return f"values differ ({int((actual != expected).sum())} of {expected.size})"


@dataclass(frozen=True)
class Outcome:
    """What the executor did with a case: pass, refused (InputError), error, wrong, unclaimed."""

    status: str
    reason: str = ""


def run(case: Case) -> Outcome:
    """Build the executor for `case`, feed every data set, compare every output."""
    import torch

    from onnxslim_kd.distill.executor import GraphModule, unsupported_ops
    from onnxslim_kd.distill.ops.dtypes import to_array, to_tensor
    from onnxslim_kd.errors import InputError

    try:
        missing = unsupported_ops(case.model)
    except InputError as exc:
        return Outcome("unclaimed", str(exc))
    if missing:
        return Outcome("unclaimed", ", ".join(missing))
    try:
        module = GraphModule(case.model)
        for inputs, expected in data_sets(case):
            if any(value is None for value in (*inputs, *expected)):
                return Outcome("refused", "a sequence or optional value")
            with torch.no_grad():
                produced = module(*(to_tensor(np.array(v)) for v in inputs))
            for index, (want, got) in enumerate(zip(expected, produced, strict=True)):
                why = mismatch(want, to_array(got))
                if why:
                    return Outcome("wrong", f"output {index}: {why}")
    except InputError as exc:
        return Outcome("refused", str(exc))
    except Exception as exc:
        return Outcome("error", f"{type(exc).__name__}: {exc}"[:200])
    return Outcome("pass")


#: Node tests of required op versions the executor refuses on purpose, with the reason.
ALLOWED_REFUSALS = {
    "test_equal_string": "string tensors: torch has no string dtype",
    "test_equal_string_broadcast": "string tensors: torch has no string dtype",
    "test_identity_opt": "an optional input: the executor runs graphs of tensors only",
}
