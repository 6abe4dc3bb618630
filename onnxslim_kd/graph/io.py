"""The model's graph inputs and outputs as plain Python specs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx

from onnxslim_kd.errors import InputError

Dim = int | str | None  # a fixed size, a symbolic name, or unknown


@dataclass(frozen=True)
class TensorSpec:
    """Name, element type and (possibly dynamic) dims of a graph input or output."""

    name: str
    dtype: np.dtype
    dims: tuple[Dim, ...]

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.dims)

    def dims_text(self) -> str:
        """Shape as the user writes it, with symbolic dims by name: [batch,3,224,224]."""
        return "[" + ",".join("?" if d is None else str(d) for d in self.dims) + "]"

    def as_dict(self) -> dict:
        return {"name": self.name, "dtype": str(self.dtype), "shape": list(self.dims)}


def tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    """The spec of a graph input, output or value_info entry."""
    tensor_type = value.type.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    dims: list[Dim] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(dim.dim_value)
        else:
            dims.append(dim.dim_param or None)
    return TensorSpec(value.name, dtype, tuple(dims))


def model_inputs(model: onnx.ModelProto) -> list[TensorSpec]:
    """Graph inputs that must be fed (initializers listed as inputs are not)."""
    initializers = {t.name for t in model.graph.initializer}
    return [tensor_spec(v) for v in model.graph.input if v.name not in initializers]


def model_outputs(model: onnx.ModelProto) -> list[TensorSpec]:
    return [tensor_spec(v) for v in model.graph.output]


def parse_shapes(items: list[str] | None) -> dict[str, list[int]]:
    """Parse `--shape name=1x3x224x224` options (or `1x3x224x224` for the only input)."""
    shapes: dict[str, list[int]] = {}
    for item in items or []:
        name, _, text = item.rpartition("=")
        try:
            dims = [int(part) for part in text.lower().split("x")]
        except ValueError:
            raise InputError(
                f"--shape {item!r}: expected NAME=D1xD2x..., e.g. input=1x3x224x224"
            ) from None
        if any(d <= 0 for d in dims):
            raise InputError(f"--shape {item!r}: dimensions must be positive")
        shapes[name] = dims
    return shapes


def resolve_shapes(
    model: onnx.ModelProto, shapes: dict[str, list[int]], batch: int = 1
) -> dict[str, list[int]]:
    """Concrete shape for every input: given ones, else dynamic axis 0 becomes `batch`.

    Any other dynamic axis without a given shape is an error naming the input.
    """
    inputs = model_inputs(model)
    if "" in shapes:
        if len(inputs) != 1:
            raise InputError("--shape without a name needs a single-input model; use NAME=DIMS")
        shapes = {inputs[0].name: shapes[""]}
    unknown = set(shapes) - {spec.name for spec in inputs}
    if unknown:
        names = ", ".join(spec.name for spec in inputs)
        raise InputError(f"--shape names unknown input {sorted(unknown)[0]!r} (inputs: {names})")
    resolved: dict[str, list[int]] = {}
    symbol = batch_symbol(model)
    for spec in inputs:
        if spec.name in shapes:
            resolved[spec.name] = check_shape_fits(spec, shapes[spec.name])
            continue
        dims = []
        for axis, dim in enumerate(spec.dims):
            if isinstance(dim, int):
                dims.append(dim)
            elif axis == 0 or dim == symbol:  # the batch, wherever it sits
                dims.append(batch)
            else:
                raise InputError(
                    f"input '{spec.name}' {spec.dims_text()} has dynamic axis {axis}; "
                    f"give its shape (e.g. --shape {spec.name}=1x3x224x224) or data (--data)"
                )
        resolved[spec.name] = dims
    return resolved


def check_shape_fits(spec: TensorSpec, dims: list[int]) -> list[int]:
    """`dims` if it has the input's rank and agrees with every static dim, else InputError."""
    given = "x".join(map(str, dims))
    if len(dims) != len(spec.dims):
        raise InputError(
            f"--shape {spec.name}={given} has rank {len(dims)}; input '{spec.name}' "
            f"{spec.dims_text()} has rank {len(spec.dims)}"
        )
    for axis, (want, got) in enumerate(zip(spec.dims, dims, strict=True)):
        if isinstance(want, int) and want != got:
            raise InputError(
                f"--shape {spec.name}={given}: axis {axis} of input '{spec.name}' "
                f"{spec.dims_text()} is fixed at {want}"
            )
    return dims


def batch_symbol(model: onnx.ModelProto) -> str | None:
    """The symbolic dim the inputs share on axis 0 (most often), taken to be the batch."""
    symbols = [s.dims[0] for s in model_inputs(model) if s.dims and isinstance(s.dims[0], str)]
    return max(set(symbols), key=symbols.count) if symbols else None


def batch_axes(
    model: onnx.ModelProto, given: dict[str, int | None] | None = None, outputs: bool = False
) -> dict[str, int | None]:
    """Each input's (or output's) sample axis: where the batch symbol sits (a recurrent
    state [layers, batch, hidden] has it on axis 1), None for a scalar (a sample rate fed
    with every batch), else axis 0; `given` (--batch-axis NAME=AXIS) overrides."""
    symbol = batch_symbol(model)
    specs = model_outputs(model) if outputs else model_inputs(model)
    axes: dict[str, int | None] = {}
    for spec in specs:
        if given and spec.name in given:
            axes[spec.name] = given[spec.name]
        elif not spec.dims:
            axes[spec.name] = None
        elif symbol in spec.dims:
            axes[spec.name] = spec.dims.index(symbol)
        else:
            axes[spec.name] = 0
    return axes


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size a model's inputs pin on axis 0, or None when it is dynamic (some
    input carries a batch symbol, wherever it sits: [2, batch, 16] is dynamic)."""
    if batch_symbol(model) is not None:
        return None
    for spec in model_inputs(model):
        if spec.dims and isinstance(spec.dims[0], int):
            return spec.dims[0]
    return None


def restore_interface(model: onnx.ModelProto, original: onnx.ModelProto) -> None:
    """Declare the original's input and output types again, in place, where a tool's shape
    inference made a symbolic dim concrete (onnxruntime's quantizer turns an exporter's
    'Concatoutput_dim_1' into 7): the interface a user's code relies on stays as it was."""
    for values, before in ((model.graph.input, original.graph.input),
                           (model.graph.output, original.graph.output)):  # fmt: skip
        declared = {v.name: v.type for v in before}
        for value in values:
            kept = declared.get(value.name)
            if kept is not None and kept.tensor_type.elem_type == value.type.tensor_type.elem_type:
                value.type.CopyFrom(kept)
