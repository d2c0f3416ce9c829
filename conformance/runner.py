"""``p4-conformance``: run the P4 vectors against any implementation's adapter.

Usage (the contract an adapter must meet is conformance/README.md)::

    p4-conformance --adapter "python -m p4ref.adapter"
    p4-conformance --adapter "node p4.js" --layer framing --junit out.xml --json out.json
    p4-conformance --adapter "A" --peer-adapter "B" --relay-faults drop,dup,reorder --seed 7
    p4-conformance --inprocess p4ref.adapter          # a Python adapter, no subprocess
    p4-conformance coverage [--spec spec] [--vectors DIR] [--markdown FILE]

Exit status: 0 when nothing unexpected happened; 1 when a vector failed (fail, wrong-error,
timeout, crash, xpass), the adapter is NON-COMPLIANT, a vector file is invalid, or (with
``--require-all``) something is unsupported; 2 on usage errors or an adapter that never starts.
"""

from __future__ import annotations

import argparse
import importlib
import json
import secrets
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .coverage import coverage_markdown
from .driver import AdapterError, AdapterProcess, run_inprocess, run_jobs
from .jobs import (
    FAILING,
    PASS,
    UNSUPPORTED,
    XFAIL,
    XPASS,
    JobFactory,
    Verdict,
    codec_job,
    transcript_job,
)
from .relay import Faults, pair_job
from .report import Result, RunInfo, is_failure, summarize, write_json, write_junit, write_markdown
from .vectors import Case, default_vectors_dir, load_tree

__all__ = ["build_jobs", "load_cases", "main", "run_case_inprocess", "run_suite",
           "run_vectors_inprocess"]

Json = dict[str, Any]


@dataclass
class Options:
    adapter: str | None = None
    peer_adapter: str | None = None
    inprocess: str | None = None  # a Python module with hello() and handle(request)
    vectors: Path = field(default_factory=default_vectors_dir)
    schema: Path | None = None
    layers: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    expectations: Path | None = None
    timeout: float = 5.0
    startup_timeout: float = 30.0
    window: int = 32
    faults: Faults = field(default_factory=Faults)
    require_all: bool = False
    split_recv: bool = False
    adapter_cwd: str | None = None
    adapter_env: dict[str, str] = field(default_factory=dict)
    verbose: bool = False


def select(cases: list[Case], layers: list[str], tags: list[str]) -> list[Case]:
    """``--layer`` matches the file's layer; ``--tag`` a req tag (``FRM-3``), a tag prefix
    (``FRM``), a flag (``TRAILING``), an op (``framing.decode``) or a vector id."""
    out = []
    for c in cases:
        if layers and c.layer not in layers:
            continue
        if tags:
            keys = set(c.req) | set(c.flags) | {c.op, c.id} | {t.rsplit("-", 1)[0] for t in c.req}
            if not keys & set(tags):
                continue
        out.append(c)
    return out


def build_jobs(cases: list[Case], *, two_adapters: bool = False, faults: Faults | None = None,
               split_recv: bool = False) -> list[tuple[Case, str, JobFactory]]:
    """One job per vector (two per ``machine.pair`` vector when a peer adapter is given:
    ``<id>@ab`` puts roles[0] in A and roles[1] in B, ``<id>@ba`` the reverse).  With
    ``split_recv``, transcripts deliver every received byte in its own step."""
    jobs: list[tuple[Case, str, JobFactory]] = []
    for c in cases:
        if c.op == "machine.transcript":
            jobs.append((c, c.id, lambda c=c: transcript_job(  # type: ignore[misc]
                c, split_recv=split_recv)))
        elif c.op == "machine.pair":
            r0, r1 = (str(r) for r in c.params.get("roles", ["?", "?"])[:2])
            variants = ([("ab", {r0: "A", r1: "B"}), ("ba", {r0: "B", r1: "A"})]
                        if two_adapters else [("", {r0: "A", r1: "A"})])
            for tag, assign in variants:
                rid = f"{c.id}@{tag}" if tag else c.id
                jobs.append((c, rid, lambda c=c, a=assign, t=tag: pair_job(  # type: ignore[misc]
                    c, a, faults, t)))
        else:
            jobs.append((c, c.id, lambda c=c: codec_job(c)))  # type: ignore[misc]
    return jobs


