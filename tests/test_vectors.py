"""Every vector in test-vectors/v1, replayed in-process through the reference adapter's dispatch
and graded by the conformance harness's own code (so pytest and p4-conformance cannot disagree)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def test_spec_revision_follows_the_spec_front_matter() -> None:
    # RULES decision 8: a vector file's specRevision is its spec's front-matter revision.
    from tools.vectors._envelope import envelope, spec_revision

    for path in sorted((ROOT / "test-vectors" / "v1").glob("*/*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["specRevision"] == spec_revision(doc["spec"]), path
    with pytest.raises(ValueError, match="revision"):
        envelope("framing", "p4-01-framing-v1", spec_revision("p4-01-framing-v1") - 1, {}, [])


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


# --- tools/vector_lint.py -------------------------------------------------------------------------

_SPEC = """# Toy

```markdown
## 1. Test-vector interface
| op | params | input | ok value | errors |
|---|---|---|---|---|
| `toy.hidden` | — | — | — | — |
```

## 14. Test-vector interface

| op | params | input | ok value | errors |
|---|---|---|---|---|
| `toy.echo` | — | `data`: hex, `n`: uint64 | `data`: hex, `why`: str (free) | `MESSAGE_INVALID` |
| `toy.form` | — | `cbor`: hex | the CBOR JSON form | — |

| machine | roles | meaning |
|---|---|---|
| `toy` | `a`, `b` | two sides |

| config key | type | required | meaning |
|---|---|---|---|
| `patience` | int | no | ticks |

| command | args | effect |
|---|---|---|
| `start` | `hint`: str (optional) | go |

| event | fields | when |
|---|---|---|
| `DONE` | `key`: hex, `note`: str (free) | finished |

### 14.1 States

| state | meaning |
|---|---|
| `WAIT` | waiting |
| `DONE` | done |

## 15. Changelog

| state | meaning |
|---|---|
| `OUTSIDE` | not in the section |

<!-- registry: error-codes -->
| Code | Name | Layer | Description |
|---|---|---|---|
| 0x0003 | MESSAGE_INVALID | core | bad |
| 0x0099 | TIMEOUT | core | slow |
"""

_README = """# Harness

| op | params | input | ok value | errors |
|---|---|---|---|---|
| `machine.new` | `machine`: str, `role`: str, `config`: {…} | `rng`: [hex] | `handle`: str | — |

| input item | shape | meaning |
|---|---|---|
| `recv` | x | y |
| `cmd` | x | y |
| `tick` | x | y |

