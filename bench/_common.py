"""Small helpers shared by the benchmarks in bench/ (not an API)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

MIB = 1 << 20


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (0 on Windows, which has no getrusage)."""
    if sys.platform == "win32":
        return 0
    import resource

    scale = 1 if sys.platform == "darwin" else 1024
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * scale


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak, which only grows)."""
    if sys.platform != "linux":
        return peak_rss_bytes()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cpu_seconds() -> float:
    """User + system CPU seconds of this process, all threads (``getrusage(RUSAGE_SELF)``;
    ``time.process_time`` where there is no getrusage)."""
    if sys.platform == "win32":
        return time.process_time()
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return float(ru.ru_utime + ru.ru_stime)


def writer_cpu_seconds() -> float:
    """CPU seconds of this process's session-store writer threads (the threads named
    ``p4-session-db…``; Linux /proc, else 0)."""
    import threading

    total = 0.0
    for th in threading.enumerate():
        if not th.name.startswith("p4-session-db") or th.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{th.native_id}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def local_config() -> Any:
    """A :class:`~p4ref.io.webrtc.DirectConfig` for loopback (host candidate 127.0.0.1)."""
    from p4ref.io.webrtc import DirectConfig

    return DirectConfig(host_addresses=("127.0.0.1",))


async def open_generations(n: int, first: int = 1) -> list[float]:
    """Open and close ``n`` fresh generations (both ends in this process) one after another;
    milliseconds each, from the offer until both channels are open."""
    from p4ref.io.webrtc import Generation, wait_background_closes

    times = []
    for i in range(first, first + n):
        t0 = time.perf_counter()
        a = await Generation.offer(i, local_config())
        b = await Generation.answer(i, a.local_sdp, a.local_fingerprint, local_config())
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        await asyncio.gather(a.opened(), b.opened())
        times.append((time.perf_counter() - t0) * 1000)
        a.close()
        b.close()
    await wait_background_closes()
    return times


async def idle_generations(n: int, seconds: float) -> tuple[float, float]:
    """RSS (bytes) per end of ``n`` open, idle generations, and their CPU per end and second
    (milliseconds): aiortc's ICE consent checks and DTLS/SCTP timers, no P⁴ liveness."""
    from p4ref.io.webrtc import Generation, wait_background_closes

    await open_generations(2)  # warm up imports and caches
    rss0 = rss_bytes()
    gens = []
    for i in range(n):
        a = await Generation.offer(i + 1, local_config())
        b = await Generation.answer(i + 1, a.local_sdp, a.local_fingerprint, local_config())
        await a.accept_answer(b.local_sdp, b.local_fingerprint)
        await asyncio.gather(a.opened(), b.opened())
        gens += [a, b]
    await asyncio.sleep(1)
    per_end = (rss_bytes() - rss0) / len(gens)
    cpu0 = cpu_seconds()
    await asyncio.sleep(seconds)
    cpu = (cpu_seconds() - cpu0) / seconds / len(gens)
    for g in gens:
        g.close()
    await wait_background_closes()
    return per_end, cpu * 1000