def apply_expectations(results: list[Result], expected: dict[str, str]) -> None:
    """xfail / xpass from an expectations file ``{"<vector id>": "reason"}``."""
    for r in results:
        reason = expected.get(r.id) or expected.get(r.id.split("@", 1)[0])
        if reason is None:
            continue
        if r.outcome in FAILING:
            r.detail = f"{reason} (was {r.outcome}: {r.detail})"
            r.outcome = XFAIL
        elif r.outcome == PASS:
            r.detail = f"expected to fail ({reason}) but passed"
            r.outcome = XPASS


def _result(case: Case, rid: str, v: Verdict, seconds: float) -> Result:
    return Result(id=rid, file=case.file, layer=case.layer, op=case.op, outcome=v.outcome,
                  detail=v.detail, result=case.result, req=case.req, flags=case.flags,
                  seconds=round(seconds, 6))


def run_vectors_inprocess(vectors_dir: Path | str | None, handler: Callable[[Json], Json], *,
                          layers: list[str] | None = None, tags: list[str] | None = None,
                          faults: Faults | None = None, split_recv: bool = False
                          ) -> list[Result]:
    """Replay every vector in-process through ``handler`` (an in-process adapter: one request
    object in, one response object out, e.g. ``p4ref.adapter.handle``), with the same grading as
    the subprocess runner.  Invalid vector files raise ``ValueError``."""
    root = Path(vectors_dir) if vectors_dir is not None else default_vectors_dir()
    rep = load_tree(root)
    if rep.errors:
        raise ValueError("invalid vector tree:\n" + "\n".join(rep.errors))
    jobs = build_jobs(select(rep.cases, layers or [], tags or []), faults=faults,
                      split_recv=split_recv)
    verdicts, durations = run_inprocess([f for _, _, f in jobs], handler)
    return [_result(c, rid, v, d)
            for (c, rid, _), v, d in zip(jobs, verdicts, durations, strict=True)]


def load_cases(vectors_dir: Path | str | None = None) -> list[Case]:
    """Every case of a vector tree (for ``pytest.mark.parametrize``); raises on invalid files."""
    root = Path(vectors_dir) if vectors_dir is not None else default_vectors_dir()
    rep = load_tree(root)
    if rep.errors:
        raise ValueError("invalid vector tree:\n" + "\n".join(rep.errors))
    return rep.cases


def run_case_inprocess(case: Case, handler: Callable[[Json], Json]) -> list[Result]:
    """Run one case in-process through ``handler`` (one result; a ``machine.pair`` case also
    gives one)."""
    jobs = build_jobs([case])
    verdicts, durations = run_inprocess([f for _, _, f in jobs], handler)
    return [_result(c, rid, v, d)
            for (c, rid, _), v, d in zip(jobs, verdicts, durations, strict=True)]


def load_inprocess(name: str) -> Any:
    """Import an in-process adapter module by name (``--inprocess MODULE``).  The harness knows
    it only through the contract: ``hello() -> dict`` and ``handle(request) -> response``."""
    module = importlib.import_module(name)
    if not all(callable(getattr(module, f, None)) for f in ("handle", "hello")):
        raise ImportError(f"{name} has no hello() and handle(request) functions")
    return module


def _probe(info: RunInfo) -> Callable[[Any, str], None]:
    """The unknown-op probe, run after every (re)start of an adapter."""
    from .driver import probe_unknown_op

    def probe(session: Any, target: str) -> None:
        op = f"p4probe.no_such_op_{secrets.token_hex(4)}"
        resp = probe_unknown_op(session, target, op)
        if resp is None or resp.get("status") != "unsupported":
            got = "no answer" if resp is None else json.dumps(resp)[:200]
            if info.compliant:
                info.compliance_detail = (f"adapter {target} answered unknown op {op!r} with "
                                          f"{got} (MUST be status unsupported)")
            info.compliant = False

    return probe


