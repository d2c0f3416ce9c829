"""The verbs on top of ``p4 up`` without a network: what a user sees when something is wrong
(issue 13 deliverable 8): one line, a code, what to do, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from p4ref.io.store import Profile
from p4ref.peer.daemon import daemon_lock

P4 = [sys.executable, "-m", "p4ref"]
ROOT = Path(__file__).resolve().parents[1]


def p4(home: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*P4, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=60, check=False, input=input,
                          stdin=None if input is not None else subprocess.DEVNULL, cwd=ROOT)


def one_line(r: subprocess.CompletedProcess[str], code: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p4: error: "), r.stderr
    assert lines[0].endswith(f"[{code}]"), r.stderr
    return lines[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    a = Profile.init(tmp_path / "a", os.urandom)
    b = Profile.init(tmp_path / "b", os.urandom)
    a.add_peer("laptop", b.identity.public_key, os.urandom(32), "test")
    return a.path


def test_daemon_not_running(home: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    for args in (["status"], ["status", "--json"], ["send", str(tmp_path / "f"), "laptop"],
                 ["recv"], ["chat", "laptop"]):
        line = one_line(p4(home, *args, input=""), "DAEMON_NOT_RUNNING")
        assert "p4 up is not running" in line and "up" in line


def test_peer_unknown_suggests_a_close_name(home: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    line = one_line(p4(home, "send", str(tmp_path / "f"), "laptp"), "PEER_UNKNOWN")
    assert "did you mean 'laptop'" in line
    one_line(p4(home, "chat", "phone", input=""), "PEER_UNKNOWN")


def test_missing_file(home: Path, tmp_path: Path) -> None:
    line = one_line(p4(home, "send", str(tmp_path / "nope"), "laptop"), "FILE_NOT_FOUND")
    assert "nope" in line


def test_second_up_refused_at_once(home: Path) -> None:
    with daemon_lock(home):
        line = one_line(p4(home, "up", "--tor", "testnet:/nonexistent"), "PROFILE_LOCKED")
    assert f"(pid {os.getpid()})" in line and "already running" in line
    assert not (home / "daemon.pid").exists()


def test_up_without_tor_says_so_and_releases_the_lock(home: Path) -> None:
    one_line(p4(home, "up", "--tor", "testnet:/nonexistent"), "TOR_UNREACHABLE")
    with daemon_lock(home):  # free again
        pass


def test_forget_without_a_running_peer(home: Path) -> None:
    r = p4(home, "peers", "forget", "laptop", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["forgotten"] == "laptop" and doc["link_stopped"] is False
    assert Profile.open(home).peers() == []
    one_line(p4(home, "peers", "forget", "laptop"), "PEER_UNKNOWN")


def test_peers_json(home: Path) -> None:
    for args in (["peers", "--json"], ["peers", "list", "--json"]):
        r = p4(home, *args)
        assert r.returncode == 0, r.stderr
        (peer,) = json.loads(r.stdout)
        assert peer["name"] == "laptop" and len(peer["device_id"]) == 63
