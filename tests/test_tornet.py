"""tools/tornet.py: the private Tor network is up, local-only, and its CLI starts and stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import stem.control

from p4ref.errors import ErrorCode
from p4ref.io.tornet import NodeInfo, TorNet, TorNetError, free_ports

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


# --------------------------------------------------------------------- the public hooks


def test_hooks_shape_every_torrc(tmp_path: Path) -> None:
    """node_address / launch_prefix / on_planned / unix_sockets / extra_torrc (what
    tools/netlab/tor.py overrides instead of TorNet's private methods); no tor is started."""
    planned: list[int] = []

    class Hooked(TorNet):
        def node_address(self, n: NodeInfo) -> str:
            return "10.9.0." + str(self.nodes.index(n) + 1)

        def launch_prefix(self, n: NodeInfo) -> list[str]:
            return ["ip", "netns", "exec", "ns-" + n.nickname]

        def on_planned(self) -> None:
            planned.append(len(self.nodes))

    net = Hooked(base_dir=str(tmp_path), authorities=1, relays=3, clients_count=1,
                 unix_sockets=True, extra_torrc=["LearnCircuitBuildTimeout 0"])
    net._plan()
    assert planned == [5]
    for i, n in enumerate(net.nodes):
        n.v3ident, n.fingerprint = f"{i:040X}", f"{i + 10:040X}"
    for n in net.nodes:
        net._write_torrc(n)
    auth, client = net.nodes[0], net.nodes[-1]
    lines = Path(auth.torrc).read_text().splitlines()
    assert "Address 10.9.0.1" in lines and f"ORPort 10.9.0.1:{auth.or_port}" in lines
    assert f"DirPort 10.9.0.1:{auth.dir_port}" in lines
    assert f"ControlPort unix:{auth.control_socket}" in lines
    assert lines[-1] == "LearnCircuitBuildTimeout 0"
    assert any(line.startswith("DirAuthority p4auth0 ") and f" 10.9.0.1:{auth.dir_port} " in line
               for line in lines)
    lines = Path(client.torrc).read_text().splitlines()
    assert f"SocksPort unix:{client.socks_socket} ExtendedErrors" in lines
    assert not any("127.0.0.1" in line for line in lines)
    info = net.clients[0]
    assert info.control_socket == client.control_socket == net.control_socket(0)
    assert info.socks_socket == client.socks_socket == net.socks_socket(0)
    assert net.launch_prefix(client) == ["ip", "netns", "exec", "ns-p4client0"]
    # the defaults are the loopback network's
    plain = TorNet(base_dir=str(tmp_path / "plain"), authorities=1, relays=3, clients_count=1)
    os.makedirs(plain.dir)
    plain._plan()
    n = plain.nodes[-1]
    plain._write_torrc(n, with_authorities=False)
    text = Path(n.torrc).read_text()
    assert f"ControlPort 127.0.0.1:{n.control_port}" in text
    assert f"SocksPort 127.0.0.1:{n.socks_port} ExtendedErrors" in text
    assert plain.clients[0].control_socket == "" and plain.launch_prefix(n) == []


def test_lab_tornet_uses_only_the_hooks(tmp_path: Path) -> None:
    """LabTorNet overrides no private TorNet method any more (tornet-hooks.md)."""
    from tools.netlab.tor import LabTorNet

    private = {name for name in vars(LabTorNet) if name.startswith("_") and
               not name.startswith("__") and callable(getattr(LabTorNet, name))}
    assert private == set(), private

    class FakeLab:
        def __init__(self) -> None:
            self.hosts: dict[str, str] = {}

        def add_host(self, role: str) -> None:
            self.hosts[role] = f"172.31.0.{101 + len(self.hosts)}"

        def ns(self, role: str) -> str:
            return "p4t-" + role

    lab: Any = FakeLab()
    net = LabTorNet(lab=lab, base_dir=str(tmp_path), authorities=1, relays=4)
    net._plan()
    relay, client_b = net.nodes[1], net.nodes[-1]
    assert net.node_address(relay) == "172.31.0.102"
    assert net.launch_prefix(relay) == ["ip", "netns", "exec", "p4t-tor-p4relay0"]
    assert net.launch_prefix(client_b) == ["ip", "netns", "exec", "p4t-b"]
    assert net.unix_sockets and "LearnCircuitBuildTimeout 0" in net.extra_torrc
