"""Small helpers shared by the benchmarks in bench/ (not an API)."""

from __future__ import annotations

import os
import sys

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
        import time

        return time.process_time()
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return float(ru.ru_utime + ru.ru_stime)
