"""The NAT and mobility lab (tools/netlab): NAT behaviours seen through STUN, TURN with long-term
credentials, moves, rebinding, loss and delay, a root namespace left alone, stale labs swept,
and Tor inside the lab (an onion reachable again after its publisher moved).

Every packet here goes to lab addresses inside namespaces the lab created. One lab is shared by
the whole run (``netlab`` fixture in conftest.py); tests that change it put it back.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.netlab import NAT_TYPES, STUN_ALT_IP, STUN_IP, STUN_PORT, Lab, list_labs, sweep
from tools.netlab.lab import HOST_BASE, MAX_HOSTS, NEXT_HOP, TURN_PASSWORD, TURN_USER
from tools.netlab.stun import probe, turn_allocate

ROOT = Path(__file__).resolve().parent.parent
STUN = (STUN_IP, STUN_PORT)
STUN_ALT = (STUN_ALT_IP, STUN_PORT)


@pytest.fixture
def sock_a(netlab: Lab) -> Iterator[socket.socket]:
    s = netlab.socket("a")
    s.bind(("0.0.0.0", 40000))
    yield s
    s.close()


def _root_snapshot() -> dict[str, str]:
    def out(*cmd: str) -> str:
        return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout

    return {
        "links": out("ip", "-o", "link", "show"),
        "addrs": out("ip", "-o", "addr", "show"),
        "routes": out("ip", "route", "show", "table", "all"),
        "rules": out("ip", "rule", "show"),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
        "iptables": "\n".join(
            ln for ln in out("iptables-save").splitlines() if not ln.startswith("#")
        ),
    }


def test_root_namespace_untouched_and_everything_removed(netlab: Lab) -> None:
    """Build, move, impair and remove a second lab: the root namespace's links, addresses,
    routes, rules, iptables and ip_forward are byte-identical throughout; nothing is left."""
    before = _root_snapshot()
    lab = Lab(turn=False)
    lab.up()
    try:
        assert _root_snapshot() == before
        assert lab.prefix != netlab.prefix
        lab.move("a", "cell", make_before_break=True)
        lab.rebind("b")
        lab.impair("ra", loss=0.5)
        assert _root_snapshot() == before
    finally:
        lab.down()
    assert _root_snapshot() == before
    assert lab.prefix not in list_labs()
    print(f"\nlab up {lab.timings['up']:.2f} s (no coturn), down {lab.timings['down']:.2f} s")


@pytest.mark.parametrize("nat", NAT_TYPES)
def test_nat_mapping_and_filtering(netlab: Lab, nat: str) -> None:
    """A STUN probe from 192.168.1.2:40000 through each NAT: endpoint-independent mapping keeps
    the port for both STUN addresses, symmetric changes it per destination; then unsolicited
    packets from the internet show the filtering (full-cone: anyone; address-restricted: the
    contacted address from any port; port-restricted and symmetric: nobody new)."""
    netlab.set_nat("a", nat)  # type: ignore[arg-type]
    try:
        s = netlab.socket("a")
        s.bind(("0.0.0.0", 40000))
        try:
            m1 = probe(s, STUN)
            if nat == "symmetric":
                m2 = probe(s, STUN_ALT)
                assert m1[0] == m2[0] == netlab.routers["ra"].wan_ip
                assert m1[1] != m2[1]
            else:
                assert m1 == (netlab.routers["ra"].wan_ip, 40000)
            got: list[str] = []
            for src_ip, name in ((STUN_IP, "same-ip"), (STUN_ALT_IP, "other-ip")):
                sender = netlab.socket("inet")
                sender.bind((src_ip, 0))
                sender.sendto(name.encode(), m1)
                sender.close()
            s.settimeout(0.3)
            try:
                while True:
                    got.append(s.recvfrom(100)[0].decode())
            except TimeoutError:
                pass
            want = {
                "full-cone": ["same-ip", "other-ip"],
                "address-restricted": ["same-ip"],
                "port-restricted": [],
                "symmetric": [],
            }[nat]
            assert sorted(got) == sorted(want)
            print(f"\n{nat}: mapped {m1[0]}:{m1[1]}, unsolicited delivered: {got}")
        finally:
            s.close()
    finally:
        netlab.set_nat("a", "port-restricted")


def test_turn_long_term_credentials(netlab: Lab) -> None:
    s = netlab.socket("b")
    try:
        code, relayed = turn_allocate(s, STUN, TURN_USER, TURN_PASSWORD)
    finally:
        s.close()
    assert code == 401
    assert relayed is not None and relayed[0] == STUN_IP


@pytest.mark.parametrize("mbb", [False, True], ids=["hard", "make-before-break"])
def test_move_to_cellular_and_back(netlab: Lab, mbb: bool) -> None:
    """After a move the device's mapped address is the cellular gateway's (symmetric: a new port
    per destination); back on Wi-Fi it is its home router's again."""
    netlab.move("a", "cell", make_before_break=mbb)
    try:
        assert netlab.addresses("a") == {netlab.homes["a"].cell_ip}
        s = netlab.socket("a")
        try:
            ip, _ = probe(s, STUN)
            assert ip == netlab.routers["rc"].wan_ip
        finally:
            s.close()
    finally:
        netlab.move("a", "wlan", make_before_break=mbb)
    assert netlab.addresses("a") == {netlab.homes["a"].wlan_ip}


