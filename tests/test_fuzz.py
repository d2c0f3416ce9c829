"""The fuzz targets of tools/fuzz run in CI as a smoke test (issue: every decoder, text parser
and machine input path has one).  The long runs are local: ``python -m tools.fuzz run NAME
--seconds 600`` (coverage-guided with atheris).

Each target here gets its seeds (drawn from test-vectors/) plus a few hundred deterministic
mutations in-process, and two targets go once through atheris in a child process, so both
engines stay working.  A finding is a test failure that names the input.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.fuzz.__main__ import run_mutate
from tools.fuzz.targets import Finding, Target, _text_target, all_targets

ROOT = Path(__file__).resolve().parent.parent
SMOKE_RUNS = 400

TARGETS = sorted(all_targets())


def test_every_layer_has_targets() -> None:
    # decoders, text parsers, machine input paths and stored files of every layer so far
    for prefix in ("framing.", "cbor.", "identity.", "pairing.", "rendezvous.", "session.",
                   "machine.pairing.", "machine.rendezvous.", "store."):
        assert any(t.startswith(prefix) for t in TARGETS), prefix


@pytest.mark.parametrize("name", TARGETS)
def test_seeds_exist(name: str) -> None:
    assert all_targets()[name].seeds(), f"{name} has no seeds from test-vectors/"


@pytest.mark.parametrize("name", TARGETS)
def test_smoke(name: str) -> None:
    try:
        n = run_mutate(name, SMOKE_RUNS, 0, seed=0)
    except Finding as exc:
        pytest.fail(f"fuzz finding in {name}: {exc}", pytrace=False)
    assert n >= SMOKE_RUNS


def test_a_finding_is_reported() -> None:
    # the harness itself must be able to fail: a parser that crashes on some input
    def parser() -> object:
        def parse(text: str) -> object:
            return text[40]  # IndexError on short input, like the onion parser once did

        return parse

    target: Target = _text_target("planted", parser, lambda: [b"x" * 50])
    target.run(b"y" * 60)
    with pytest.raises(Finding, match="IndexError"):
        target.run(b"short")


@pytest.mark.skipif(
    importlib.util.find_spec("atheris") is None and os.environ.get("CI") != "true",
    reason="atheris is installed by the test extra on Linux x86-64 only",
)
def test_atheris_engine() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tools.fuzz", "run", "framing.decode", "machine.pairing.accepter",
         "--runs", "2000", "--engine", "atheris", "--artifacts", str(ROOT / ".fuzz" / "ci")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if "engine=atheris" in ln]
    assert len(lines) == 2 and all(": ok " in ln for ln in lines), proc.stdout
