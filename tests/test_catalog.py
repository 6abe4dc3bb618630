"""Every pass's op registry agrees with the op catalog, in both directions."""

from __future__ import annotations

import subprocess
import sys

import pytest

from onnxslim_kd.graph.catalog import CATALOG, ops_where
from onnxslim_kd.graph.stats import MAC_RULES
from onnxslim_kd.prune.rules import RULES as PRUNE_RULES
from tests.conformance import ROOT


def test_prune_registry_matches_the_catalog():
    promised = {op: info.prune for op, info in CATALOG.items() if info.prune}
    registered = {op: type(rule).__name__ for op, rule in PRUNE_RULES.items()}
    assert registered == promised


def test_mac_formulas_match_the_catalog():
    assert set(MAC_RULES) == ops_where(macs=True)


def test_torch_executor_matches_the_catalog():
    ops = pytest.importorskip("onnxslim_kd.distill.ops")
    from onnxslim_kd.distill.executor import BUILTINS

    assert set(ops.RULES.op_types()) | BUILTINS == ops_where(execute=True)


def test_every_prunable_op_is_executable():
    """A pruned model is fine-tuned next: pruning through an op distill cannot run is a trap."""
    prunable = {op for op, info in CATALOG.items() if info.prune}
    assert prunable <= ops_where(execute=True)


def test_quantize_fields_are_known_treatments():
    assert {info.quantize for info in CATALOG.values()} <= {"int8", "float", "onnxruntime"}
    assert {info.fold for info in CATALOG.values()} <= {None, "exact", "integer"}


def test_torch_registry_refuses_a_duplicate_rule():
    ops = pytest.importorskip("onnxslim_kd.distill.ops")
    with pytest.raises(ValueError, match="a torch rule for Relu version 1 exists"):
        ops.RULES.register("Relu")(lambda ctx, x: x)


def test_docs_ops_md_is_generated_from_the_catalog():
    pytest.importorskip("torch")
    fresh = subprocess.run(
        [sys.executable, "scripts/ops_matrix.py", "--stdout"], cwd=ROOT, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert (ROOT / "docs/ops.md").read_text() == fresh, "run python scripts/ops_matrix.py"


def test_torch_rules_are_chosen_by_op_version():
    ops = pytest.importorskip("onnxslim_kd.distill.ops")
    assert ops.RULES.lookup("Softmax", 12).since == 1  # coerced to 2-D at the axis
    assert ops.RULES.lookup("Softmax", 13).since == 13
    assert ops.RULES.lookup("Clip", 10).since == 1  # bounds as attributes
    assert ops.RULES.lookup("Clip", 21).since == 11
    assert ops.RULES.lookup("Reshape", 4) is None  # shape as an attribute: no rule
    assert ops.RULES.lookup("NoSuchOp", 17) is None
