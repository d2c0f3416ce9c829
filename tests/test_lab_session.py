"""A whole P⁴ session in the NAT and mobility lab (issue 12 deliverable 7): two peer processes
(``p4ref/link/_testpeer.py``), each inside its device's network namespace behind a NAT, each
with its own tor client in that namespace (``tools/netlab/tor.py``, Tor inside the lab), meet
over Tor, connect with ICE through coturn (STUN, TURN with long-term credentials) and keep one
session through moves and NAT rebinding, nothing lost or duplicated (the receive logs are
checked as ``tests/test_link.py`` does).

One lab and one Tor-in-lab network serve the whole module (``world`` fixture); every test uses
a fresh pair of profiles (fresh onions, a fresh session) and puts the lab back as it found it.
Root only: without root (or another lab prerequisite) the module skips with the reason, and
under ``CI=true`` it fails instead.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.test_link import (
    ROOT,
    Peer,
    check_log,
    delivered,
    diagnose,
    make_pair,
    status_of,
)
from tools.netlab import STUN_IP, STUN_PORT, TURN_PASSWORD, TURN_USER

OVERLAP = 3.0  # make-before-break: seconds both interfaces are up (a phone's fading Wi-Fi)
pytestmark = [pytest.mark.tor, pytest.mark.slow]

SOCKS_PORT = 9050  # a TCP SocksPort on 127.0.0.1 inside each device namespace (see world)
STUN = {"urls": [f"stun:{STUN_IP}:{STUN_PORT}"]}
TURN = {"urls": [f"turn:{STUN_IP}:{STUN_PORT}"], "username": TURN_USER,
        "credential": TURN_PASSWORD}


@dataclass
class World:
    lab: Any
    net: Any
    tor_ready_s: float


def _need_lab() -> None:
    from tools.netlab import check_prerequisites

    reason = check_prerequisites()
    if reason is None and not Path("/usr/bin/tor").exists() and not _which("tor"):
        reason = "`tor` not found (Debian package tor; tools/bootstrap.sh installs it)"
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"network lab prerequisite missing under CI=true: {reason}",
                        pytrace=False)
        pytest.skip(f"network lab unavailable: {reason}")


def _which(cmd: str) -> str | None:
    import shutil

    return shutil.which(cmd)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """The lab (a, b port-restricted; cellular symmetric; coturn) and Tor inside it: 1
    authority and 5 relays on the lab's internet, client 0 in ``a``, client 1 in ``b``. Each
    client also gets a TCP SOCKS port on its namespace's 127.0.0.1, which the peer process in
    that namespace uses (the Tor driver speaks SOCKS over TCP; the Unix sockets are the test
    process's way in from the root namespace)."""
    _need_lab()
    from tools.netlab import Lab, LabError, sweep
    from tools.netlab.tor import LabTorNet

    sweep()
    lab = Lab({"a": "port-restricted", "b": "port-restricted"})
    try:
        lab.up()
    except LabError as exc:
        pytest.fail(f"the network lab did not build: {exc}", pytrace=False)
    net = LabTorNet(lab=lab, authorities=1, relays=5,
                    base_dir=str(tmp_path_factory.mktemp("labtor")))
    try:
        net.start(180)
        for i in range(2):
            net.open_socks(i, SOCKS_PORT)
        yield World(lab, net, net.timings.get("total", 0.0))
    finally:
        net.stop()
        lab.down()


class LabPeer(Peer):
    """A ``_testpeer`` process inside a lab device's namespace."""

    def __init__(self, name: str, cfg: dict[str, Any], netns: str) -> None:
        self.netns = netns
        super().__init__(name, cfg)

    def start(self) -> None:
        with open(Path(self.cfg["log"]).with_suffix(".stderr"), "a") as errlog:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, sys.executable, "-m",
                 "p4ref.link._testpeer", json.dumps(self.cfg)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errlog, text=True,
                cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        self._follow(self.proc)

    def stats(self, timeout: float = 30) -> dict[str, Any]:
        self.send(cmd="status")
        st: dict[str, Any] = self.wait(lambda e: e["ev"] == "status_reply", timeout)["stats"]
        return st


class _Clients:
    """``make_pair`` wants ``tornet.clients``: the lab's, with the peers' overrides."""

    def __init__(self, net: Any) -> None:
        self.clients = net.clients


def lab_pair(world: World, tmp: Path, ice: list[dict[str, Any]]
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg_a, cfg_b = make_pair(tmp, _Clients(world.net))
    for cfg, i in ((cfg_a, 0), (cfg_b, 1)):
        cfg.update(host_addresses=None, ice_servers=ice, netwatch=True,
                   tor_overrides={"control_socket": world.net.control_socket(i),
                                  "socks_port": SOCKS_PORT},
                   tor=dataclasses.asdict(world.net.clients[i]))
    return cfg_a, cfg_b


@pytest.fixture
def spawn(world: World) -> Iterator[Any]:
    peers: list[LabPeer] = []

    def start(cfg: dict[str, Any], role: str) -> LabPeer:
        p = LabPeer(role, cfg, world.lab.ns(role))
        peers.append(p)
        return p
    yield start
    for p in peers:
        p.stop()
    lab = world.lab
    for role in ("a", "b"):  # put the lab back as we found it
        if lab.homes[role].on != "wlan":  # a test that failed mid-move: its tor is nudged,
            lab.move(role, "wlan")         # as the peer would have done
            nudge_tor(world, role)
        set_nat_nudged(world, role, "port-restricted")  # and its tor nudged: mappings forgotten


def connected(p: LabPeer, timeout: float = 120) -> float:
    ev = p.wait(lambda e: e["ev"] == "status" and e["status"] == "connected", timeout)
    return float(ev["t"])


def wait_count(cfg: dict[str, Any], count: int, timeout: float,
               peers: tuple[Peer, ...] = ()) -> float:
    """Until ``count`` distinct messages are in ``cfg``'s receive log; returns the time."""
    end = time.monotonic() + timeout
    while delivered(cfg["log"]) < count:
        if time.monotonic() > end:
            raise AssertionError(f"{delivered(cfg['log'])} of {count} delivered; "
                                 f"{diagnose(peers)}")
        time.sleep(0.02)
    return time.monotonic()


def exchange(a: LabPeer, b: LabPeer, cfg_a: dict[str, Any], cfg_b: dict[str, Any],
             count: int, timeout: float = 60) -> None:
    a.send(cmd="send", count=count)
    b.send(cmd="send", count=count)
    wait_count(cfg_b, count, timeout, (a, b))
    wait_count(cfg_a, count, timeout, (a, b))


def active_gens(p: Peer) -> list[int]:
    """Generations of direct connections that became active, in order (generation 0 is the
    session on the onion stream, the Tor fallback path)."""
    return [e["gen"] for e in p.lines if e["ev"] == "connection_open" and e["active"]
            and e["gen"]]


def tor_fallbacks(p: Peer) -> int:
    return sum(1 for e in p.lines if e["ev"] == "connection_open" and e["active"]
               and e["gen"] == 0)


def test_port_restricted_pair_connects_directly_via_stun(world: World, tmp_path: Path,
                                                         spawn: Any) -> None:
    """Port-restricted × port-restricted with STUN only: the peers meet over Tor inside the
    lab and connect directly (server-reflexive candidates through coturn's STUN), both ways."""
    cfg_a, cfg_b = lab_pair(world, tmp_path, [STUN])
    t0 = time.monotonic()
    a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
    t_conn = max(connected(a), connected(b)) - t0
    exchange(a, b, cfg_a, cfg_b, 150)
    check_log(cfg_b["log"], cfg_a["seed"], 150)
    check_log(cfg_a["log"], cfg_b["seed"], 150)
    sa, sb = a.stats(), b.stats()
    assert sa["path"] == "direct" and sb["path"] == "direct", (sa, sb)
    assert "relay" not in (sa["candidates"] or []) + (sb["candidates"] or [])
    print(f"\nlab session, port-restricted x port-restricted, STUN: connected in {t_conn:.1f} s "
          f"(Tor in lab ready in {world.tor_ready_s:.0f} s); path {sa['path']} "
          f"{sa['candidates']} / {sb['candidates']}")


def test_symmetric_to_port_restricted_connects_via_turn(world: World, tmp_path: Path,
                                                        spawn: Any) -> None:
    """Symmetric × port-restricted: no direct pair exists (research/nat-lab.md); with coturn
    as TURN (long-term credentials) the session runs relayed and says so: path ``turn``."""
    world.lab.set_nat("a", "symmetric")
    cfg_a, cfg_b = lab_pair(world, tmp_path, [STUN, TURN])
    t0 = time.monotonic()
    a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
    t_conn = max(connected(a), connected(b)) - t0
    exchange(a, b, cfg_a, cfg_b, 150)
    check_log(cfg_b["log"], cfg_a["seed"], 150)
    check_log(cfg_a["log"], cfg_b["seed"], 150)
    sa, sb = a.stats(), b.stats()
    assert sa["path"] == "turn" and sb["path"] == "turn", (sa, sb)
    print(f"\nlab session, symmetric x port-restricted, STUN+TURN: connected in {t_conn:.1f} s; "
          f"path {sa['path']} {sa['candidates']} / {sb['candidates']}")


def _move_and_resume(world: World, a: LabPeer, b: LabPeer, cfg_a: dict[str, Any],
                     cfg_b: dict[str, Any], sent: int, to: str, mbb: bool) -> dict[str, float]:
    """Move ``a`` while both send ``sent`` more messages; returns the times (s from the move)
    of its detection, the new generation active at both, and the first new message at b."""
    before_b, before_a = delivered(cfg_b["log"]), delivered(cfg_a["log"])
    gen0 = max(active_gens(a))
    t0 = time.monotonic()
    world.lab.move("a", to, make_before_break=mbb, overlap=OVERLAP)
    a.send(cmd="send", count=sent)
    b.send(cmd="send", count=sent)
    t_first = wait_count(cfg_b, before_b + 1, 120, (a, b)) - t0
    net = a.wait(lambda e: e["ev"] == "netchange" and e["t"] > t0, 30)
    opened = [p.wait(lambda e: e["ev"] == "connection_open" and e["active"]
                     and e["gen"] > gen0, 120)["t"] - t0 for p in (a, b)]
    wait_count(cfg_b, sent, 120, (a, b))
    wait_count(cfg_a, sent, 120, (a, b))
    assert delivered(cfg_a["log"]) > before_a
    # the move's OFFER went on the stream too, never in-band only: after a hard move the old
    # data channel is dead before anyone knows it [p4-04 SES-74]
    # (a may also have answered b's OFFER instead, when b declared its path dead first)
    err = Path(cfg_a["log"]).with_suffix(".stderr").read_text()
    assert not re.search(r"OFFER \d+ sent in-band \(network\)", err), "in-band only"
    return {"detect": net["t"] - t0, "open_a": opened[0], "open_b": opened[1],
            "first_msg": t_first}


def test_hard_and_make_before_break_moves_keep_the_session(world: World, tmp_path: Path,
                                                           spawn: Any) -> None:
    """Device a moves Wi-Fi → cellular (hard: the old interface is gone before the new one is
    up) and back (make-before-break: both up for OVERLAP seconds) while both peers send: each
    move is seen by netlink in a's namespace, a nudges its tor and re-signals; the session
    resumes on a new generation and every message arrives once, in order (cellular is a
    symmetric NAT: TURN configured)."""
    cfg_a, cfg_b = lab_pair(world, tmp_path, [STUN, TURN])
    a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
    connected(a)
    connected(b)
    exchange(a, b, cfg_a, cfg_b, 100)
    hard = _move_and_resume(world, a, b, cfg_a, cfg_b, 250, "cell", mbb=False)
    path_cell = a.stats()["path"]
    mbb = _move_and_resume(world, a, b, cfg_a, cfg_b, 400, "wlan", mbb=True)
    check_log(cfg_b["log"], cfg_a["seed"], 400)
    check_log(cfg_a["log"], cfg_b["seed"], 400)
    for p in (a, b):
        gens = active_gens(p)
        assert gens == sorted(set(gens)) and len(gens) >= 3, (p.name, gens)
    print(f"\nlab session moves: generations {active_gens(a)}, Tor fallback used "
          f"{tor_fallbacks(a)} times; (s from the move): hard " + ", ".join(
        f"{k} {v:.2f}" for k, v in hard.items()) + f" (path on cellular: {path_cell}); "
        "make-before-break " + ", ".join(f"{k} {v:.2f}" for k, v in mbb.items()))


def test_nat_rebinding_caught_by_liveness(world: World, tmp_path: Path, spawn: Any) -> None:
    """b's router gets a new public address (every mapping lost, no event on b itself): the
    direct path dies silently; with data in flight liveness declares it dead (p4-04 §10.1,
    ≤ 10 s) and the session resumes on a new generation, nothing lost or duplicated."""
    cfg_a, cfg_b = lab_pair(world, tmp_path, [STUN])
    a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
    connected(a)
    connected(b)
    exchange(a, b, cfg_a, cfg_b, 100)
    gen0 = max(active_gens(a))
    before = delivered(cfg_b["log"])
    t0 = time.monotonic()
    first = world.lab.routers["rb"].wan_ip
    world.lab.rebind("b")
    try:
        a.send(cmd="send", count=300)
        b.send(cmd="send", count=300)
        left = [p.wait(lambda e: (e["ev"] == "connection_failed" and e["gen"] == gen0) or (
            e["ev"] == "connection_open" and e["active"] and e["gen"] > gen0), 60)["t"] - t0
            for p in (a, b)]
        opened = [p.wait(lambda e: e["ev"] == "connection_open" and e["active"]
                         and e["gen"] > gen0, 120)["t"] - t0 for p in (a, b)]
        wait_count(cfg_b, 300, 120, (a, b))
        wait_count(cfg_a, 300, 120, (a, b))
    finally:
        world.lab.rebind("b", first)  # back to its first address
    assert delivered(cfg_b["log"]) > before
    assert not any(e["ev"] == "netchange" for p in (a, b) for e in p.lines), \
        "a rebinding is no local event"
    assert min(left) <= 10.0 + 3.0, left  # the dead-path bound plus scheduling slack
    check_log(cfg_b["log"], cfg_a["seed"], 300)
    check_log(cfg_a["log"], cfg_b["seed"], 300)
    print(f"\nlab session, NAT rebinding: dead path left after {left[0]:.2f} / {left[1]:.2f} s, "
          f"new generation active after {opened[0]:.2f} / {opened[1]:.2f} s")


# ------------------------------------------------------------------ every NAT pair

NATS = ("full-cone", "address-restricted", "port-restricted", "symmetric")
#: What docs/network.md promises with STUN only (research/nat-lab.md): two endpoint-independent
#: mappings punch through; a symmetric NAT does only with a peer whose filter lets the new port
#: in (full-cone: any source; address-restricted: the address it sent to); else no direct path.
STUN_DIRECT = {frozenset(p) for p in (
    *((x, y) for x in NATS[:3] for y in NATS[:3]),
    ("full-cone", "symmetric"), ("address-restricted", "symmetric"))}
MATRIX_OPEN_TIMEOUT = 6.0  # seconds a generation may take to open where none can (reported)


def _outcome(a: LabPeer, b: LabPeer, timeout: float) -> str:
    """``direct`` once both peers have a data channel active, ``tor`` once both report the
    onion stream as their path and a failed generation was reported; else AssertionError."""
    peers = (a, b)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        lines = [list(p.lines) for p in peers]
        if all(any(e["ev"] == "connection_open" and e["gen"] and e["active"] for e in ls)
               for ls in lines):
            return "direct"
        if any(e["ev"] == "generation_failed" for ls in lines for e in ls) and all(
                [e["detail"] for e in ls if e["ev"] == "path"][-1:] == ["tor"] for ls in lines):
            return "tor"
        time.sleep(0.05)
    raise AssertionError(f"neither a data channel nor the Tor fallback; {diagnose(peers)}")


def set_nat_nudged(world: World, role: str, nat: str) -> None:
    """``role``'s router gets NAT behaviour ``nat``; that forgets its mappings, which silently
    kills its tor's connections to the relays, so the tor is nudged (``DisableNetwork`` 1 → 0,
    as on a move) and given its circuits back before a peer uses it."""
    if world.lab.routers["r" + role].nat == nat:
        return
    world.lab.set_nat(role, nat)
    nudge_tor(world, role)


def nudge_tor(world: World, role: str) -> None:
    """Make ``role``'s tor drop its connections and wait until it has a circuit again."""
    from p4ref.io.netwatch import nudge_tor_sync

    c = world.net.controller("ab".index(role))
    try:
        nudge_tor_sync(c)
        end = time.monotonic() + 60
        time.sleep(0.5)
        while c.get_info("status/circuit-established") != "1":
            assert time.monotonic() < end, f"{role}'s tor has no circuit after the NAT change"
            time.sleep(0.1)
    finally:
        c.close()


def _matrix(world: World, tmp_path: Path, spawn: Any, ice: list[dict[str, Any]],
            expect: Any, pairs: list[tuple[str, str]]) -> list[str]:
    """For each NAT pair: a fresh pair of peers with ``ice``, the outcome and what each peer
    tells its user (status, stats, log) checked against ``expect(pair)``."""
    rows = []
    for i, (na, nb) in enumerate(pairs):
        set_nat_nudged(world, "a", na)
        set_nat_nudged(world, "b", nb)
        (tmp_path / f"{i}").mkdir()
        cfg_a, cfg_b = lab_pair(world, tmp_path / f"{i}", ice)
        for cfg in (cfg_a, cfg_b):
            cfg["open_timeout"] = MATRIX_OPEN_TIMEOUT
        t0 = time.monotonic()
        a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
        got = _outcome(a, b, 120)
        took = time.monotonic() - t0
        want = expect((na, nb))
        assert got == want, f"{na} x {nb}: {got}, documented {want}; {diagnose((a, b))}"
        for p, cfg in ((a, cfg_a), (b, cfg_b)):  # the user is told which
            st = status_of(p)
            if got == "direct":
                assert st["path"] == "datachannel" and st["stats"]["path"] == "direct", st
            else:
                assert st["path"] == "tor" and st["stats"]["path"] == "tor", st
                log = Path(cfg["log"]).with_suffix(".stderr").read_text(errors="replace")
                assert "the session is carried by: tor" in log
        for p in (a, b):
            p.stop()
        rows.append(f"{na} x {nb}: {got} ({took:.1f} s)")
    return rows


def _pairs() -> list[tuple[str, str]]:
    return [(x, y) for i, x in enumerate(NATS) for y in NATS[i:]]


def test_every_nat_pair_with_the_shipped_default(world: World, tmp_path: Path,
                                                spawn: Any) -> None:
    """The shipped default (no STUN, no TURN: docs/network.md) on every NAT pair, the two
    devices on different home networks: host candidates cannot reach across two NATs, so no
    pair connects directly; each falls back to the onion stream and each peer says so (status
    path ``tor``, stats, log, the failed generation reported)."""
    rows = _matrix(world, tmp_path, spawn, [], lambda _: "tor", _pairs())
    print("\nlab, every NAT pair, shipped default (no STUN/TURN): " + "; ".join(rows))


def test_every_nat_pair_with_stun(world: World, tmp_path: Path, spawn: Any) -> None:
    """STUN only, every NAT pair: direct where docs/network.md's table says so (two
    endpoint-independent mappings; a symmetric NAT with a full-cone or address-restricted
    peer), the Tor fallback elsewhere (symmetric with port-restricted or symmetric), and the
    user is told which."""
    rows = _matrix(world, tmp_path, spawn, [STUN],
                   lambda p: "direct" if frozenset(p) in STUN_DIRECT else "tor", _pairs())
    print("\nlab, every NAT pair, STUN only: " + "; ".join(rows))
