"""Self-test of the conformance harness (conformance/): the reference passes, mutants fail exactly
their vectors, and broken adapters are caught (non-compliant, crash, timeout, bad hello)."""

from __future__ import annotations

import ast
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from conformance import runner
from conformance.coverage import coverage_markdown, parse_spec
from conformance.mutants import MUTANTS
from conformance.selftest.fake_adapter import FakeAdapter
from conformance.selftest.toy import build_tree
from conformance.vectors import load_tree
from p4ref.adapter import handle

ROOT = Path(__file__).resolve().parent.parent
# P4_CONFORMANCE_VECTORS points the real-tree tests at another tree (e.g. a fresh generation).
TREE = Path(os.environ.get("P4_CONFORMANCE_VECTORS", ROOT / "test-vectors" / "v1"))
PY = sys.executable
REF = f"{PY} -m p4ref.adapter"
FAKE = f"{PY} -m conformance.selftest.fake_adapter"


def _real_cases() -> list[Any]:
    rep = load_tree(TREE)
    assert not rep.errors, rep.errors
    if not rep.cases:
        pytest.skip(f"no vectors under {TREE}")
    return rep.cases


def _run(argv: list[str], tmp_path: Path) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "r.json"
    status = runner.main([*argv, "--json", str(out)])
    return status, json.loads(out.read_text(encoding="utf-8"))


def _outcomes(doc: dict[str, Any]) -> dict[str, str]:
    return {r["id"]: r["outcome"] for r in doc["results"]}


@pytest.fixture(scope="module")
def toy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def bad_toy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tree(tmp_path_factory.mktemp("badtoy"), misbehave=True)


# --- the real tree against the reference --------------------------------------------------------


def test_real_tree_is_schema_valid() -> None:
    cases = _real_cases()
    assert len({c.id for c in cases}) == len(cases)


def test_reference_adapter_passes_everything(tmp_path: Path) -> None:
    cases = _real_cases()
    status, doc = _run(["--adapter", REF, "--vectors", str(TREE), "--junit",
                        str(tmp_path / "j.xml"), "--markdown", str(tmp_path / "r.md")], tmp_path)
    bad = {k: v for k, v in _outcomes(doc).items() if v not in ("pass", "unsupported")}
    assert bad == {} and status == 0
    assert doc["run"]["compliant"] is True and len(doc["results"]) >= len(cases)
    assert ET.parse(tmp_path / "j.xml").getroot().tag == "testsuites"
    assert "| **TOTAL** |" in (tmp_path / "r.md").read_text(encoding="utf-8")


def test_inprocess_replay_matches() -> None:
    _real_cases()
    results = runner.run_vectors_inprocess(TREE, handle)
    assert [r for r in results if r.outcome not in ("pass", "unsupported")] == []


@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_mutant_fails_exactly_its_vectors(name: str) -> None:
    cases = _real_cases()
    mutant = MUTANTS[name]
    must = {c.id for c in cases if mutant.must_fail(c.op, c.expect, c.input)}
    if not must:
        pytest.skip(f"{name}: no vector in the tree can catch it yet")
    results = runner.run_vectors_inprocess(TREE, mutant.wrap(handle))
    failed = {r.id for r in results if r.outcome not in ("pass", "unsupported")}
    assert failed == must


@pytest.mark.parametrize("name", ["skip-length-check", "swallow-machine-errors"])
def test_mutant_as_a_proxy_process(name: str, tmp_path: Path) -> None:
    # The same defect, run the way a port author would: a JSON-Lines proxy in front of the adapter.
    cases = _real_cases()
    mutant = MUTANTS[name]
    layer = "framing" if name == "skip-length-check" else "pairing"
    must = {c.id for c in cases if c.layer == layer and mutant.must_fail(c.op, c.expect, c.input)}
    assert must, f"{name}: no {layer} vector catches it"
    status, doc = _run(["--adapter", f"{PY} -m conformance.mutants {name} -- {REF}",
                        "--vectors", str(TREE), "--layer", layer], tmp_path)
    assert status == 1
    assert {k for k, v in _outcomes(doc).items() if v == "fail"} == must
    assert doc["run"]["impl"] == f"p4ref+mutant:{name}"
    assert doc["run"]["compliant"] is True