def test_nat_rebinding(netlab: Lab, sock_a: socket.socket) -> None:
    first = netlab.routers["ra"].wan_ip
    before = probe(sock_a, STUN)
    new = netlab.rebind("a")
    try:
        after = probe(sock_a, STUN)
        assert after[0] == new != before[0]
    finally:
        netlab.rebind("a", first)


def test_rebinding_again_and_again_never_takes_an_address_in_use(
        netlab: Lab, sock_a: socket.socket) -> None:
    """The old rule (20 above the current address) walked onto a tor relay's address on the
    fifth rebinding of a benchmark, and that relay dropped off the lab's Tor network."""
    if "rebind-probe" not in netlab.hosts:  # a host on the internet, as a tor relay is
        netlab.add_host("rebind-probe")
    first = netlab.routers["ra"].wan_ip
    others = {r.wan_ip for r in netlab.routers.values() if r.role != "ra"} \
        | set(netlab.hosts.values()) | {STUN_IP, STUN_ALT_IP, NEXT_HOP}
    seen = []
    try:
        for _ in range(12):
            new = netlab.rebind("a")
            assert new not in others and new not in seen[-1:], (new, seen)
            host = int(new.rsplit(".", 1)[1]) - HOST_BASE  # nor one a host added later gets
            assert not 0 <= host < MAX_HOSTS, (new, seen)
            assert probe(sock_a, STUN)[0] == new
            seen.append(new)
    finally:
        netlab.rebind("a", first)
    assert probe(sock_a, STUN)[0] == first


@pytest.mark.parametrize("strict", [False, True])
def test_rebinding_and_an_open_tcp_connection(netlab: Lab, strict: bool) -> None:
    """After a rebinding, the device's next segment on an open TCP connection (its tor's to a
    relay) is mapped anew and the server resets it: the connection fails at once.  A router
    that maps TCP only from a SYN drops it instead: the connection is dead and nothing says
    so (``Lab.set_tcp_strict``)."""
    srv = netlab.socket("inet", socket.SOCK_STREAM)
    cli = netlab.socket("a", socket.SOCK_STREAM)
    first = netlab.routers["ra"].wan_ip
    try:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((STUN_IP, 4479))
        srv.listen(1)
        cli.settimeout(3)
        cli.connect((STUN_IP, 4479))
        conn, _ = srv.accept()
        netlab.set_tcp_strict("a", strict)
        cli.sendall(b"before")
        assert conn.recv(16) == b"before"
        netlab.rebind("a")
        cli.sendall(b"after")
        if strict:
            with pytest.raises(TimeoutError):
                cli.recv(16)  # nothing comes back, no reset either
        else:
            with pytest.raises(ConnectionResetError):
                cli.recv(16)
        conn.close()
    finally:
        netlab.set_tcp_strict("a", False)
        netlab.rebind("a", first)
        cli.close()
        srv.close()


