"""What every pass does with every ONNX op type: the one table the registries answer to.

Passes keep their own rule code (the torch rules stay out of the core), but each of their
registries is checked against this table by `tests/test_catalog.py`: a registry that
handles an op the catalog does not list, or lacks what the catalog promises, fails it.
Plain op sets (constant folding, the quantizer's compute and float-kept ops) are read from
here directly. `docs/ops.md`, the support matrix, is generated from it by
`scripts/ops_matrix.py`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpInfo:
    """One op type, concern by concern.

    prune: the channel rule (class name in `prune.rules`) that carries channels through
        it; None: channels touching it are blocked, with the reason in the summary.
    execute: the torch executor (distill) has a rule for it.
    macs: `graph.stats` counts its multiply-accumulates.
    fold: canonicalize folds it on constants: "exact" always, "integer" on integers only.
    quantize: "int8" a compute op quantized with per-channel weights, "float" kept in
        float on purpose, "onnxruntime" left to onnxruntime's quantizer.
    zero_is_inactive: a zero output means a dead unit (ReLU-like): the APoZ criterion
        observes its output.
    keeps_channels: every channel stays where it is and depends on itself only, so a
        Split's cut of a conv reaches the conv through it (YOLO's C2f).
    """

    prune: str | None = None
    execute: bool = True
    macs: bool = False
    fold: str | None = None
    quantize: str = "onnxruntime"
    zero_is_inactive: bool = False
    keeps_channels: bool = False


def _family(names: str, **info) -> dict[str, OpInfo]:
    return {name: OpInfo(**info) for name in names.split()}


_RELU_LIKE = {"zero_is_inactive": True, "keeps_channels": True}


CATALOG: dict[str, OpInfo] = {
    # compute: pruned, counted, quantized
    **_family("Conv", prune="Conv", macs=True, quantize="int8"),
    **_family("ConvTranspose", prune="ConvTranspose", macs=True, quantize="int8"),
    **_family("Gemm", prune="Gemm", macs=True, quantize="int8"),
    **_family("MatMul", prune="MatMul", macs=True, quantize="int8"),
    **_family("Einsum"),
    # normalization
    **_family("BatchNormalization", prune="PerChannelParams", keeps_channels=True),
    **_family("InstanceNormalization", prune="PerChannelParams"),
    **_family("LayerNormalization", prune="LayerNorm"),
    **_family("GroupNormalization LRN MeanVarianceNormalization"),
    # activations and element-wise math that keep channels in place
    **_family("Relu Clip LeakyRelu HardSwish Elu Selu", prune="Unary", **_RELU_LIKE),
    **_family("Mish", prune="Unary", zero_is_inactive=True),
    **_family("Sigmoid Tanh HardSigmoid", prune="Unary", keeps_channels=True),
    **_family(
        "Celu Softplus Softsign Gelu Erf ThresholdedRelu Dropout Sqrt Abs Exp Reciprocal "
        "Floor Ceil Round Sign",
        prune="Unary",
    ),
    **_family("Identity", prune="Unary", fold="exact", keeps_channels=True),
    **_family("Cast", prune="Unary", fold="exact"),
    **_family("Neg", prune="Unary", fold="integer"),
    **_family("Add Sub Mul Max Min", prune="Binary", fold="integer"),
    **_family("Div Pow PRelu", prune="Binary"),
    **_family(
        "Log Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh Shrink IsNaN IsInf "
        "Not And Or Xor Less LessOrEqual Greater GreaterOrEqual Mod BitShift BitwiseAnd "
        "BitwiseOr BitwiseXor BitwiseNot Sum Mean CumSum CastLike"
    ),
    **_family("Equal Where", fold="exact"),
    **_family("Softmax LogSoftmax", prune="Softmax", quantize="float"),
    **_family("Hardmax"),
    # pooling and reductions
    **_family("MaxPool AveragePool GlobalAveragePool GlobalMaxPool LpPool", prune="Pool"),
    **_family("GlobalLpPool"),
    **_family(
        "ReduceMean ReduceMax ReduceMin ReduceSum ReduceL1 ReduceL2 ReduceLogSumExp "
        "ReduceProd ReduceSumSquare",
        prune="Reduce",
    ),
    **_family("ReduceLogSum ArgMax ArgMin TopK"),
    # spatial resampling and padding
    **_family("Resize Upsample", prune="Resize"),
    **_family("Pad", prune="Pad"),
    **_family("DepthToSpace SpaceToDepth"),
    # shape and data movement
    **{
        op: OpInfo(prune=op, fold="exact")
        for op in _family("Concat Split Slice Flatten Reshape Shape Squeeze Unsqueeze Transpose")
    },
    **_family("ConstantOfShape Expand Range Size Tile", fold="exact"),
    **_family("Gather", prune="Gather", fold="exact"),
    **_family("GatherElements GatherND ScatterElements ScatterND Trilu NonZero OneHot EyeLike"),
    # recurrent layers, control flow, stored tensors
    **_family("LSTM GRU RNN", prune="Recurrent", macs=True),
    **_family("If Constant"),
}


def ops_where(**wanted) -> frozenset[str]:
    """Op types whose catalog entry has every field given, e.g. ops_where(fold="exact")."""
    return frozenset(
        op
        for op, info in CATALOG.items()
        if all(getattr(info, field) == value for field, value in wanted.items())
    )
