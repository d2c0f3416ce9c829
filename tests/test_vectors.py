"""Every vector in test-vectors/v1, replayed in-process through the reference adapter's dispatch
and graded by the conformance harness's own code (so pytest and p4-conformance cannot disagree)."""

from __future__ import annotations

import pytest

from conformance.runner import load_cases, run_case_inprocess
from conformance.vectors import Case
from p4ref.adapter import handle

CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vector(case: Case) -> None:
    for result in run_case_inprocess(case, handle):
        assert result.outcome == "pass", f"{result.id}: {result.outcome} {result.detail}"


def test_vector_tree_is_not_empty() -> None:
    layers = {c.layer for c in CASES}
    assert {"framing", "identity"} <= layers
