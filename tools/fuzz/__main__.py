"""Run the fuzz targets: ``python -m tools.fuzz [list | run TARGET… | all] [options]``.

- With atheris installed (Linux x86-64: the ``test`` extra installs it), ``run`` is coverage-guided
  libFuzzer over the instrumented ``p4ref`` package, seeded from ``test-vectors/``; a finding
  stops the run, prints the target's exception and writes the crashing input to
  ``--artifacts`` (default ``.fuzz/artifacts/``).
- Without atheris (macOS, Windows), or with ``--engine mutate``, it runs a deterministic
  mutation loop (bit flips, truncation, insertion, splicing of seeds) over the same targets.

Examples::

    python -m tools.fuzz list
    python -m tools.fuzz run framing.decode --seconds 600          # the 10-minute local run
    python -m tools.fuzz all --runs 300 --engine mutate            # the CI smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _mutate(rng: random.Random, seed: bytes, pool: list[bytes]) -> bytes:
    data = bytearray(seed)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(6)
        if op == 0 and data:  # flip a bit
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1 and data:  # truncate
            del data[rng.randrange(len(data)):]
        elif op == 2:  # insert random bytes
            i = rng.randrange(len(data) + 1)
            data[i:i] = rng.randbytes(1 + rng.randrange(8))
        elif op == 3 and data:  # set a byte to an interesting value
            data[rng.randrange(len(data))] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x18, 0x1B])
        elif op == 4 and pool:  # splice another seed in
            other = rng.choice(pool)
            i = rng.randrange(len(data) + 1)
            data[i:] = other[rng.randrange(len(other) + 1):]
        elif op == 5 and data:  # duplicate a slice
            i = rng.randrange(len(data))
            data[i:i] = data[i:i + 1 + rng.randrange(16)]
    return bytes(data)


def run_mutate(name: str, runs: int, seconds: float, seed: int) -> int:
    """The pure-Python engine: returns the number of inputs run; raises on a finding."""
    from tools.fuzz.targets import Finding, all_targets

    target = all_targets()[name]
    pool = target.seeds() or [b""]
    rng = random.Random(f"{name}:{seed}")
    deadline = time.monotonic() + seconds if seconds > 0 else None
    count = 0
    for data in pool:
        target.run(data)
        count += 1
    while count < runs or (deadline is not None and time.monotonic() < deadline):
        if deadline is not None and time.monotonic() >= deadline:
            break
        data = _mutate(rng, rng.choice(pool), pool)
        try:
            target.run(data)
        except Finding:
            print(f"finding in {name} on input {data.hex()}", file=sys.stderr)
            raise
        count += 1
    return count


def run_atheris(name: str, runs: int, seconds: float, artifacts: Path) -> int:
    """One target under libFuzzer, in this process (atheris exits the process when it ends)."""
    import atheris

    with atheris.instrument_imports(include=["p4ref"]):
        # instrument the layers the adapter imports, and the profile store
        import p4ref.adapter
        import p4ref.io.store  # noqa: F401
    from tools.fuzz.targets import all_targets

    target = all_targets()[name]
    corpus = Path(tempfile.mkdtemp(prefix=f"p4fuzz-{name}-"))
    for i, data in enumerate(target.seeds()):
        (corpus / f"seed-{i:04d}").write_bytes(data)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.argv[0], str(corpus), f"-artifact_prefix={artifacts}/{name}-",
            "-print_final_stats=1", "-rss_limit_mb=4096", "-timeout=20"]
    if runs > 0:
        argv.append(f"-runs={runs}")
    if seconds > 0:
        argv.append(f"-max_total_time={int(seconds)}")
    atheris.Setup(argv, target.run)
    atheris.Fuzz()
    return 0  # not reached: atheris exits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["list", "run", "all"])
    ap.add_argument("targets", nargs="*")
    ap.add_argument("--runs", type=int, default=0, help="inputs per target (0: no limit)")
    ap.add_argument("--seconds", type=float, default=0, help="time per target (0: no limit)")
    ap.add_argument("--engine", choices=["auto", "atheris", "mutate"], default="auto")
    ap.add_argument("--seed", type=int, default=0, help="mutate engine: the PRNG seed")
    ap.add_argument("--artifacts", type=Path, default=ROOT / ".fuzz" / "artifacts")
    args = ap.parse_args(argv)

    from tools.fuzz.targets import Finding, all_targets

    names = sorted(all_targets())
    if args.command == "list":
        print("\n".join(names))
        return 0
    chosen = names if args.command == "all" else args.targets
    unknown = [n for n in chosen if n not in names]
    if not chosen or unknown:
        ap.error(f"unknown or no targets {unknown}; known: {', '.join(names)}")
    if args.runs <= 0 and args.seconds <= 0:
        ap.error("give --runs or --seconds")
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"

    failed = 0
    for name in chosen:
        t0 = time.monotonic()
        if engine == "atheris":
            # atheris owns the process it runs in: one child per target
            out = str(args.artifacts)
            call = f"run_atheris({name!r}, {args.runs}, {args.seconds}, Path({out!r}))"
            cmd = [sys.executable, "-c",
                   "from pathlib import Path; from tools.fuzz.__main__ import run_atheris; " + call]
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                                  env=dict(os.environ, PYTHONPATH=str(ROOT)))
            stats = [ln for ln in proc.stderr.splitlines()
                     if ln.startswith(("stat::number_of_executed_units", "stat::peak_rss_mb"))]
            execs = next((ln.split(":")[-1].strip() for ln in stats
                          if "executed_units" in ln), "?")
            ok = proc.returncode == 0
            print(f"{name}: {'ok' if ok else 'FINDING'} engine=atheris inputs={execs} "
                  f"time={time.monotonic() - t0:.1f}s", flush=True)
            if not ok:
                failed += 1
                print(proc.stderr[-4000:], file=sys.stderr)
        else:
            try:
                n = run_mutate(name, args.runs, args.seconds, args.seed)
            except Finding as exc:
                failed += 1
                print(f"{name}: FINDING {exc}", flush=True)
                continue
            print(f"{name}: ok engine=mutate inputs={n} time={time.monotonic() - t0:.1f}s",
                  flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