def test_total_loss_is_silent_and_reversible(netlab: Lab, sock_a: socket.socket) -> None:
    netlab.total_loss("a")
    try:
        with pytest.raises(TimeoutError):
            probe(sock_a, STUN, timeout=0.4)
        assert netlab.addresses("a") == {netlab.homes["a"].wlan_ip}  # no local event
    finally:
        netlab.total_loss("a", on=False)
    probe(sock_a, STUN)


def test_delay_through_nfqueue(netlab: Lab, sock_a: socket.socket) -> None:
    """+50 ms each way on the home router's uplink (NFQUEUE delayer; no netem here)."""
    pytest.importorskip("netfilterqueue")  # a dependency of [test] on Linux
    netlab.impair("a", delay_ms=50)
    try:
        rtts = []
        for _ in range(3):
            t = time.monotonic()
            probe(sock_a, STUN)
            rtts.append(time.monotonic() - t)
    finally:
        netlab.impair("a")
    assert 0.095 <= min(rtts) <= 0.3, rtts
    print(f"\nRTT with +50 ms each way: {[round(r * 1000) for r in rtts]} ms")


def test_internet_host_with_per_hop_delay(netlab: Lab) -> None:
    """A host of its own on the bridge (as each tor relay gets): reachable without NAT, and its
    link can be delayed alone (per-hop delay for Tor)."""
    pytest.importorskip("netfilterqueue")
    ip = netlab.hosts.get("h-probe") or netlab.add_host("h-probe")
    s = netlab.socket("h-probe")
    try:
        assert probe(s, STUN)[0] == ip
        netlab.impair("h-probe", delay_ms=30)
        t = time.monotonic()
        probe(s, STUN)
        rtt = time.monotonic() - t
    finally:
        netlab.impair("h-probe")
        s.close()
    assert 0.055 <= rtt <= 0.3, rtt


def test_sweep_removes_a_lab_whose_owner_died() -> None:
    """``python -m tools.netlab up`` killed with SIGKILL leaves its namespaces; sweep removes
    them (and leaves live labs alone)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "tools.netlab", "up", "--no-turn"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        prefix = first.split('"')[3] if '"prefix"' in first else ""
        while not prefix:
            line = p.stdout.readline()
            assert line, "netlab up printed no prefix"
            if '"prefix"' in line:
                prefix = line.split('"')[3]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and '"timings_s"' not in p.stdout.readline():
            pass
        assert list_labs()[prefix]["alive"]
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
        if p.stdout is not None:
            p.stdout.close()
    labs = list_labs()
    assert not labs[prefix]["alive"]
    removed = sweep()
    assert set(labs[prefix]["namespaces"]) <= set(removed)
    assert prefix not in list_labs()
    assert all(lab["alive"] for lab in list_labs().values())


# ---------------------------------------------------------------------- Tor inside the lab


@pytest.mark.tor
@pytest.mark.slow
def test_onion_reachable_again_after_publisher_moves(netlab: Lab, tmp_path: Path) -> None:
    """A tor client in LAN a (behind its NAT) publishes an onion; a tor client in LAN b reaches
    it through the lab's Tor network (1 authority + 4 relays, each in a namespace of its own).
    Device a moves Wi-Fi → cellular (hard); its tor, nudged with DisableNetwork 1/0, keeps its
    onion and b reaches it again. Cost: about 15–35 s for the network, a few s for the rest."""
    pytest.importorskip("stem")
    from tools.netlab.tor import measure_move_recovery

    result = asyncio.run(
        measure_move_recovery(netlab, trials=1, nudge=True, limit=90, base_dir=str(tmp_path))
    )
    print(f"\ntor in lab: {result}")
    assert netlab.homes["a"].on == "wlan"
    assert result["recovery_s"][0] is not None, result