| output item | shape | meaning |
|---|---|---|
| `send` | x | y |
| `event` | x | y |
| `error` | x | y |
"""


def _lint_tree(tmp_path: Path, tests: list[dict[str, Any]], pending: str = ""
               ) -> tuple[list[str], list[str]]:
    from tools.vector_lint import lint

    (tmp_path / "spec").mkdir(exist_ok=True)
    (tmp_path / "spec" / "p4-99-toy.md").write_text(_SPEC, encoding="utf-8")
    (tmp_path / "README.md").write_text(_README, encoding="utf-8")
    (tmp_path / "pending.txt").write_text(pending, encoding="utf-8")
    vec = tmp_path / "v1" / "toy"
    vec.mkdir(parents=True, exist_ok=True)
    for _, _, t in tests:
        t.setdefault("result", "invalid" if "error" in t["expect"] else "valid")
    groups = [{"op": op, "params": params, "tests": [t]} for op, params, t in tests]
    (vec / "t.json").write_text(json.dumps({"testGroups": groups}), encoding="utf-8")
    failures, still, _ = lint(tmp_path / "v1", tmp_path / "spec", tmp_path / "README.md",
                              tmp_path / "pending.txt")
    return failures, still


def _tx(steps: list[dict[str, Any]], config: dict[str, Any] | None = None,
        role: str = "a", ident: str = "tx") -> tuple[str, dict[str, Any], dict[str, Any]]:
    return ("machine.transcript", {"machine": "toy", "role": role, "config": config or {}},
            {"id": ident, "input": {"rng": [], "steps": steps}, "expect": {"value": {}}})


def test_vector_lint_accepts_what_the_text_defines(tmp_path: Path) -> None:
    ok = [("toy.echo", {}, {"id": "e1", "input": {"data": "00", "n": {"int": str(2**64 - 1)}},
                            "expect": {"value": {"data": "00"}}}),
          ("toy.echo", {}, {"id": "e2", "input": {"data": "zz"},
                            "expect": {"error": "MESSAGE_INVALID"}}),
          ("toy.form", {}, {"id": "f1", "input": {"cbor": "01"},
                            "expect": {"value": {"int": "1"}}}),
          _tx([{"now": 0, "in": {"cmd": "start", "hint": "x"}, "out": [{"send": "01"}],
                "state": "WAIT"},
               {"now": 1, "in": {"recv": ""},
                "out": [{"event": "DONE", "key": "00"}, {"error": "TIMEOUT"}], "state": "DONE"},
               {"now": 2, "in": {"tick": True}, "out": []}], config={"patience": 3}),
          # connection-addressed items and a composite state (conformance/README.md §3.4, §3.5)
          _tx([{"now": 0, "in": {"recv": "01", "conn": 2},
                "out": [{"send": "02", "conn": 2}], "state": "WAIT 2:DONE 3:WAIT"}], ident="tc")]
    assert _lint_tree(tmp_path, ok) == ([], [])


@pytest.mark.parametrize(("test", "problem"), [
    (("toy.hidden", {}, {"id": "h", "input": {}, "expect": {"value": {}}}),
     "undefined: op toy.hidden"),  # defined only inside fenced code
    (("toy.echo", {}, {"id": "i", "input": {"data": "00", "extra": 1}, "expect": {"value": {}}}),
     "undefined: op toy.echo input extra"),
    (("toy.echo", {}, {"id": "v", "input": {}, "expect": {"value": {"data": "", "len": 0}}}),
     "undefined: op toy.echo value len"),
    (("toy.echo", {}, {"id": "x", "input": {}, "expect": {"error": "TIMEOUT"}}),
     "undefined: op toy.echo error TIMEOUT"),
    (_tx([{"now": 0, "in": {"cmd": "begin"}}]), "undefined: machine toy command begin"),
    (_tx([{"now": 0, "in": {"cmd": "start", "speed": 1}}]),
     "undefined: machine toy command start arg speed"),
    (_tx([{"now": 0, "in": {"poke": True}}]), "undefined: input item poke"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "PAIRED"}]}]),
     "undefined: machine toy event PAIRED"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "DONE", "epoch": 1}]}]),
     "undefined: machine toy event DONE field epoch"),
    (_tx([{"now": 0, "in": {"tick": True}, "state": "OUTSIDE"}]),
     "undefined: machine toy state OUTSIDE"),  # a table after the section does not count
    (_tx([{"now": 0, "in": {"tick": True}, "state": "WAIT 1:OUTSIDE"}]),
     "undefined: machine toy state OUTSIDE"),  # each name of a composite state
    (_tx([{"now": 0, "in": {"recv": "01", "conn": "1"}}]), "conn '1' is not an int"),
    (_tx([{"now": 0, "in": {"recv": "01", "conn": 1}, "out": [{"send": "02"}]}]),
     "some recv/send items carry conn and others do not"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"error": "NO_SUCH_CODE"}]}]),
     "undefined: error code NO_SUCH_CODE"),
    (_tx([], config={"timeout_ms": 5}), "undefined: machine toy config timeout_ms"),
    (_tx([{"now": 0, "in": {"cmd": "start"}, "error": "NOT_A_CODE"}]),
     "undefined: error code NOT_A_CODE"),  # a refused command's code
    (_tx([], role="c"), "undefined: machine toy role c"),
    (("toy.echo", {}, {"id": "big", "input": {"n": 2**64 - 1}, "expect": {"value": {}}}),
     "big: input.n: integer 18446744073709551615 beyond 2^53-1"),
    (("toy.echo", {}, {"id": "lead", "input": {"n": {"int": "007"}}, "expect": {"value": {}}}),
     "is not a canonical decimal"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "DONE", "reason": "x"}]}]),
     "carries free text 'reason'"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "DONE", "note": "x"}]}]),
     "carries 'note', which the spec marks (free)"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "DONE"}]}]),
     "undefined: machine toy event DONE field key is required but missing"),  # compared exactly
    (("toy.echo", {}, {"id": "r", "input": {}, "expect": {"value": {}}}),
     "undefined: op toy.echo value data is required but missing"),
    (("toy.echo", {}, {"id": "t1", "input": {"data": 5}, "expect": {"value": {"data": "0"}}}),
     "t1: op toy.echo input data: 5 is not hex"),
    (("toy.echo", {}, {"id": "t2", "input": {}, "expect": {"value": {"data": "0"}}}),
     "t2: op toy.echo value data: \"0\" is not hex"),
    (_tx([], config={"patience": "3"}), "tx: machine toy config patience: \"3\" is not int"),
    (_tx([{"now": 0, "in": {"cmd": "start", "hint": 1}}]), "command start arg hint: 1 is not str"),
    (_tx([{"now": 0, "in": {"tick": True}, "out": [{"event": "DONE", "key": True}]}]),
     "event DONE field key: true is not hex"),
    (("toy.echo", {}, {"id": "w", "input": {}, "expect": {"value": {"why": "because"}}}),
     "w: expected value of toy.echo carries 'why', which the spec marks (free)"),
])
def test_vector_lint_reports(tmp_path: Path, test: Any, problem: str) -> None:
    failures, _ = _lint_tree(tmp_path, [test])
    assert any(problem in f for f in failures), failures


def test_vector_lint_rejects_unregistered_codes_in_the_tables(tmp_path: Path) -> None:
    from tools.vector_lint import read_contract

    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "p4-99-toy.md").write_text(_SPEC.replace("`MESSAGE_INVALID` |", "`MESAGE_INVALID` |"),
                                       encoding="utf-8")
    (tmp_path / "README.md").write_text(_README, encoding="utf-8")
    problems = read_contract(spec, tmp_path / "README.md").problems
    assert len(problems) == 1 and "op toy.echo" in problems[0] and "MESAGE_INVALID" in problems[0]


def test_vector_lint_pending_list_only_shrinks(tmp_path: Path) -> None:
    used = _tx([{"now": 0, "in": {"cmd": "begin"}}])
    failures, still = _lint_tree(tmp_path, [used], "# waiting for the spec\n"
                                                   "machine toy command begin\n")
    assert failures == [] and len(still) == 1 and still[0].startswith("machine toy command begin")
    failures, _ = _lint_tree(tmp_path, [used], "machine toy command begin\nop toy.gone\n")
    assert failures == ["stale allow-list entry (now defined or unused, remove it): op toy.gone"]
    big = ("toy.echo", {}, {"id": "b", "input": {"n": 2**60}, "expect": {"value": {}}})
    failures, _ = _lint_tree(tmp_path, [big], "b: input.n\n")  # lossless cannot be allow-listed
    assert any("beyond 2^53-1" in f for f in failures)


def test_vector_lint_on_the_real_tree(capsys: pytest.CaptureFixture[str]) -> None:
    # CI runs the same (tools/check.py): the spec text defines everything the vectors use.
    from tools.vector_lint import main

    status = main([])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "ops and" in out and " 0 machines" not in out
