"""`p4 pair invite` / `p4 pair accept` as a person runs them: two processes, two profiles on disk,
two tor clients of the private network (``--tor testnet:DIR:N``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

P4 = [sys.executable, "-m", "p4ref"]


def _p4(home: Path, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*P4, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_pair_invite_and_accept_commands_over_tor(tornet: Any, tmp_path: Path) -> None:
    laptop, phone = tmp_path / "laptop", tmp_path / "phone"
    assert _p4(laptop, "init").returncode == 0
    assert _p4(phone, "init").returncode == 0
    with subprocess.Popen(
        [*P4, "--home", str(laptop), "pair", "invite", "--tor", f"testnet:{tornet.dir}:0",
         "--name", "phone", "--timeout", "180"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as inviter:
        assert inviter.stdout is not None and inviter.stderr is not None
        first = inviter.stdout.readline()  # "On the other device run:  p4 pair accept <code>"
        m = re.search(r"p4 pair accept (\d+-[a-z]+-[a-z]+)", first)
        assert m, first + inviter.stderr.read()
        accepted = _p4(phone, "pair", "accept", m.group(1), "--tor",
                       f"testnet:{tornet.dir}:1", "--name", "laptop")
        # Read the rest through the same text wrapper: readline() has buffered part of it.
        out = first + inviter.stdout.read()
        inviter.wait(timeout=200)
        err = inviter.stderr.read()
    assert accepted.returncode == 0, accepted.stderr
    assert inviter.returncode == 0, err
    assert "p4:pair?v=1&o=" in out and "█" in out  # the URI alternative was drawn as a QR code
    sas_a = re.search(r"Compare this code with the other device: (\d{6})", out)
    sas_b = re.search(r"Compare this code with the other device: (\d{6})", accepted.stdout)
    assert sas_a and sas_b and sas_a.group(1) == sas_b.group(1)
    assert "phone" in _p4(laptop, "peers").stdout
    assert "laptop" in _p4(phone, "peers").stdout
