"""Shape inference that works for models of any size, fixed input shapes optional."""

from __future__ import annotations

import onnx

from onnxslim_kd.graph.walk import clone

#: Tensors larger than this are hidden from shape inference; their values are never
#: needed to infer shapes, and dropping them keeps the proto far under protobuf's 2 GB cap.
_VALUE_FREE_BYTES = 1 << 16


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return `model` with value_info filled in by onnx shape inference (data propagation on).

    Inference runs on a weight-free skeleton so that models over 2 GB work too; the
    inferred value_info is copied back onto the full model.
    """
    inferred = onnx.shape_inference.infer_shapes(skeleton(model), strict_mode=False, data_prop=True)
    out = clone(model)
    del out.graph.value_info[:]
    out.graph.value_info.extend(inferred.graph.value_info)
    return out


def skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with the bytes of large initializers replaced by empty external references."""
    light = clone(model)
    for tensor in light.graph.initializer:
        if len(tensor.raw_data) > _VALUE_FREE_BYTES:
            tensor.ClearField("raw_data")
            tensor.data_location = onnx.TensorProto.EXTERNAL
            del tensor.external_data[:]
            entry = tensor.external_data.add()
            entry.key, entry.value = "location", "skeleton.bin"
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
    return known
