"""Every vector in test-vectors/v1, replayed in-process through the reference adapter's dispatch
and graded by the conformance harness's own code (so pytest and p4-conformance cannot disagree)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.runner import load_cases, run_case_inprocess
from conformance.vectors import Case
from p4ref.adapter import handle

ROOT = Path(__file__).resolve().parent.parent
CASES = load_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_vector(case: Case) -> None:
    for result in run_case_inprocess(case, handle):
        assert result.outcome == "pass", f"{result.id}: {result.outcome} {result.detail}"


def test_vector_tree_is_not_empty() -> None:
    layers = {c.layer for c in CASES}
    assert {"framing", "identity"} <= layers


def test_spec_readme_vector_counts_are_written_between_markers() -> None:
    from tools.gen_vectors import COUNTS_BEGIN, COUNTS_END, with_counts

    doc = json.dumps({"numberOfTests": 3})
    files = {"framing/a.json": doc, "framing/b.json": doc, "pairing/c.json": doc}
    readme = f"intro\n{COUNTS_BEGIN}\n| stale |\n{COUNTS_END}\nrest\n"
    out = with_counts(readme, files)
    assert "| framing | 2 | 6 |" in out and "| pairing | 1 | 3 |" in out
    assert "| **total** | 3 | 9 |" in out and "stale" not in out
    assert out.startswith("intro\n") and out.endswith(f"{COUNTS_END}\nrest\n")
    assert with_counts(out, files) == out  # stable: --check passes right after a write
    assert with_counts("no markers", files) == "no markers"
    real = (ROOT / "spec" / "README.md").read_text(encoding="utf-8")
    assert COUNTS_BEGIN in real and COUNTS_END in real