def run_suite(opts: Options) -> tuple[list[Result], RunInfo, list[Case], int]:
    """Load, run and grade; returns results, run info, the selected cases and the exit status."""
    t0 = time.monotonic()
    info = RunInfo(vectors_dir=str(opts.vectors), faults=opts.faults.describe(),
                   require_all=opts.require_all)
    rep = load_tree(opts.vectors, opts.schema)
    info.load_errors = list(rep.errors)
    for w in rep.warnings:
        print(f"p4-conformance: warning: {w}", file=sys.stderr)
    cases = select(rep.cases, opts.layers, opts.tags)
    jobs = build_jobs(cases, two_adapters=bool(opts.peer_adapter), faults=opts.faults,
                      split_recv=opts.split_recv)
    factories = [f for _, _, f in jobs]
    if opts.inprocess:
        module = load_inprocess(opts.inprocess)
        h = module.hello()
        info.impl, info.version = str(h["impl"]), str(h["version"])
        resp = module.handle({"id": 0, "op": f"p4probe.no_such_op_{secrets.token_hex(4)}"})
        if resp.get("status") != "unsupported":
            info.compliant = False
            info.compliance_detail = f"unknown op answered {resp}"
        verdicts, durations = run_inprocess(factories, module.handle)
    else:
        if not opts.adapter:
            raise AdapterError("--adapter COMMAND is required (or --inprocess MODULE)")
        env = None
        if opts.adapter_env:
            import os

            env = {**os.environ, **opts.adapter_env}
        procs = {"A": AdapterProcess("A", shlex.split(opts.adapter), None, opts.adapter_cwd, env,
                                     opts.verbose)}
        if opts.peer_adapter:
            procs["B"] = AdapterProcess("B", shlex.split(opts.peer_adapter), None,
                                        opts.adapter_cwd, env, opts.verbose)
        verdicts, durations, hellos = run_jobs(
            factories, procs, timeout=opts.timeout, startup_timeout=opts.startup_timeout,
            window=opts.window, probe=_probe(info))
        if "A" in hellos:
            info.impl, info.version = hellos["A"].impl, hellos["A"].version
        if "B" in hellos:
            info.peer = f"{hellos['B'].impl} {hellos['B'].version}"
        for t, p in procs.items():
            if p.restarts:
                print(f"p4-conformance: adapter {t} was restarted {p.restarts} time(s)",
                      file=sys.stderr)
    results = [_result(c, rid, v, d)
               for (c, rid, _), v, d in zip(jobs, verdicts, durations, strict=True)]
    if opts.expectations is not None:
        apply_expectations(results, json.loads(opts.expectations.read_text(encoding="utf-8")))
    info.seconds = round(time.monotonic() - t0, 3)
    failed = (not info.compliant or bool(info.load_errors)
              or any(is_failure(r, opts.require_all) for r in results))
    return results, info, cases, 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="p4-conformance",
        description="Run the P4 conformance vectors against an adapter (conformance/README.md). "
                    "Subcommand: 'p4-conformance coverage' for the requirement coverage report.")
    p.add_argument("--adapter", metavar="COMMAND",
                   help="command line of the adapter under test (split like a POSIX shell)")
    p.add_argument("--peer-adapter", metavar="COMMAND",
                   help="second adapter for two-party (machine.pair) vectors")
    p.add_argument("--inprocess", metavar="MODULE",
                   help="an in-process Python adapter: a module with hello() and "
                        "handle(request) -> response (e.g. p4ref.adapter); no subprocess")
    p.add_argument("--vectors", type=Path, default=None, metavar="DIR",
                   help="vector root (default: <repo>/test-vectors/v1)")
    p.add_argument("--schema", type=Path, default=None, help="envelope JSON Schema file")
    p.add_argument("--layer", action="append", default=[], metavar="L")
    p.add_argument("--tag", action="append", default=[], metavar="T",
                   help="req tag, tag prefix, flag, op or vector id (repeatable, OR)")
    p.add_argument("--expectations", type=Path, metavar="FILE",
                   help='known failures: JSON {"<vector id>": "reason"}')
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="per-request timeout in seconds (default 5)")
    p.add_argument("--startup-timeout", type=float, default=30.0, metavar="S")
    p.add_argument("--window", type=int, default=32, help="jobs in flight (pipelining)")
    p.add_argument("--relay-faults", default="", metavar="LIST",
                   help="two-party relay faults: drop,dup,reorder (optionally name=rate)")
    p.add_argument("--seed", type=int, default=0, help="seed of the relay fault RNG")
    p.add_argument("--require-all", action="store_true", help="unsupported counts as failure")
    p.add_argument("--split-recv", action="store_true",
                   help="transcripts: deliver every received byte in its own machine.step")
    p.add_argument("--adapter-cwd", metavar="DIR", help="working directory of the adapters")
    p.add_argument("--adapter-env", action="append", default=[], metavar="K=V")
    p.add_argument("--junit", type=Path, metavar="FILE")
    p.add_argument("--json", type=Path, metavar="FILE")
    p.add_argument("--markdown", type=Path, metavar="FILE")
    p.add_argument("--coverage", action="store_true",
                   help="add the requirement coverage report (spec/*.md tags) to the output")
    p.add_argument("--spec", type=Path, default=None, metavar="DIR", help="spec dir (coverage)")
    p.add_argument("-v", "--verbose", action="store_true", help="echo adapter stderr")
    return p


