"""Cost of the session store (p4ref.io.session_store): group commit vs a transaction per message,
synchronous=FULL vs NORMAL, and CPU per MiB, with the ratios measured in the same run.

    python bench/bench_store.py [--runs N] [--dir DIR] [--quick]

Figures (each the median of ``--runs`` interleaved runs, default 11; ``--quick`` or
``P4_BENCH_QUICK=1``: 3 runs of smaller sizes, for CI):

- **1 KiB messages per second**, durable when counted: (a) *group commit*: 256 concurrent
  ``await SessionStore.append_outbox`` calls kept in flight, the asyncio batcher committing
  whatever accumulated during the previous commit; (b) *per message*: ``SessionDB`` with one
  ``commit()`` after every append. Each at FULL and NORMAL.
- **CPU per MiB** (user + system of this process, ``time.process_time``) for 16 KiB messages (16371
  payload bytes, p4-04 MAX_PAYLOAD) appended in transactions of 64 and deleted again by the
  peer's ACK in the next transaction: the steady state of a bulk transfer on the sending side.
  Also wall-clock MiB/s.

The runs of every configuration alternate (A B C D, A B C D, ...), so drift of the machine (other
processes, the disk's cache) hits all of them alike. The database lives in ``--dir`` (default the
system's temporary directory): put it on the disk the profile will use; on tmpfs an fsync costs
nothing and FULL equals NORMAL. Nothing is asserted; the ratios are what to watch.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from p4ref.io.session_store import MAX_PAYLOAD, Quota, SessionDB, SessionStore

PEER = bytes(range(32))
INC = bytes([1]) * 16
QUOTA = Quota(outbox_messages=1 << 30, outbox_bytes=1 << 40)


def _cpu() -> float:
    return time.process_time()  # user + system CPU of the whole process, every thread


def _fresh(base: Path, name: str) -> Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(mode=0o700)
    return d / "session.db"


def per_message(base: Path, level: str, n: int) -> float:
    """msgs/s, one transaction per 1 KiB message."""
    db = SessionDB(_fresh(base, "pm"), synchronous=level, quota=QUOTA)  # type: ignore[arg-type]
    db.create_session(PEER, INC)
    db.commit()
    payload = b"m" * 1024
    t = time.perf_counter()
    for _ in range(n):
        db.append_outbox(PEER, payload)
        db.commit()
    rate = n / (time.perf_counter() - t)
    db.close()
    return rate


def group(base: Path, level: str, n: int, window: int = 256) -> float:
    """msgs/s, 1 KiB messages, ``window`` sends in flight through the asyncio batcher."""
    async def main() -> float:
        store = await SessionStore.open(_fresh(base, "gc"), synchronous=level,  # type: ignore[arg-type]
                                        quota=QUOTA)
        await store.create_session(PEER, INC)
        payload = b"m" * 1024
        sem = asyncio.Semaphore(window)

        async def one() -> None:
            async with sem:
                await store.append_outbox(PEER, payload)

        t = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        rate = n / (time.perf_counter() - t)
        await store.close()
        return rate
    return asyncio.run(main())


def cpu_per_mib(base: Path, level: str, n: int, batch: int = 64) -> tuple[float, float]:
    """(CPU ms per MiB, wall MiB/s) for insert + delete of 16 KiB messages."""
    db = SessionDB(_fresh(base, "cpu"), synchronous=level, quota=QUOTA)  # type: ignore[arg-type]
    db.create_session(PEER, INC)
    db.commit()
    payload = os.urandom(MAX_PAYLOAD)
    c, t = _cpu(), time.perf_counter()
    sent = 0
    while sent < n:
        acked = sent
        for _ in range(min(batch, n - sent)):
            sent = db.append_outbox(PEER, payload)
        if acked:
            db.ack_outbox(PEER, acked)  # the peer's ACK of the previous batch
        db.commit()
    db.ack_outbox(PEER, sent)
    db.commit()
    cpu, wall = _cpu() - c, time.perf_counter() - t
    db.close()
    mib = n * MAX_PAYLOAD / (1 << 20)
    return cpu * 1000 / mib, mib / wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="3 runs of small sizes, for CI (also: P4_BENCH_QUICK=1)")
    args = ap.parse_args()
    runs = 3 if args.quick else args.runs
    n_group, n_single, n_cpu = (2000, 100, 256) if args.quick else (20000, 400, 1280)
    base = Path(tempfile.mkdtemp(prefix="p4-bench-store-", dir=args.dir))
    try:
        tests: dict[str, Callable[[], float | tuple[float, float]]] = {
            "group FULL": lambda: group(base, "FULL", n_group),
            "group NORMAL": lambda: group(base, "NORMAL", n_group),
            "per-message FULL": lambda: per_message(base, "FULL", n_single),
            "per-message NORMAL": lambda: per_message(base, "NORMAL", n_single),
            "cpu FULL": lambda: cpu_per_mib(base, "FULL", n_cpu),
            "cpu NORMAL": lambda: cpu_per_mib(base, "NORMAL", n_cpu),
        }
        results: dict[str, list[float]] = {k: [] for k in tests}
        walls: dict[str, list[float]] = {k: [] for k in tests if k.startswith("cpu")}
        for _ in range(runs):
            for name, fn in tests.items():  # interleaved
                r = fn()
                if isinstance(r, tuple):
                    results[name].append(r[0])
                    walls[name].append(r[1])
                else:
                    results[name].append(r)
        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"session store on {base} ({runs} interleaved runs, medians)")
        print("1 KiB messages, durable, msgs/s:")
        for k in ("group FULL", "group NORMAL", "per-message FULL", "per-message NORMAL"):
            print(f"  {k:<20} {med[k]:>10.0f}")
        print(f"  ratio group / per-message, FULL:   "
              f"{med['group FULL'] / med['per-message FULL']:.1f}×")
        print(f"  ratio group / per-message, NORMAL: "
              f"{med['group NORMAL'] / med['per-message NORMAL']:.1f}×")
        print(f"  ratio FULL / NORMAL, group:        "
              f"{med['group FULL'] / med['group NORMAL']:.2f}×")
        print(f"  ratio FULL / NORMAL, per-message:  "
              f"{med['per-message FULL'] / med['per-message NORMAL']:.2f}×")
        print("16 KiB messages, insert + delete, transactions of 64:")
        for k in ("cpu FULL", "cpu NORMAL"):
            wall = statistics.median(walls[k])
            print(f"  {k[4:]:<7} CPU {med[k]:6.2f} ms/MiB   wall {wall:7.1f} MiB/s")
        print(f"  ratio CPU FULL / NORMAL: {med['cpu FULL'] / med['cpu NORMAL']:.2f}×")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
