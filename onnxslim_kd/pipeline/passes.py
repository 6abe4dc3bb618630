"""The modules that register passes; importing this module fills the registry.

Each pass package has a `pass_.py` whose `@register_pass` class adapts the package's
library function to recipes. Heavy dependencies (torch) are imported inside `run`,
so registering a pass never costs an import.
"""

import importlib

PASS_MODULES = (
    "onnxslim_kd.pipeline.builtin",
    "onnxslim_kd.prune.pass_",
    "onnxslim_kd.decompose.pass_",
    "onnxslim_kd.quantize.pass_",
    "onnxslim_kd.distill.pass_",
)

for _module in PASS_MODULES:
    importlib.import_module(_module)
