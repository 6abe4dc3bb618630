"""Low-rank decomposition: SVD for Gemm/MatMul/1x1 Conv, Tucker-2 for kxk Conv.

numpy and onnx only. Ranks come from a `RankSelector`; a layer is factorised only where
it pays (fewer MACs and, with `measure`, faster in onnxruntime).
"""

from onnxslim_kd.decompose.budget import Budget
from onnxslim_kd.decompose.core import decompose
from onnxslim_kd.decompose.ranks import (
    EnergySelector,
    RankSelector,
    RatioSelector,
    TargetMacsSelector,
    VbmfSelector,
    make_selector,
)

__all__ = [
    "Budget",
    "EnergySelector",
    "RankSelector",
    "RatioSelector",
    "TargetMacsSelector",
    "VbmfSelector",
    "decompose",
    "make_selector",
]