def test_mutant_proxy_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    from conformance.mutants import main

    assert main(["no-such-mutant", "--", "true"]) == 2
    assert "unknown mutant" in capsys.readouterr().err
    assert main(["skip-length-check", "true"]) == 2


# --- broken adapters on the toy tree ------------------------------------------------------------


def test_toy_tree_passes_on_the_fake_adapter(toy_tree: Path, tmp_path: Path) -> None:
    status, doc = _run(["--adapter", FAKE, "--vectors", str(toy_tree)], tmp_path)
    assert status == 0, doc
    assert set(_outcomes(doc).values()) == {"pass"}
    assert {r["op"] for r in doc["results"]} == {"toy.echo", "machine.transcript",
                                                  "machine.pair"}


def test_unknown_op_answered_ok_is_non_compliant(toy_tree: Path, tmp_path: Path) -> None:
    status, doc = _run(["--adapter", f"{FAKE} --ok-unknown", "--vectors", str(toy_tree),
                        "--junit", str(tmp_path / "j.xml")], tmp_path)
    assert status == 1
    assert doc["run"]["compliant"] is False and "unknown op" in doc["run"]["compliance_detail"]
    assert set(_outcomes(doc).values()) == {"pass"}  # every vector passes, the run still fails
    xml = ET.parse(tmp_path / "j.xml").getroot()
    assert xml.find("./testsuite[@name='adapter']/testcase/failure") is not None


def test_crash_and_timeout_are_reported_and_the_run_continues(bad_toy_tree: Path,
                                                              tmp_path: Path) -> None:
    status, doc = _run(["--adapter", f"{FAKE} --crash-on crash --sleep-on sleep",
                        "--vectors", str(bad_toy_tree), "--timeout", "1",
                        "--markdown", str(tmp_path / "r.md")], tmp_path)
    got = _outcomes(doc)
    assert status == 1
    assert got.pop("toy-echo-crash") == "crash"
    assert got.pop("toy-echo-sleep") == "timeout"
    assert set(got.values()) == {"pass"} and "toy-echo-after" in got
    crash = next(r for r in doc["results"] if r["id"] == "toy-echo-crash")
    assert "exit code 3" in crash["detail"]
    assert "| `toy-echo-crash` | toy.echo | crash |" in (tmp_path / "r.md").read_text("utf-8")


def test_expectations_turn_failures_into_xfail(bad_toy_tree: Path, tmp_path: Path) -> None:
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"toy-echo-crash": "known bug #1", "toy-echo-1": "flaky?"}))
    status, doc = _run(["--adapter", f"{FAKE} --crash-on crash", "--vectors", str(bad_toy_tree),
                        "--tag", "toy.echo", "--expectations", str(exp)], tmp_path)
    got = _outcomes(doc)
    assert got["toy-echo-crash"] == "xfail" and got["toy-echo-1"] == "xpass"
    assert status == 1  # the xpass is unexpected


