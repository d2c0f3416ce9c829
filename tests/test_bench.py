"""Every benchmark in bench/ runs once, in its quick mode, so none can rot unnoticed (issue 10 §2:
bench_tor.py had never run).

Each script runs as a subprocess with ``--quick`` (and ``P4_BENCH_QUICK=1``); the test checks that
it exits 0 and prints its figures with their ratio to the baseline it measures. The two benches
over Tor use the suite's private Tor network (``--tornet DIR``) instead of starting their own.
Cost on a 2-core machine: about 15 s for the four local benches, and about 12 s for the two Tor
ones once the session's network is up.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from p4ref.io.tornet import TorNet

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# script → a regular expression its output must match (a figure and its ratio)
LOCAL = {
    "bench_framing.py": r"16 KiB DATA: p4ref \(struct hdr\)\s+[\d.]+\s+[\d.]+\n",
    "bench_pairing.py": r"full pairing, both roles\s+[\d.]+ ms\s+[\d.]+×",
    "bench_rendezvous.py": r"ratio \(P4 / raw\): [\d.]+",
    "bench_conformance.py": r"ratio \(subprocess, window 1 / in-process\): [\d.]+×",
    "bench_store.py": r"ratio group / per-message, FULL:\s+[\d.]+×",
    "bench_link_cpu.py": r"sender, all threads\s+[\d.]+\s+[\d.]+\s+[\d.-]+\n(.|\n)*"
                         r"wall ms per MiB\s+[\d.]+\s+[\d.]+\s+[\d.]+×",
    "bench_webrtc.py": r"send \(no backpressure\)\s+[\d.]+ MiB/s \(\s*[\d.]+×\)",
    # the TypeScript port's live peers (Node, Chromium) against the reference, aiortc alongside
    "bench_ts_live.py": r"\| Python × node \| [\d.]+ \| [\d.]+ \| [\d.]+ \|",
    # the TS port's codecs against the reference's, in Node and Python
    "bench_ts_codec.py": r"\| 16353 B \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [\d.]+×",
    # the network lab with Tor inside (root; without a lab prerequisite it says why, exit 0)
    "bench_reconnect.py": r"(?s)(?=.*onion re-dial after a hard move \(policy\): n=1 p50 [\d.]+ s)"
                          r"(?=.*\(d\) dial-only peer coming back.*\n\| 1 \| [\d.]+ / )"
                          r"(?=.*baseline, aiortc alone \(.*n=1\): first message p50 / p90 / max "
                          r"[\d.]+ / )|the network lab is unavailable",
}
OVER_TOR = {
    "bench_tor.py": r"ratio_fresh_vs_loopback\s+[\d.]+x",
    "bench_signal.py": r"tor: open stream, median\s+[\d.]+\s+\d+",
    "bench_session.py": r"\(a\) bulk \d+ MiB, one channel.*\s[\d.]+×",
    # two real `p4 up` processes (p4 send) against raw aiortc; peak RSS of each
    "bench_send.py": r"p4 send \d+ MiB until the receiver has it verified.*\s[\d.]+×"
                     r"(.|\n)*peak RSS \(VmHWM\) of the receiver, MiB.*\s\d+\s+\d+",
}


def _run(script: str, *args: str, timeout: float = 120) -> str:
    env = dict(os.environ, P4_BENCH_QUICK="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def test_every_bench_is_covered() -> None:
    assert {p.name for p in BENCH.glob("bench_*.py")} == set(LOCAL) | set(OVER_TOR)


#: seconds a quick run may take where the default 120 s is short (the lab: Tor inside it, one
#: session move of each of four kinds, one return of a dial-only peer and one aiortc-alone move,
#: which alone takes 30-120 s)
TIMEOUT = {"bench_reconnect.py": 540.0}


@pytest.mark.parametrize("script", sorted(LOCAL))
def test_local_bench_quick(script: str) -> None:
    out = _run(script, timeout=TIMEOUT.get(script, 120))
    assert re.search(LOCAL[script], out), out


@pytest.mark.parametrize("script", sorted(OVER_TOR))
def test_tor_bench_quick(script: str, tornet: TorNet) -> None:
    out = _run(script, "--tornet", tornet.dir)
    assert re.search(OVER_TOR[script], out), out
