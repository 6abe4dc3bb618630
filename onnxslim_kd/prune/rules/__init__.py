"""One rule per ONNX op type; ops missing here block the channels they touch."""

from __future__ import annotations

from onnxslim_kd.prune.rules.attention import Softmax
from onnxslim_kd.prune.rules.base import Rule
from onnxslim_kd.prune.rules.conv import Conv, ConvTranspose
from onnxslim_kd.prune.rules.elementwise import Binary, Unary
from onnxslim_kd.prune.rules.linear import Gemm, MatMul
from onnxslim_kd.prune.rules.norm import LayerNorm, PerChannelParams
from onnxslim_kd.prune.rules.recurrent import Recurrent
from onnxslim_kd.prune.rules.spatial import Pad, Pool, Reduce, Resize
from onnxslim_kd.prune.rules.structure import (
    Concat,
    Flatten,
    Gather,
    Reshape,
    Shape,
    Slice,
    Split,
    Squeeze,
    Transpose,
    Unsqueeze,
)

UNARY_OPS = (
    "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "LeakyRelu", "Elu", "Selu",
    "Celu", "Tanh", "Softplus", "Softsign", "Gelu", "Erf", "Mish", "ThresholdedRelu",
    "Identity", "Dropout", "Cast", "Sqrt", "Neg", "Abs", "Exp", "Reciprocal", "Floor",
    "Ceil", "Round", "Sign",
)  # fmt: skip
BINARY_OPS = ("Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "PRelu")
POOL_OPS = ("MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool")
REDUCE_OPS = (
    "ReduceMean", "ReduceMax", "ReduceMin", "ReduceSum", "ReduceL1", "ReduceL2",
    "ReduceLogSumExp", "ReduceProd", "ReduceSumSquare",
)  # fmt: skip

RULES: dict[str, Rule] = {
    "Conv": Conv(),
    "ConvTranspose": ConvTranspose(),
    "Gemm": Gemm(),
    "MatMul": MatMul(),
    "BatchNormalization": PerChannelParams(),
    "InstanceNormalization": PerChannelParams(),
    "LayerNormalization": LayerNorm(),
    "Pad": Pad(),
    "Resize": Resize(),
    "Upsample": Resize(),
    "Concat": Concat(),
    "Split": Split(),
    "Slice": Slice(),
    "Flatten": Flatten(),
    "Reshape": Reshape(),
    "Shape": Shape(),
    "Squeeze": Squeeze(),
    "Unsqueeze": Unsqueeze(),
    "Transpose": Transpose(),
    "Gather": Gather(),
    "Softmax": Softmax(),
    "LogSoftmax": Softmax(),
    **{op: Recurrent() for op in ("LSTM", "GRU", "RNN")},
    **{op: Unary() for op in UNARY_OPS},
    **{op: Binary() for op in BINARY_OPS},
    **{op: Pool() for op in POOL_OPS},
    **{op: Reduce() for op in REDUCE_OPS},
}


def rule_for(op_type: str) -> Rule | None:
    return RULES.get(op_type)