def test_bad_hello_is_a_setup_error(toy_tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert runner.main(["--adapter", f"{FAKE} --bad-hello", "--vectors", str(toy_tree)]) == 2
    assert "hello" in capsys.readouterr().err


def test_two_party_cross_implementation(toy_tree: Path, tmp_path: Path) -> None:
    status, doc = _run(["--adapter", FAKE, "--peer-adapter", f"{FAKE} --wrong-key",
                        "--vectors", str(toy_tree), "--tag", "machine.pair"], tmp_path)
    got = _outcomes(doc)
    assert set(got) == {"toy-pair-ok@ab", "toy-pair-ok@ba", "toy-pair-nobody-starts@ab",
                        "toy-pair-nobody-starts@ba"}
    assert got["toy-pair-ok@ab"] == "fail"  # B plays role b and derives a different key
    assert got["toy-pair-ok@ba"] == "pass"
    assert status == 1
    detail = next(r["detail"] for r in doc["results"] if r["id"] == "toy-pair-ok@ab")
    assert "key differs" in detail


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_relay_faults_keep_the_safety_property(toy_tree: Path, tmp_path: Path,
                                               seed: int) -> None:
    status, doc = _run(["--adapter", FAKE, "--vectors", str(toy_tree), "--tag", "machine.pair",
                        "--relay-faults", "drop=0.5,dup=0.5,reorder", "--seed", str(seed)],
                       tmp_path)
    assert status == 0, doc["results"]
    assert doc["run"]["faults"].startswith("drop=0.5")


def test_session_pairs_keep_their_streams_under_connection_faults() -> None:
    # README §5.2: a lost frame kills its connection, delays reorder only across connections,
    # repeated frames stand for a misbehaving transport; the session's streams stay a prefix of
    # what was sent (nothing lost inside, duplicated or reordered), whatever the seed.
    from conformance.relay import Faults

    for seed in range(6):
        for spec in ("drop,dup,reorder", "drop=0.02,dup=0.05,reorder=0.5"):
            results = runner.run_vectors_inprocess(TREE, handle, layers=["session"],
                                                   tags=["machine.pair"],
                                                   faults=Faults.parse(spec, seed))
            assert len(results) >= 3
            assert [(r.id, r.detail) for r in results if r.outcome != "pass"] == [], (seed, spec)


def test_session_pair_streams_catch_a_duplicated_message() -> None:
    # A port that delivers one message twice fails the stream check of the pair vectors.
    def doubled(request: dict[str, Any]) -> dict[str, Any]:
        resp = handle(request)
        if request["op"] == "machine.step" and resp.get("status") == "ok":
            out = resp["value"]["out"]
            hits = [o for o in out if o.get("event") == "MESSAGE"]
            if hits:
                out.insert(out.index(hits[0]) + 1, dict(hits[0]))
        return resp

    results = runner.run_vectors_inprocess(TREE, doubled, layers=["session"],
                                           tags=["machine.pair"])
    failed = {r.id for r in results if r.outcome == "fail"}
    assert {"ses-pair-generations", "ses-pair-killed"} <= failed


def test_invalid_vector_file_fails_the_run(toy_tree: Path, tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    doc = json.loads((root / "toy" / "echo.json").read_text())
    del doc["testGroups"][0]["tests"][0]["expect"]
    (root / "toy" / "broken.json").write_text(json.dumps(doc))
    rep = load_tree(root)
    assert any("broken.json: schema" in e for e in rep.errors)
    status, out = _run(["--adapter", FAKE, "--vectors", str(root)], tmp_path)
    assert status == 1 and out["run"]["load_errors"]


def test_inprocess_flag_and_layer_filter(toy_tree: Path, tmp_path: Path) -> None:
    ref = ["--inprocess", "p4ref.adapter"]
    status, doc = _run([*ref, "--vectors", str(toy_tree), "--layer", "nope"], tmp_path)
    assert status == 0 and doc["results"] == []
    status, doc = _run([*ref, "--vectors", str(toy_tree)], tmp_path)
    assert set(_outcomes(doc).values()) == {"unsupported"}  # the toy layer is not in p4ref
    assert status == 0 and doc["run"]["impl"] == "p4ref"
    assert runner.main([*ref, "--vectors", str(toy_tree), "--require-all"]) == 1
    assert runner.main(["--inprocess", "json", "--vectors", str(toy_tree)]) == 2  # no handle()


# --- coverage -----------------------------------------------------------------------------------


def test_coverage_report(tmp_path: Path, toy_tree: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "p4-99-toy.md").write_text(
        "# Toy\n\nA sender MUST say hello. [TOY-1] A receiver SHOULD wave [TOY-2].\n\n"
        "- The key MUST NOT leak. [TOY-3]\n\n| a | b |\n|---|---|\n| x | y MAY z [TOY-4] |\n\n"
        "```\nMUST [TOY-9]\n```\nSee [TOY-1].\n", encoding="utf-8")
    reqs = parse_spec(spec)
    assert {t: r.level for t, r in reqs.items()} == {
        "TOY-1": "MUST", "TOY-2": "SHOULD", "TOY-3": "MUST", "TOY-4": "MAY"}
    text, uncovered = coverage_markdown(spec, load_tree(toy_tree).cases)
    assert uncovered == 1 and "| TOY-3 |" in text.split("### All tags")[0]
    out = tmp_path / "cov.md"
    assert runner.main(["coverage", "--spec", str(spec), "--vectors", str(toy_tree),
                        "--markdown", str(out), "--strict"]) == 1
    assert "MUST requirements with no vector (1)" in out.read_text(encoding="utf-8")


def test_coverage_of_the_real_spec() -> None:
    if not list((ROOT / "spec").glob("*.md")):
        pytest.skip("no spec yet")
    text, _ = coverage_markdown(ROOT / "spec", load_tree(TREE).cases)
    assert "## Requirement coverage" in text


# --- grading details ------------------------------------------------------------------------------


def test_grading_rules() -> None:
    from conformance.jobs import grade_answer, json_equal

    assert not json_equal(1, True) and not json_equal(1, 1.0) and json_equal({"a": [1]}, {"a": [1]})
    ok = {"status": "ok", "value": {"x": 1}}
    err = {"status": "error", "error": "FRAME_TRUNCATED"}
    assert grade_answer("valid", {"value": {"x": 1}}, ok).outcome == "pass"
    assert grade_answer("valid", {"value": {"x": True}}, ok).outcome == "fail"
    assert grade_answer("valid", {"value": {"x": 1}}, err).outcome == "fail"
    assert grade_answer("invalid", {"error": "FRAME_TRUNCATED"}, err).outcome == "pass"
    assert grade_answer("invalid", {"error": "FRAME_TOO_LARGE"}, err).outcome == "wrong-error"
    assert grade_answer("invalid", {"error": "FRAME_TOO_LARGE"}, ok).outcome == "fail"
    assert grade_answer("acceptable", {"value": {"x": 1}}, err).outcome == "acceptable"
    assert grade_answer("acceptable", {"error": "X"}, ok).outcome == "acceptable"
    assert grade_answer("valid", {"value": 1}, {"status": "unsupported"}).outcome == "unsupported"
    assert grade_answer("valid", {"value": 1}, {"status": "weird"}).outcome == "fail"


def test_transcript_mismatch_is_reported_per_step(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    adapter = FakeAdapter()
    results = runner.run_vectors_inprocess(root, handler=adapter.handle)
    assert {r.outcome for r in results} == {"pass"}
    path = root / "toy" / "transcript.json"
    doc = json.loads(path.read_text())
    doc["testGroups"][0]["tests"][0]["input"]["steps"][1]["state"] = "PAIRED"
    path.write_text(json.dumps(doc))
    case = next(c for c in runner.load_cases(root) if c.id == "toy-transcript-a")
    (res,) = runner.run_case_inprocess(case, adapter.handle)
    assert res.outcome == "fail" and "step 1: state expected PAIRED, got DONE" in res.detail


# --- one-way dependencies -------------------------------------------------------------------------


def _imports(path: Path) -> set[str]:
    mods: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            mods |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            mods.add(node.module)
    return mods


@pytest.mark.parametrize(("package", "forbidden"), [("conformance", "p4ref"),
                                                    ("p4ref", "conformance")])
def test_harness_and_reference_depend_one_way(package: str, forbidden: str) -> None:
    # The harness knows implementations only through the adapter contract (conformance/README.md),
    # and the reference adapter knows nothing of the harness.
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 5
    bad = {str(f.relative_to(ROOT)): m for f in files for m in _imports(f)
           if m == forbidden or m.startswith(forbidden + ".")}
    assert bad == {}
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    assert f"import_module(\"{forbidden}" not in text and f"__import__(\"{forbidden}" not in text


# --- ERROR frames are compared by type, flags and code ------------------------------------------


def _frame(ftype: int, flags: int, body: bytes, length: int | None = None) -> str:
    n = len(body) if length is None else length
    return (bytes([1, ftype, flags]) + n.to_bytes(2, "big") + body).hex()


def _error(code: int, reason: str, flags: int = 0) -> str:
    import cbor2

    return _frame(0x01, flags, cbor2.dumps({1: code, 2: reason}))


def test_error_frames_compare_by_code_not_reason() -> None:
    from conformance.jobs import error_frame_key, out_equal

    a, b = _error(0x0203, "bad confirmation"), _error(0x0203, "")
    assert a != b and error_frame_key(a) == (0, 0x0203) == error_frame_key(b)
    assert out_equal([{"send": a}, {"error": "X"}], [{"send": b}, {"error": "X"}])
    assert not out_equal([{"send": a}], [{"send": _error(0x0204, "bad confirmation")}])
    assert not out_equal([{"send": a}], [{"send": _error(0x0203, "x", flags=1)}])
    assert not out_equal([{"send": a}], [{"send": b}, {"error": "X"}])
    assert not out_equal([{"send": a}], [{"event": "PAIRED"}])
    # not a well-formed ERROR frame: compared byte for byte
    ping = _frame(0x02, 0, bytes.fromhex("a1014800010203040506") + b"\x07")
    assert error_frame_key(ping) is None and not out_equal([{"send": ping}], [{"send": a}])
    bad_len = _frame(0x01, 0, bytes.fromhex(a[10:]), length=99)
    assert error_frame_key(bad_len) is None
    assert not out_equal([{"send": bad_len}], [{"send": a}])
    assert out_equal([{"send": bad_len}], [{"send": bad_len}])
    not_map = _frame(0x01, 0, bytes.fromhex("820102"))
    assert error_frame_key(not_map) is None and error_frame_key("zz") is None


def test_connection_addressed_items() -> None:
    # README §3.4: a send with conn matches only the same conn (ERROR frames still by code), and
    # --split-recv splits a recv within its own connection.
    from conformance.jobs import out_equal, split_recv_item

    a, b = _error(0x0405, "gap"), _error(0x0405, "")
    assert out_equal([{"send": a, "conn": 2}], [{"send": b, "conn": 2}])
    assert not out_equal([{"send": a, "conn": 2}], [{"send": b, "conn": 3}])
    assert not out_equal([{"send": a, "conn": 2}], [{"send": b}])
    assert not out_equal([{"send": "0102", "conn": 1}], [{"send": "0102", "conn": 2}])
    assert split_recv_item({"recv": "0a0b", "conn": 7}) == [{"recv": "0a", "conn": 7},
                                                              {"recv": "0b", "conn": 7}]
    assert split_recv_item({"recv": "", "conn": 7}) == [{"recv": "", "conn": 7}]
    assert split_recv_item({"recv": "0a0b"}) == [{"recv": "0a"}, {"recv": "0b"}]


def _rewrite_error_frames(code_delta: int) -> Any:
    """The reference adapter, but every ERROR frame it sends is re-worded (and its code shifted by
    ``code_delta``)."""
    import cbor2

    from conformance.jobs import error_frame_key

    def h(request: dict[str, Any]) -> dict[str, Any]:
        resp = handle(request)
        if request["op"] == "machine.step" and resp.get("status") == "ok":
            for item in resp["value"]["out"]:
                key = error_frame_key(item.get("send"))
                if key is not None:
                    body = cbor2.dumps({1: key[1] + code_delta, 2: "worded otherwise"})
                    item["send"] = _frame(0x01, key[0], body)
        return resp

    return h


def test_transcripts_compare_error_frames_by_code_only() -> None:
    # Every transcript whose expected output holds an ERROR frame passes for a port that words the
    # reason differently, and fails for one that sends another code (RULES decision 2).
    from conformance.jobs import error_frame_key

    def sends_error(c: Any) -> bool:
        steps = (c.expect.get("value") or {}).get("steps") or c.input.get("steps", [])
        return any(error_frame_key(o.get("send")) for s in steps for o in s.get("out", []))

    cases = [c for c in _real_cases() if c.op == "machine.transcript" and sends_error(c)]
    assert len(cases) >= 10, "the pairing and rendezvous transcripts send ERROR frames"
    reworded, shifted = _rewrite_error_frames(0), _rewrite_error_frames(1)
    for case in cases:
        assert runner.run_case_inprocess(case, reworded)[0].outcome == "pass", case.id
        assert runner.run_case_inprocess(case, shifted)[0].outcome == "fail", case.id


# --- recv splits and refused commands -------------------------------------------------------------


def test_reference_accepts_every_recv_split_byte_by_byte() -> None:
    # README §3.4: a machine accepts every split of the stream; --split-recv feeds one byte a step.
    results = runner.run_vectors_inprocess(TREE, handle, tags=["machine.transcript"],
                                           split_recv=True)
    assert len(results) >= 50
    assert [(r.id, r.detail) for r in results if r.outcome != "pass"] == []
    whole = MUTANTS["whole-frames-only"].wrap(handle)
    split = runner.run_vectors_inprocess(TREE, whole, tags=["machine.transcript"],
                                         split_recv=True)
    # a port that wants whole frames per read fails every transcript that receives anything
    multi = {c.id for c in _real_cases() if c.op == "machine.transcript"
             and any(len(s["in"].get("recv", "")) > 2 for s in c.input["steps"])}
    assert multi and multi <= {r.id for r in split if r.outcome == "fail"}


def test_refused_command_is_a_step_level_error(tmp_path: Path) -> None:
    root = build_tree(tmp_path / "t")
    adapter = FakeAdapter()
    case = next(c for c in runner.load_cases(root) if c.id == "toy-transcript-refused")
    assert runner.run_case_inprocess(case, adapter.handle)[0].outcome == "pass"
    path = root / "toy" / "transcript.json"
    doc = json.loads(path.read_text())
    steps = doc["testGroups"][0]["tests"][1]["input"]["steps"]
    steps[1]["error"] = "TIMEOUT"  # refused, but with another code
    path.write_text(json.dumps(doc))
    case = next(c for c in runner.load_cases(root) if c.id == "toy-transcript-refused")
    (res,) = runner.run_case_inprocess(case, adapter.handle)
    assert res.outcome == "fail"
    assert "refused with TIMEOUT, got error UNEXPECTED_MESSAGE" in res.detail
    del steps[1]["error"]  # not expected to be refused: the refusal fails the vector
    path.write_text(json.dumps(doc))
    case = next(c for c in runner.load_cases(root) if c.id == "toy-transcript-refused")
    (res,) = runner.run_case_inprocess(case, adapter.handle)
    assert res.outcome == "fail" and "step 1: adapter error UNEXPECTED_MESSAGE" in res.detail


def test_reference_accepts_every_request_integer_in_the_lossless_form() -> None:
    # README §3.1: an adapter accepts both forms for any integer field of a request, at any size.
    def lossless(v: Any) -> Any:
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            return {"int": str(v)}
        if isinstance(v, dict):
            return {k: lossless(x) for k, x in v.items()}
        if isinstance(v, list):
            return [lossless(x) for x in v]
        return v

    def wrapped(request: dict[str, Any]) -> dict[str, Any]:
        return handle({**request, "params": lossless(request.get("params")),
                       "input": lossless(request.get("input"))})

    results = runner.run_vectors_inprocess(TREE, wrapped)
    assert len(results) == len(_real_cases())
    assert [(r.id, r.detail) for r in results if r.outcome != "pass"] == []
