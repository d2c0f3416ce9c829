"""tools/tornet.py: the private Tor network is up, local-only, and its CLI starts and stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import stem.control

from p4ref.errors import ErrorCode
from p4ref.io.tornet import TorNet, TorNetError, free_ports

ROOT = Path(__file__).resolve().parent.parent


def _controller(port: int) -> stem.control.Controller:
    c = stem.control.Controller.from_port("127.0.0.1", port)
    c.authenticate()
    return c


@pytest.mark.tor
def test_network_up_and_clients_bootstrapped(tornet: TorNet) -> None:
    assert len(tornet.clients) == 2
    for client in tornet.clients:
        with _controller(client.control_port) as c:
            assert "PROGRESS=100" in c.get_info("status/bootstrap-phase")
            socks = c.get_listeners(stem.control.Listener.SOCKS)
            assert socks == [("127.0.0.1", client.socks_port)]
        assert os.path.exists(client.cookie_path)
    relays = {n.fingerprint for n in tornet.nodes if n.role != "client"}
    assert len(relays) == 5
    with _controller(tornet.nodes[0].control_port) as c:
        hsdirs = {r.fingerprint for r in c.get_network_statuses() if "HSDir" in r.flags}
    assert relays <= hsdirs


@pytest.mark.tor
def test_everything_is_local_and_owned(tornet: TorNet) -> None:
    desc = tornet.describe()
    json.dumps(desc)  # serialisable
    for node in tornet.nodes:
        torrc = Path(node.torrc).read_text()
        for line in torrc.splitlines():
            key, _, value = line.partition(" ")
            if key in ("ControlPort", "ORPort", "DirPort", "SocksPort") and value != "0":
                assert value.startswith("127.0.0.1:"), line
            assert "9050" not in value and "9051" not in value
        assert "__OwningControllerProcess" in torrc
        assert "Schedulers Vanilla" in torrc
        proc = tornet.process(node.nickname)
        assert proc is not None and proc.poll() is None and proc.pid == node.pid


def test_missing_tor_is_a_clear_error(tmp_path: Path) -> None:
    net = TorNet(base_dir=str(tmp_path), tor_cmd="p4-no-such-tor")
    with pytest.raises(TorNetError) as ei:
        net.start(timeout=5)
    assert ei.value.code == ErrorCode.TOR_NOT_INSTALLED
    assert "apt-get install" in ei.value.message


def test_free_ports_distinct_and_unprivileged() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    assert all(p > 1024 and p not in (9050, 9051) for p in ports)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "State:\tZ" not in f.read()
    except OSError:
        return False


@pytest.mark.tor
@pytest.mark.slow
def test_cli_up_and_down(tmp_path: Path) -> None:
    """``up`` prints the JSON description and stays up; ``down`` stops exactly its tors."""
    d = tmp_path / "net"
    up = subprocess.Popen(
        [sys.executable, str(ROOT / "tools" / "tornet.py"), "up", "--dir", str(d),
         "--authorities", "1", "--relays", "3", "--clients", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert up.stdout is not None
        lines: list[str] = []
        for line in up.stdout:
            lines.append(line)
            if line.startswith("}"):
                break
        desc = json.loads("".join(lines))
        pids = [n["pid"] for n in desc["nodes"]]
        assert len(pids) == 5 and all(_alive(p) for p in pids)
        assert desc["clients"][0]["socks_port"] > 0
        down = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "tornet.py"), "down", "--dir", str(d)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert down.returncode == 0, down.stderr
        assert up.wait(30) == 0
        end = time.monotonic() + 10
        while time.monotonic() < end and any(_alive(p) for p in pids):
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(30)
        if up.stdout is not None:
            up.stdout.close()
        if up.stderr is not None:
            up.stderr.close()
