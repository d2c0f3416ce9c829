"""Pairing vectors (tools/vectors/pairing.py): deterministic, schema-valid, and replayed in-process
through the same adapter and grading code the conformance harness uses (PAIR-42 transcripts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conformance.relay import Faults
from conformance.runner import run_vectors_inprocess
from p4ref.adapter import handle
from tools.vectors import pairing
from tools.vectors._envelope import dump

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    return {rel: dump(obj) for rel, obj in pairing.build().items()}


@pytest.fixture(scope="module")
def tree(built: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vectors") / "v1"
    for rel, text in built.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return root


def test_regeneration_is_byte_identical(built: dict[str, str]) -> None:
    again = {rel: dump(obj) for rel, obj in pairing.build().items()}
    assert again == built


def test_committed_files_match_the_builder(built: dict[str, str]) -> None:
    committed = ROOT / "test-vectors" / "v1" / "pairing"
    if not committed.is_dir():
        pytest.skip("pairing vectors not generated into the tree yet (tools/gen_vectors.py)")
    for rel, text in built.items():
        assert (ROOT / "test-vectors" / "v1" / rel).read_text("utf-8") == text, rel


def test_every_vector_passes_inprocess(tree: Path) -> None:
    results = run_vectors_inprocess(tree, handle)
    assert results, "no vectors ran"
    bad = [(r.id, r.outcome, getattr(r, "detail", "")) for r in results if r.outcome != "pass"]
    assert bad == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_pairs_are_safe_under_relay_faults(tree: Path, seed: int) -> None:
    """Drop, duplicate, reorder: a pairing may fail, but never ends with two different keys."""
    results = run_vectors_inprocess(tree, handle, faults=Faults(0.2, 0.2, 0.3, seed))
    bad = [(r.id, r.outcome) for r in results if r.outcome != "pass"]
    assert bad == []


def test_pairs_under_the_runners_default_faults(tree: Path) -> None:
    """The runner's own ``--relay-faults drop,dup,reorder`` over many seeds.  A lost first
    PAIR_PAKE leaves the inviter in WAIT_PAKE (the accepter's ERROR only ends that stream,
    PAIR-62) — an outcome the pair vectors once did not list (12 of 60 seeds failed)."""
    pair_tree = tree / "pairing"
    for seed in range(1, 61):
        faults = Faults.parse("drop,dup,reorder", seed)
        results = [r for r in run_vectors_inprocess(pair_tree, handle, faults=faults)
                   if r.id.startswith("pair-pair-")]
        assert results
        bad = [(r.id, r.outcome, getattr(r, "detail", "")) for r in results
               if r.outcome != "pass"]
        assert bad == [], f"seed {seed}"


def test_cited_tags_exist_in_the_spec(built: dict[str, str]) -> None:
    spec = (ROOT / "spec" / "p4-02-identity-pairing-v1.md").read_text("utf-8")
    defined = set(re.findall(r"\[(PAIR-\d+)\]", spec))
    cited = {
        tag
        for text in built.values()
        for grp in json.loads(text)["testGroups"]
        for t in grp["tests"]
        for tag in t["req"]
    }
    assert cited and cited <= defined, cited - defined


def test_spec_example_is_the_transcript_vector(built: dict[str, str]) -> None:
    """The §13 worked example and the pair-tx-code-* vectors are the same run."""
    spec = (ROOT / "spec" / "p4-02-identity-pairing-v1.md").read_text("utf-8")
    doc = json.loads(built["pairing/transcripts.json"])
    case = next(
        t for g in doc["testGroups"] for t in g["tests"] if t["id"] == "pair-tx-code-accepter"
    )
    paired = case["expect"]["value"]["steps"][-1]["out"][-1]
    assert paired["event"] == "PAIRED"
    assert paired["pair_root_key"] in spec and f"| sas | `{paired['sas']}` |" in spec
