"""The WebRTC driver (p4ref/io/webrtc.py) on loopback: opening a fresh generation, bulk throughput
with and without backpressure, the sender's memory, and the memory of an idle generation.

    .venv/bin/python bench/bench_webrtc.py [--rounds N] [--mib N] [--quick]

(1) **Open**: a fresh generation (new RTCPeerConnection, offer, answer, both channels open), in one
    process, in one process while the previous generation streams bulk data (make-before-break;
    with the longest gap in that stream), and across two processes with the SDPs over a pipe
    (the child is already running).
(2) **Bulk**: a child process sends N MiB in 16 KiB messages to the parent, timed from the
    parent's channel open to its last byte; modes interleaved per round, medians reported:
    ``write 1M/256K`` (the default watermarks), ``write 256K/64K``, and ``send`` (no
    backpressure: every message is queued at once, as with plain ``RTCDataChannel.send``).  The
    sender reports its CPU time, its peak RSS and its peak ``bufferedAmount``.
(3) **Idle**: RSS and CPU per second of an open, idle generation (per end; both ends in one
    process).

Numbers vary ±30 % from run to run here (2 shared cores; research/webrtc-lab.md): compare the
modes of one run, not runs.  ``--quick`` (or ``P4_BENCH_QUICK=1``): one round of 4 MiB, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import MIB, idle_generations, open_generations, peak_rss_bytes, rss_bytes

from p4ref.io.webrtc import DirectConfig, Generation, wait_background_closes

SIZE = 16384
MODES: dict[str, tuple[int, int] | None] = {
    "write 1M/256K": (MIB, 256 << 10),
    "write 256K/64K": (256 << 10, 64 << 10),
    "send (no backpressure)": None,
}


def _config(mode: str | None = None) -> DirectConfig:
    marks = MODES.get(mode or "") if mode else None
    if marks is None:
        return DirectConfig(host_addresses=("127.0.0.1",))
    return DirectConfig(host_addresses=("127.0.0.1",), high_water=marks[0], low_water=marks[1])


# --- the child: offerer and sender -------------------------------------------------------------


async def _child(mode: str, total: int) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    done = asyncio.Event()
    g = await Generation.offer(1, _config(mode), on_message=lambda _m: done.set())
    say({"sdp": g.local_sdp, "fp": g.local_fingerprint.hex()})
    answer = json.loads(await reader.readline())
    await g.accept_answer(answer["sdp"], bytes.fromhex(answer["fp"]))
    await g.opened()
    open_s = time.perf_counter() - t0
    cpu0 = time.process_time()
    peak = 0
    filler = b"\x5a" * (SIZE - 4)
    for i in range(total // SIZE):
        msg = i.to_bytes(4, "big") + filler  # a distinct object, as real messages are
        if mode.startswith("write"):
            await g.write(msg)
        else:
            g.send(msg)
        peak = max(peak, g.buffered_amount)
    await done.wait()  # the parent has every byte
    say({"open_s": open_s, "cpu_s": time.process_time() - cpu0, "peak_buffered": peak,
         "peak_rss": peak_rss_bytes(), "rss0": rss0})
    await g.close()
    await wait_background_closes()


# --- the parent: answerer and receiver ---------------------------------------------------------


async def _bulk_run(mode: str, total: int) -> dict[str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--child", mode, str(total),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    offer = json.loads(await proc.stdout.readline())
    received = 0
    last = asyncio.Event()
    t_open = 0.0
    t_last = 0.0

    def on_message(m: bytes) -> None:
        nonlocal received, t_last
        received += len(m)
        if received >= total:
            t_last = time.perf_counter()
            last.set()

    g = await Generation.answer(1, offer["sdp"], bytes.fromhex(offer["fp"]), _config(),
                                on_message=on_message)
    proc.stdin.write((json.dumps({"sdp": g.local_sdp, "fp": g.local_fingerprint.hex()})
                      + "\n").encode())
    await proc.stdin.drain()
    await g.opened()
    t_open = time.perf_counter()
    await asyncio.wait_for(last.wait(), 600)
    g.send(b"done")
    report = json.loads(await proc.stdout.readline())
    await proc.wait()
    g.close()
    seconds = t_last - t_open
    return {"mib_s": total / MIB / seconds,
            "cpu_ms_per_mib": report["cpu_s"] * 1000 / (total / MIB),
            "peak_buffered_mib": report["peak_buffered"] / MIB,
            "peak_rss_growth_mib": (report["peak_rss"] - report["rss0"]) / MIB,
            "open_ms_2proc": report["open_s"] * 1000}


async def _open_under_load(n: int) -> tuple[list[float], float]:
    """Open ``n`` fresh generations one after another while generation 1 streams bulk data in
    the same process (make-before-break); the longest gap between two messages of the stream
    while they open."""
    last = time.perf_counter()
    gap = 0.0

    def on_message(_m: bytes) -> None:
        nonlocal last, gap
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now

    a = await Generation.offer(1, _config())
    b = await Generation.answer(1, a.local_sdp, a.local_fingerprint, _config(),
                                on_message=on_message)
    await a.accept_answer(b.local_sdp, b.local_fingerprint)
    await asyncio.gather(a.opened(), b.opened())
    running = True

    async def stream() -> None:
        chunk = b"\x00" * SIZE
        while running:
            await a.write(chunk)

    task = asyncio.create_task(stream())
    await asyncio.sleep(0.5)  # steady state
    gap = 0.0
    times = await open_generations(n, first=2)
    running = False
    await task
    a.close()
    b.close()
    await wait_background_closes()
    return times, gap * 1000


def _median(xs: list[float]) -> str:
    return f"{statistics.median(xs):8.1f} (min {min(xs):.1f}, max {max(xs):.1f})"


async def _main(rounds: int, total: int, opens: int, idle: int, idle_s: float) -> None:
    times = await open_generations(opens)
    print(f"(1) fresh generation, one process, {opens} times: ms {_median(times)}")
    loaded, gap = await _open_under_load(opens)
    print(f"    fresh generation while the previous one streams bulk: ms {_median(loaded)}; "
          f"longest gap in that stream {gap:.1f} ms")
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    for _ in range(rounds):
        for mode in MODES:  # interleaved
            results[mode].append(await _bulk_run(mode, total))
    opens2 = [r["open_ms_2proc"] for rs in results.values() for r in rs]
    print(f"    fresh generation, two processes (SDPs over a pipe): ms {_median(opens2)}")
    print(f"(2) bulk, {total // MIB} MiB in {SIZE} B messages, child → parent, {rounds} rounds, "
          "medians:")
    base = statistics.median(r["mib_s"] for r in results["write 1M/256K"])
    for mode, rs in results.items():
        med = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        print(f"    {mode:<24} {med['mib_s']:6.1f} MiB/s ({med['mib_s'] / base:4.2f}×)  sender "
              f"CPU {med['cpu_ms_per_mib']:5.1f} ms/MiB  peak bufferedAmount "
              f"{med['peak_buffered_mib']:6.2f} MiB  peak RSS growth "
              f"{med['peak_rss_growth_mib']:6.1f} MiB")
    per_end, cpu_ms = await idle_generations(idle, idle_s)
    print(f"(3) idle open generation ({idle} pairs, {idle_s:g} s): {per_end / 1024:.0f} KiB RSS "
          f"and {cpu_ms:.3f} ms CPU per second, per end")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="one round of 4 MiB (CI)")
    ap.add_argument("--child", nargs=2, metavar=("MODE", "BYTES"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        asyncio.run(_child(args.child[0], int(args.child[1])))
        return 0
    if args.quick:
        asyncio.run(_main(1, 4 * MIB, 5, 5, 1.0))
    else:
        asyncio.run(_main(args.rounds, args.mib * MIB, 21, 20, 10.0))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
