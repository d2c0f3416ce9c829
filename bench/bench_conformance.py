"""Time the conformance suite against the reference adapter (target: whole suite ≤ 30 s).

    .venv/bin/python bench/bench_conformance.py [--vectors DIR] [--repeat N] [--window N] [--quick]

Reports three numbers: the subprocess run exactly as ``p4-conformance --adapter "python -m
p4ref.adapter"`` does it (start-up, hello, probe, pipelined requests), the same with no
pipelining (``--window 1``), and the in-process replay used by pytest; then each subprocess
run's time as a ratio to the in-process replay (the cost of the process boundary and JSON lines).
``--quick`` (or ``P4_BENCH_QUICK=1``): each run once, for CI.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.runner import Options, run_suite, run_vectors_inprocess
from conformance.vectors import default_vectors_dir
from p4ref.adapter import handle


def _subprocess(vectors: Path, window: int) -> tuple[float, int, int]:
    opts = Options(adapter=shlex.join([sys.executable, "-m", "p4ref.adapter"]), vectors=vectors,
                   window=window)
    t0 = time.perf_counter()
    results, _, _, status = run_suite(opts)
    return time.perf_counter() - t0, len(results), status


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vectors", type=Path, default=default_vectors_dir())
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                   help="each run once, for CI (also: P4_BENCH_QUICK=1)")
    a = p.parse_args()
    if a.quick:
        a.repeat = 1
    rows = []
    modes = ((f"subprocess, window {a.window}", a.window), ("subprocess, window 1", 1))
    for label, window in modes:
        best = min((_subprocess(a.vectors, window) for _ in range(a.repeat)), key=lambda r: r[0])
        secs, n, status = best
        rows.append((label, secs, n, "PASS" if status == 0 else "FAIL"))
    t0 = time.perf_counter()
    results = run_vectors_inprocess(a.vectors, handle)
    secs = time.perf_counter() - t0
    bad = [r for r in results if r.outcome not in ("pass", "unsupported")]
    rows.append(("in-process", secs, len(results), "FAIL" if bad else "PASS"))
    print(f"vectors: {a.vectors}")
    for label, secs, n, verdict in rows:
        rate = n / secs if secs else float("inf")
        print(f"{label:<24} {n:>6} vectors  {secs:7.3f} s  {rate:9.0f} vectors/s  {verdict}")
    inproc = rows[-1][1]
    for label, secs, _n, _v in rows[:-1]:
        print(f"ratio ({label} / in-process): {secs / inproc if inproc else float('inf'):.1f}×")
    return 0 if all(r[3] == "PASS" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
