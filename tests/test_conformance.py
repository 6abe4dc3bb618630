"""The executor against the ONNX project's backend node tests (see tests/conformance.py).

Every node test whose ops the executor claims (has a rule for at the test's opset) runs
with the test's own inputs and is compared output by output: shape, dtype, values
(rtol 1e-3 / atol 1e-5 for floats, exact otherwise). A claimed case either passes or is
refused with a reason; a wrong value or a crash fails the suite whatever the op version.
"""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests import conformance

CASES = conformance.cases()
OUTCOMES = {case.name: conformance.run(case) for case in CASES}
REQUIRED = [c.name for c in CASES if c.required and OUTCOMES[c.name].status != "unclaimed"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_op_versions_pass(name):
    outcome = OUTCOMES[name]
    if name in conformance.ALLOWED_REFUSALS:
        assert outcome.status == "refused", f"{name} now {outcome.status}: drop it from the list"
    else:
        assert outcome.status == "pass", f"{outcome.status}: {outcome.reason}"


def test_no_claimed_case_is_silently_wrong_or_crashes():
    bad = {n: o for n, o in OUTCOMES.items() if o.status in ("wrong", "error")}
    assert not bad, "\n".join(f"{n}: {o.status}: {o.reason}" for n, o in sorted(bad.items()))


def test_at_least_95_percent_of_required_claimed_cases_pass():
    passed = sum(OUTCOMES[name].status == "pass" for name in REQUIRED)
    assert len(REQUIRED) > 600
    assert passed / len(REQUIRED) >= 0.95


def test_allowed_refusals_are_required_claimed_cases():
    assert set(conformance.ALLOWED_REFUSALS) <= set(REQUIRED)
