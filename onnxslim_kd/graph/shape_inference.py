"""Shape inference that works for models of any size, fixed input shapes optional."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort

from onnxslim_kd.graph.walk import clone

#: Tensors larger than this are hidden from shape inference; their values are never
#: needed to infer shapes, and dropping them keeps the proto far under protobuf's 2 GB cap.
_VALUE_FREE_BYTES = 1 << 16


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return `model` with value_info filled in by onnx shape inference (data propagation on).

    Inference runs on a weight-free skeleton so that models over 2 GB work too; the
    inferred value_info is copied back onto the full model.
    """
    inferred = inferred_value_info(model)
    out = clone(model)
    del out.graph.value_info[:]
    out.graph.value_info.extend(inferred)
    return out


def reinfer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace `model`'s value_info, in place, by shapes inferred afresh; returns `model`.

    For a rewrite that changed tensor shapes: the recorded shapes are dropped before
    inference, since inference keeps a recorded shape it cannot contradict (stale 32x32
    shapes after a stride change made onnxruntime reject the model later), and no copy of
    the weights is made.
    """
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred_value_info(model))
    return model


def inferred_value_info(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """onnx shape inference (data propagation on) over the weight-free skeleton."""
    return list(inferred_graph(model).value_info)


def inferred_graph(model: onnx.ModelProto) -> onnx.GraphProto:
    """The weight-free skeleton's graph after onnx shape inference (data propagation on):
    its value_info, and the graph outputs' inferred shapes."""
    light = skeleton(model)
    return onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True).graph


Dim = int | str | None  # a fixed size, a symbolic one, or unknown


def inferred_dims(model: onnx.ModelProto) -> dict[str, list[Dim]]:
    """Every tensor's inferred dimensions (graph inputs and outputs included): sizes,
    symbolic names (equal names: equal sizes, as shape inference derived them) or None."""
    graph = inferred_graph(model)
    dims: dict[str, list[Dim]] = {}
    for info in [*graph.input, *graph.value_info, *graph.output]:
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            dims[info.name] = [
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                for d in tensor.shape.dim
            ]
    return dims


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose large initializers keep their name, type and dims but no bytes.

    Built field by field so the weights are never copied (a full copy of a 500 MB model
    cost about a second each time).
    """
    light = onnx.ModelProto()
    graph = model.graph
    for descriptor, value in model.ListFields():
        if descriptor.name == "graph":
            continue
        if descriptor.message_type is None:
            setattr(light, descriptor.name, value)
        else:
            getattr(light, descriptor.name).MergeFrom(value)
    light.graph.name = graph.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(light.graph, field).extend(getattr(graph, field))
    for tensor in graph.initializer:
        if len(tensor.raw_data) <= _VALUE_FREE_BYTES:
            light.graph.initializer.append(tensor)
            continue
        placeholder = light.graph.initializer.add(
            name=tensor.name, data_type=tensor.data_type, dims=tensor.dims
        )
        placeholder.data_location = onnx.TensorProto.EXTERNAL
        placeholder.external_data.add(key="location", value="skeleton.bin")
    return light


def static_shapes(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> dict[str, list[int]]:
    """Every tensor whose shape is fully known once the inputs have the given shapes."""
    fixed = skeleton(model)
    for inp in fixed.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            del dims[:]
            for size in shapes[inp.name]:
                dims.add().dim_value = int(size)
    del fixed.graph.value_info[:]  # stale symbolic dims would survive re-inference
    for out in fixed.graph.output:
        out.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)
    graph = inferred.graph
    known = {t.name: list(t.dims) for t in model.graph.initializer}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        dims = tensor_type.shape.dim
        if tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            known[value.name] = [d.dim_value for d in dims]
    missing = [name for node in model.graph.node for name in node.output if name not in known]
    if any(missing):
        measured = measured_values(model, shapes, [name for name in missing if name])
        known |= {name: list(value.shape) for name, value in measured.items()}
    return known


def measured_values(
    model: onnx.ModelProto, shapes: dict[str, list[int]], names: list[str]
) -> dict[str, np.ndarray]:
    """Tensors `names` read off one onnxruntime run on inputs of ones at `shapes`.

    For what ONNX's inference leaves open: exports compute reshape targets from sizes
    through Div and Cast (x.size(2) // heads), which its data propagation does not follow,
    and Expand targets through Where. Only sizes may be read off this run, never values
    that depend on the inputs' contents. Nothing is measured unless every input's shape is
    given, or when onnxruntime cannot run the model.
    """
    from onnxslim_kd.graph.session import make_session

    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not all(i.name in shapes for i in inputs):
        return {}
    feeds = {
        i.name: np.ones(shapes[i.name], onnx.helper.tensor_dtype_to_np_dtype(
            i.type.tensor_type.elem_type))
        for i in inputs
    }  # fmt: skip
    probe = clone(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    try:
        session = make_session(probe, optimization=ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
        values = session.run(names, feeds)
    except Exception:  # onnxruntime's errors share no base class; the shapes stay unknown
        return {}
    return dict(zip(names, values, strict=True))