def _spec_dir(arg: Path | None, vectors: Path) -> Path:
    if arg is not None:
        return arg
    for cand in (vectors.resolve().parent.parent / "spec", Path(__file__).resolve().parent.parent
                 / "spec", Path.cwd() / "spec"):
        if cand.is_dir():
            return cand
    return Path.cwd() / "spec"


def coverage_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="p4-conformance coverage",
                                description="List spec requirement tags and the vectors citing "
                                            "them; exit 1 if a MUST tag has no vector "
                                            "(with --strict).")
    p.add_argument("--vectors", type=Path, default=None)
    p.add_argument("--spec", type=Path, default=None)
    p.add_argument("--markdown", type=Path, metavar="FILE")
    p.add_argument("--strict", action="store_true", help="exit 1 when a MUST tag is uncovered")
    a = p.parse_args(argv)
    vectors = a.vectors or default_vectors_dir()
    rep = load_tree(vectors)
    for e in rep.errors:
        print(f"VECTOR ERROR {e}", file=sys.stderr)
    text, uncovered = coverage_markdown(_spec_dir(a.spec, vectors), rep.cases)
    if a.markdown:
        a.markdown.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 1 if (a.strict and uncovered) or rep.errors else 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "coverage":
        return coverage_main(args[1:])
    a = _parser().parse_args(args)
    try:
        faults = Faults.parse(a.relay_faults, a.seed)
        env = dict(kv.split("=", 1) for kv in a.adapter_env)
    except ValueError as exc:
        print(f"p4-conformance: {exc}", file=sys.stderr)
        return 2
    opts = Options(adapter=a.adapter, peer_adapter=a.peer_adapter, inprocess=a.inprocess,
                   vectors=a.vectors or default_vectors_dir(), schema=a.schema, layers=a.layer,
                   tags=a.tag, expectations=a.expectations, timeout=a.timeout,
                   startup_timeout=a.startup_timeout, window=max(1, a.window), faults=faults,
                   require_all=a.require_all, split_recv=a.split_recv,
                   adapter_cwd=a.adapter_cwd, adapter_env=env,
                   verbose=a.verbose)
    if not opts.adapter and not opts.inprocess:
        print("p4-conformance: --adapter COMMAND is required (or --inprocess MODULE)",
              file=sys.stderr)
        return 2
    try:
        results, info, cases, status = run_suite(opts)
    except (AdapterError, ImportError) as exc:
        print(f"p4-conformance: adapter failed to start: {exc}", file=sys.stderr)
        return 2
    extra = ""
    if a.coverage:
        outcomes = {r.id: r.outcome for r in results}
        extra, _ = coverage_markdown(_spec_dir(a.spec, opts.vectors), cases, outcomes)
    print(f"p4-conformance: {info.impl} {info.version} — {len(results)} vectors in "
          f"{info.seconds:.2f} s ({opts.vectors})")
    print(summarize(results, info))
    if a.coverage:
        print(extra.split("\n\n", 2)[1] if "\n\n" in extra else extra)
    if a.junit:
        write_junit(a.junit, results, info)
    if a.json:
        write_json(a.json, results, info)
    if a.markdown:
        write_markdown(a.markdown, results, info, extra)
    if not results and not info.load_errors:
        print("p4-conformance: no vectors selected", file=sys.stderr)
    unsupported = sum(1 for r in results if r.outcome == UNSUPPORTED)
    if unsupported and not opts.require_all:
        print(f"p4-conformance: {unsupported} unsupported (not a failure without --require-all)")
    print("RESULT: " + ("FAIL" if status else "PASS"))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
