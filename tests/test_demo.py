"""The README's demo end to end (issue 13 deliverable 6): real ``p4`` subprocesses on the
session's private Tor network (``p4 demo`` starts its own; here it takes the shared one).
Asserts on what happened — paired with matching SAS, the chat line arrived, the generation
advanced while the file was on its way and the transfer did not start over, the file's SHA-256
matches — never on timings; and that nothing is left running."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

from p4ref.demo import run_demo


def _p4_processes(home: Path) -> list[str]:
    ps = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True, check=False)
    return [ln for ln in ps.stdout.splitlines() if str(home) in ln
            and str(os.getpid()) != ln.split()[0]]


def test_demo_end_to_end(tornet: Any, tmp_path: Path) -> None:
    out = io.StringIO()
    res = run_demo(tmp_path, net_dir=tornet.dir, size=6 << 20, out=out)
    text = out.getvalue()
    assert res.paired and res.sas[0] == res.sas[1], text
    assert res.chat_arrived, text
    assert res.generation_after > res.generation_before >= 1, text
    assert res.switched_at < 1.0, text  # the new generation opened mid-transfer
    assert res.attempts == 1, text  # ... and the transfer went on over it, no restart
    assert res.sha256_received == res.sha256_sent != "", text
    assert [n for n, _ in res.steps][-1] == "whole demo"
    assert " 6. [" in text and "file sent; generation" in text, text
    assert _p4_processes(tmp_path) == []  # both p4 up stopped
