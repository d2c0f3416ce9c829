"""The lab: namespaces, links, NATs, coturn, impairment, moves (see README.md beside this file).

Everything lives in network namespaces named ``p4nl-<pid>-<start>-<rand>-<role>``: the owner's pid
and its start time (``/proc/<pid>/stat`` field 22) make a lab whose owner died recognisable by
:func:`sweep`, and the random part keeps two labs of one process apart. Links are veth pairs
created *inside* lab namespaces with both ends in lab namespaces; nothing is ever added to the
root namespace (no veth, route, rule or sysctl there).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import ns

__all__ = [
    "CELL_NET",
    "INET_NET",
    "NAT_TYPES",
    "STUN_ALT_IP",
    "STUN_IP",
    "STUN_PORT",
    "TURN_PASSWORD",
    "TURN_REALM",
    "TURN_USER",
    "Lab",
    "LabError",
    "NatType",
    "list_labs",
    "sweep",
]

NatType = Literal["port-restricted", "address-restricted", "full-cone", "symmetric"]
NAT_TYPES: tuple[NatType, ...] = ("port-restricted", "address-restricted", "full-cone", "symmetric")

INET_NET = "172.31.0.0/24"
STUN_IP = "172.31.0.10"
STUN_ALT_IP = "172.31.0.11"
STUN_PORT = 3478
TURN_USER, TURN_PASSWORD, TURN_REALM = "lab", "labpass", "natlab"
NEXT_HOP = "172.31.0.254"  # the silent "rest of the internet": a MAC nobody owns
NEXT_HOP_MAC = "02:00:00:00:00:fe"
CELL_NET = "10.64.0.0/24"
CELL_GW = "10.64.0.1"
OLD_TABLE = 100  # routing table of the old network during a make-before-break move
HOST_BASE = 101  # extra hosts on the internet bridge (tor relays): 172.31.0.101, .102, …
MAX_HOSTS = 80  # … up to .180
REBIND_POOL = range(200, 250)  # public addresses a rebinding router takes: .200 … .249

NAME_RE = re.compile(r"^p4nl-(\d+)-([0-9a-f]+)-([0-9a-f]{4})-(.+)$")


class LabError(RuntimeError):
    """The lab could not be built or changed (missing tool, not root, a command failed)."""


def _tail(path: str, n: int = 12) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def _start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class Router:
    """A NAT box (home router or the cellular gateway) with uplink ``wan0`` on the internet."""

    role: str
    wan_ip: str
    lan_gw: str
    nat: NatType | None
    """None: an internet host (a tor relay), not a NAT: no translation, input allowed."""
    loss: float = 0.0
    delay_ms: int = 0
    drop_hosts: set[str] = field(default_factory=set)
    tcp_strict: bool = False
    """TCP mappings only from a SYN: a packet of a connection the NAT does not know (after a
    rebinding forgot them) is dropped, not mapped anew (conntrack ``tcp_loose`` 0)."""
    delayer: subprocess.Popen[bytes] | None = None


@dataclass
class Home:
    """A device (namespace ``role``) at home behind router ``r<role>``, with a dormant ``wwan0``."""

    role: str
    index: int
    wlan_ip: str
    cell_ip: str
    on: Literal["wlan", "cell"] = "wlan"


def check_prerequisites(turn: bool = True) -> str | None:
    """None if the lab can run here, else the reason (not root, no ``ip netns``, no coturn…)."""
    if sys.platform != "linux":
        return "the lab needs Linux network namespaces"
    if os.geteuid() != 0:
        return "the lab needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN) for network namespaces"
    for tool in ["ip", "iptables-restore", "conntrack", *(["turnserver"] if turn else [])]:
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            pkg = {"turnserver": "coturn", "iptables-restore": "iptables"}.get(tool, tool)
            return f"`{tool}` not found: install Debian package `{pkg}` (tools/bootstrap.sh does)"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "pyroute2 is not installed (pip install -e '.[test]')"
    return None


class Lab:
    """One lab. ``with Lab() as lab:`` builds it (:meth:`up`) and removes it (:meth:`down`).

    Default topology (README.md has the diagram): ``inet`` (bridge, coturn on .10/.11), home
    routers ``ra``/``rb`` (.2/.3) with LAN hosts ``a``/``b`` on ``wlan0``, cellular gateway
    ``rc`` (.4, symmetric by default) reachable from every home host through ``wwan0`` (down until
    :meth:`move`).
    """

    def __init__(
        self,
        homes: dict[str, NatType] | None = None,
        *,
        cell_nat: NatType = "symmetric",
        turn: bool = True,
        run_dir: str | None = None,
    ) -> None:
        pid = os.getpid()
        self.prefix = f"p4nl-{pid}-{_start_time(pid) or 0:x}-{secrets.token_hex(2)}-"
        wanted: dict[str, NatType] = (
            homes if homes is not None else {"a": "port-restricted", "b": "port-restricted"}
        )
        self.homes: dict[str, Home] = {}
        self.routers: dict[str, Router] = {}
        for i, (role, nat) in enumerate(wanted.items(), start=1):
            self.homes[role] = Home(role, i, f"192.168.{i}.2", f"10.64.0.{i + 1}")
            self.routers["r" + role] = Router(
                "r" + role, f"172.31.0.{i + 1}", f"192.168.{i}.1", nat
            )
        self.routers["rc"] = Router("rc", f"172.31.0.{len(wanted) + 2}", CELL_GW, cell_nat)
        self.turn = turn
        self.hosts: dict[str, str] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.run_dir = run_dir or tempfile.mkdtemp(prefix=self.prefix)
        self.timings: dict[str, float] = {}
        self._made: list[str] = []

    # ------------------------------------------------------------------ names and helpers

    def ns(self, role: str) -> str:
        """The namespace name of ``role`` (``inet``, ``ra``, ``rc``, ``a``, a host name…)."""
        return self.prefix + role

    @property
    def namespaces(self) -> list[str]:
        return list(self._made)

    def argv(self, role: str, *cmd: str) -> list[str]:
        """``ip netns exec <ns> cmd…``: run ``cmd`` inside ``role``'s namespace."""
        return ns.argv(self.ns(role), *cmd)

    def popen(self, role: str, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        return ns.popen(self.ns(role), cmd, **kw)

    async def spawn(self, role: str, *cmd: str, **kw: Any) -> asyncio.subprocess.Process:
        """``asyncio.create_subprocess_exec(cmd…)`` inside ``role``'s namespace."""
        return await ns.spawn(self.ns(role), *cmd, **kw)

    def run_in(self, role: str, fn: Any) -> Any:
        """Call ``fn()`` in a thread that entered ``role``'s namespace (sockets made there stay)."""
        return ns.run_in(self.ns(role), fn)

    def socket(self, role: str, kind: int = socket.SOCK_DGRAM) -> socket.socket:
        """An IPv4 socket that lives in ``role``'s namespace."""
        s: socket.socket = ns.run_in(self.ns(role), lambda: socket.socket(socket.AF_INET, kind))
        return s

    def sh(self, role: str, *cmd: str, stdin: str | None = None) -> str:
        return ns.run(self.ns(role), *cmd, stdin=stdin)

    def addresses(self, role: str) -> set[str]:
        """The IPv4 addresses currently on ``role``'s interfaces (lo excluded)."""
        from pyroute2 import NetNS

        with NetNS(self.ns(role)) as n:
            return {
                a.get_attr("IFA_ADDRESS")
                for a in n.get_addr(family=socket.AF_INET)
                if a.get_attr("IFA_LABEL") != "lo"
            }

    # ------------------------------------------------------------------ build and teardown

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> Lab:
        reason = check_prerequisites(self.turn)
        if reason:
            raise LabError(reason)
        t0 = time.monotonic()
        try:
            self._build()
        except BaseException:
            self.down()
            raise
        self.timings["up"] = time.monotonic() - t0
        return self

    def _netns(self, role: str, *, forward: bool = False) -> Any:
        from pyroute2 import NetNS, netns

        name = self.ns(role)
        netns.create(name)
        self._made.append(name)
        self.sh(
            role, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1", f"net.ipv4.ip_forward={int(forward)}",
        )  # fmt: skip
        n = NetNS(name)
        n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")
        return n

    @staticmethod
    def _addr(n: Any, ifname: str, cidr: str, up: bool = True) -> None:
        idx = n.link_lookup(ifname=ifname)[0]
        ip, plen = cidr.split("/")
        n.addr("add", index=idx, address=ip, prefixlen=int(plen))
        if up:
            n.link("set", index=idx, state="up")

    def _uplink(self, role: str, ip: str) -> None:
        """Attach ``role`` to the internet bridge as ``wan0`` with ``ip``, default to NEXT_HOP."""
        from pyroute2 import NetNS

        port = "p-" + role[:12]
        with NetNS(self.ns(role)) as n:
            n.link(
                "add",
                ifname="wan0",
                kind="veth",
                peer={"ifname": port, "net_ns_fd": self.ns("inet")},
            )
            self._addr(n, "wan0", ip + "/24")
            idx = n.link_lookup(ifname="wan0")[0]
            n.neigh("add", dst=NEXT_HOP, lladdr=NEXT_HOP_MAC, ifindex=idx, state=0x80)
            n.route("add", dst="default", gateway=NEXT_HOP)
        with NetNS(self.ns("inet")) as inet:
            br = inet.link_lookup(ifname="br0")[0]
            p = inet.link_lookup(ifname=port)[0]
            inet.link("set", index=p, master=br, state="up")

    def _build(self) -> None:
        from pyroute2 import NetNS

        inet = self._netns("inet")
        with inet:
            inet.link("add", ifname="br0", kind="bridge")
            self._addr(inet, "br0", STUN_IP + "/24")
            idx = inet.link_lookup(ifname="br0")[0]
            inet.addr("add", index=idx, address=STUN_ALT_IP, prefixlen=24)
            inet.neigh("add", dst=NEXT_HOP, lladdr=NEXT_HOP_MAC, ifindex=idx, state=0x80)
            inet.route("add", dst="default", gateway=NEXT_HOP)
        # cellular gateway: bridge cbr0 on its LAN side, every home host's wwan0 plugs in there
        for router in self.routers.values():
            self._netns(router.role, forward=True).close()
            self._uplink(router.role, router.wan_ip)
        with self._netns_handle("rc") as rc:
            rc.link("add", ifname="cbr0", kind="bridge")
            self._addr(rc, "cbr0", CELL_GW + "/24")
        for h in self.homes.values():
            self._netns(h.role).close()
            r = "r" + h.role
            with NetNS(self.ns(r)) as rn:
                rn.link(
                    "add",
                    ifname="lan0",
                    kind="veth",
                    peer={"ifname": "wlan0", "net_ns_fd": self.ns(h.role)},
                )
                self._addr(rn, "lan0", self.routers[r].lan_gw + "/24")
            with NetNS(self.ns("rc")) as cn:
                port = "c-" + h.role[:12]
                cn.link(
                    "add",
                    ifname=port,
                    kind="veth",
                    peer={"ifname": "wwan0", "net_ns_fd": self.ns(h.role)},
                )
                cn.link(
                    "set",
                    index=cn.link_lookup(ifname=port)[0],
                    master=cn.link_lookup(ifname="cbr0")[0],
                    state="up",
                )
            with NetNS(self.ns(h.role)) as hn:
                self._addr(hn, "wlan0", h.wlan_ip + "/24")
                hn.route("add", dst="default", gateway=self.routers[r].lan_gw)
        for router in self.routers.values():
            self._apply_rules(router)
        if self.turn:
            self._start_coturn()

    def _netns_handle(self, role: str) -> Any:
        from pyroute2 import NetNS

        return NetNS(self.ns(role))

    def _start_coturn(self) -> None:
        turnserver = shutil.which("turnserver") or "/usr/bin/turnserver"
        log = os.path.join(self.run_dir, "turn.log")
        cmd = [
            turnserver, "-n", f"--listening-ip={STUN_IP}", f"--listening-ip={STUN_ALT_IP}",
            f"--listening-port={STUN_PORT}", f"--relay-ip={STUN_IP}", "--lt-cred-mech",
            f"--user={TURN_USER}:{TURN_PASSWORD}", f"--realm={TURN_REALM}", "--fingerprint",
            "--no-tls", "--no-dtls", "--no-cli", "--simple-log", f"--log-file={log}",
            f"--pidfile={os.path.join(self.run_dir, 'turn.pid')}", "--min-port=49152",
            "--max-port=49407", "--no-software-attribute",
            f"--userdb={os.path.join(self.run_dir, 'turndb')}",
        ]  # fmt: skip
        out = open(os.path.join(self.run_dir, "turn.stdout"), "wb")  # noqa: SIM115
        try:
            self.procs["coturn"] = self.popen("inet", cmd, stdout=out, stderr=subprocess.STDOUT)
        finally:
            out.close()
        deadline = time.monotonic() + 10
        want = f":{STUN_PORT:04X} "
        while time.monotonic() < deadline:
            if self.procs["coturn"].poll() is not None:
                raise LabError(f"turnserver exited:\n{_tail(log)}")
            udp = self.run_in("inet", lambda: Path("/proc/thread-self/net/udp").read_text("ascii"))
            if want in udp:
                return
            time.sleep(0.02)
        raise LabError(f"turnserver did not listen on UDP {STUN_PORT} within 10 s:\n{_tail(log)}")

    def add_host(self, role: str) -> str:
        """A namespace of its own on the internet bridge (e.g. a tor relay); returns its address."""
        if len(self.hosts) >= MAX_HOSTS:
            raise LabError(f"at most {MAX_HOSTS} hosts on the internet bridge")
        ip = f"172.31.0.{HOST_BASE + len(self.hosts)}"
        self._netns(role).close()
        self._uplink(role, ip)
        self.hosts[role] = ip
        return ip

    def down(self) -> None:
        """Stop every process started in the lab, then delete its namespaces (idempotent)."""
        t0 = time.monotonic()
        for r in self.routers.values():
            r.delayer = None
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        for p in self.procs.values():
            try:
                p.wait(3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()
        _remove_namespaces(list(reversed(self._made)))
        self._made.clear()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.timings["down"] = time.monotonic() - t0

    # ------------------------------------------------------------------ NAT and impairment

    def _rules(self, r: Router) -> str:
        lan_hosts = [h.wlan_ip for h in self.homes.values() if "r" + h.role == r.role]
        filt = ["*filter"] + (["-A INPUT -i wan0 -j DROP"] if r.nat else [])
        for host in sorted(r.drop_hosts):
            filt += [f"-A FORWARD -s {host} -j DROP", f"-A FORWARD -d {host} -j DROP"]
        if r.tcp_strict:
            filt += ["-A FORWARD -m conntrack --ctstate INVALID -j DROP"]
        nat = ["*nat"]
        mangle = ["*mangle"]
        masq = "-A POSTROUTING -o wan0 -j MASQUERADE"
        if r.nat is not None:
            nat.append(masq + (" --random-fully" if r.nat == "symmetric" else ""))
        if r.nat == "full-cone" and lan_hosts:
            nat.append(f"-A PREROUTING -i wan0 -p udp -j DNAT --to-destination {lan_hosts[0]}")
        if r.nat == "address-restricted" and lan_hosts:
            mangle.append("-A FORWARD -o wan0 -m recent --name out --rdest --set")
            nat.append(
                "-A PREROUTING -i wan0 -p udp -m recent --name out --rsource --rcheck "
                f"-j DNAT --to-destination {lan_hosts[0]}"
            )
        if r.loss >= 1.0:
            filt += ["-A FORWARD -j DROP"]
        elif r.loss > 0:
            stat = f"-m statistic --mode random --probability {r.loss:.6f} -j DROP"
            mangle += [f"-A PREROUTING -i wan0 {stat}", f"-A POSTROUTING -o wan0 {stat}"]
        if r.delay_ms > 0:
            q = "-j NFQUEUE --queue-num 0 --queue-bypass"
            mangle += [f"-A PREROUTING -i wan0 {q}", f"-A POSTROUTING -o wan0 {q}"]
        return "\n".join([*filt, "COMMIT", *nat, "COMMIT", *mangle, "COMMIT", ""])

    def _apply_rules(self, r: Router) -> None:
        self.sh(r.role, "iptables-restore", stdin=self._rules(r))

    def _flush_conntrack(self, role: str) -> None:
        p = subprocess.run(self.argv(role, "conntrack", "-F"), capture_output=True, check=False)
        if p.returncode != 0 and b"flushed" not in p.stderr:
            raise LabError(f"conntrack -F in {role}: {p.stderr.decode(errors='replace')}")

    def set_tcp_strict(self, home_or_router: str, on: bool = True) -> None:
        """Whether a router maps TCP only from a SYN (:attr:`Router.tcp_strict`): then a
        rebinding leaves the device's open TCP connections (its tor's) dead without a reset,
        as a NAT that follows RFC 5382's SYN-only mapping does; by default (Linux's loose
        pick-up) their next segment is mapped anew and the server answers with a reset."""
        r = self._router(home_or_router)
        r.tcp_strict = on
        self.sh(r.role, "sysctl", "-qw", f"net.netfilter.nf_conntrack_tcp_loose={int(not on)}")
        self._apply_rules(r)

    def set_nat(self, home_or_router: str, nat: NatType) -> None:
        """Change a router's NAT behaviour (and forget its mappings)."""
        r = self._router(home_or_router)
        r.nat = nat
        self._apply_rules(r)
        self._flush_conntrack(r.role)

    def impair(self, who: str, *, loss: float = 0.0, delay_ms: int = 0) -> None:
        """Loss (0–1) and one-way delay (ms, NFQUEUE) on ``who``'s ``wan0``, each direction.

        ``who`` is a router or home (``a``, ``ra``, ``rc``) or an added host (``tor-relay0``)."""
        r = (
            self._router(who)
            if who in self.homes or who in self.routers
            else self._host_router(who)
        )
        r.loss, r.delay_ms = loss, delay_ms
        self._apply_rules(r)
        old = self.procs.pop("delay-" + r.role, None)
        if old is not None:
            old.terminate()
            old.wait()
        if delay_ms > 0:
            script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "delayer.py")
            p = self.popen(
                r.role, [sys.executable, script, "--queue", "0", "--delay-ms", str(delay_ms)]
            )
            self.procs["delay-" + r.role] = p
            time.sleep(0.2)  # let it bind the queue (until then --queue-bypass passes packets)

    def total_loss(self, home: str, on: bool = True) -> None:
        """Silently drop all to and from ``home``'s device on every uplink (no local event)."""
        h = self.homes[home]
        for r, ip in ((self.routers["r" + home], h.wlan_ip), (self.routers["rc"], h.cell_ip)):
            (r.drop_hosts.add if on else r.drop_hosts.discard)(ip)
            self._apply_rules(r)

    def _router(self, who: str) -> Router:
        return self.routers[who if who in self.routers else "r" + who]

    def _host_router(self, host: str) -> Router:
        """Impairment of an added host uses the same rule set, with no NAT."""
        r = self.routers.get(host)
        if r is None:
            r = Router(host, self.hosts[host], "", None)
            self.routers[host] = r
        return r

    # ------------------------------------------------------------------ mobility

    def move(
        self,
        home: str,
        to: Literal["cell", "wlan"] = "cell",
        *,
        make_before_break: bool = False,
        overlap: float = 0.0,
    ) -> None:
        """Move ``home``'s device between Wi-Fi (``wlan0`` behind its router) and cellular.

        Hard: the old interface goes down (address flushed) before the new one comes up.
        Make-before-break: the new interface is up with its address and the default route moves
        to it before the old one goes down, ``overlap`` seconds later (this call blocks that
        long; a phone keeps a fading Wi-Fi for seconds, 0 drops it at once). Meanwhile traffic
        from the old address keeps leaving through the old interface (a source rule and table
        ``OLD_TABLE``, as a multi-homed phone routes per network), so connections bound there
        keep working until it goes."""
        from pyroute2 import NetNS

        h = self.homes[home]
        if h.on == to:
            return
        new, new_ip, gw = (
            ("wwan0", h.cell_ip, CELL_GW)
            if to == "cell"
            else ("wlan0", h.wlan_ip, self.routers["r" + home].lan_gw)
        )
        old = "wlan0" if to == "cell" else "wwan0"
        old_ip, old_gw = (
            (h.wlan_ip, self.routers["r" + home].lan_gw) if to == "cell" else (h.cell_ip, CELL_GW)
        )
        with NetNS(self.ns(home)) as n:
            o = n.link_lookup(ifname=old)[0]
            keep = make_before_break and overlap > 0

            def drop_old() -> None:
                if keep:
                    with contextlib.suppress(Exception):
                        n.rule("del", src=old_ip, src_len=32, table=OLD_TABLE)
                    with contextlib.suppress(Exception):
                        n.route("del", dst="default", table=OLD_TABLE)
                n.flush_addr(index=o)
                n.link("set", index=o, state="down")

            if not make_before_break:
                drop_old()
            if keep:  # the old address keeps its way out while both are up
                n.route("replace", dst="default", gateway=old_gw, table=OLD_TABLE)
                n.rule("add", src=old_ip, src_len=32, table=OLD_TABLE)
            self._addr(n, new, new_ip + "/24")
            n.route("replace", dst="default", gateway=gw)
            if make_before_break:
                time.sleep(overlap)
                drop_old()
        h.on = to

    def rebind(self, home: str, to: str | None = None) -> str:
        """NAT rebinding: ``home``'s router gets a new public address (its mappings are lost):
        ``to``, or the next free one of :data:`REBIND_POOL`, never one a router, host or server
        of the lab uses (it once walked onto a tor relay's address after five rebindings, and
        the relay dropped off the network)."""
        from pyroute2 import NetNS

        r = self._router(home)
        new = to or self._free_public_address(r.wan_ip)
        with NetNS(self.ns(r.role)) as n:
            idx = n.link_lookup(ifname="wan0")[0]
            n.addr("del", index=idx, address=r.wan_ip, prefixlen=24)
            n.addr("add", index=idx, address=new, prefixlen=24)
            n.route("replace", dst="default", gateway=NEXT_HOP)
        r.wan_ip = new
        self._flush_conntrack(r.role)
        return new

    def _free_public_address(self, current: str) -> str:
        used = {x.wan_ip for x in self.routers.values()} | set(self.hosts.values()) \
            | {STUN_IP, STUN_ALT_IP, NEXT_HOP}
        last = int(ipaddress.ip_address(current)) % 256
        order = [i for i in REBIND_POOL if i > last] + [i for i in REBIND_POOL if i <= last]
        for i in order:
            ip = f"172.31.0.{i}"
            if ip not in used:
                return ip
        raise LabError("no free public address left for a rebinding")

    def describe(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "owner": os.getpid(),
            "namespaces": self.namespaces,
            "stun": f"{STUN_IP}:{STUN_PORT}",
            "stun_alt": f"{STUN_ALT_IP}:{STUN_PORT}",
            "turn": {"user": TURN_USER, "password": TURN_PASSWORD, "realm": TURN_REALM},
            "routers": {
                r.role: {"wan": r.wan_ip, "lan_gw": r.lan_gw, "nat": r.nat}
                for r in self.routers.values()
            },
            "homes": {
                h.role: {"wlan": h.wlan_ip, "cell": h.cell_ip, "on": h.on}
                for h in self.homes.values()
            },
            "hosts": dict(self.hosts),
            "run_dir": self.run_dir,
        }


# ---------------------------------------------------------------------- sweeping


def _kill_namespace_pids(name: str) -> None:
    p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True, check=False)
    pids = [int(x) for x in p.stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))


def _remove_namespaces(names: list[str]) -> None:
    from pyroute2 import netns

    for name in names:
        _kill_namespace_pids(name)
    for name in names:
        with contextlib.suppress(OSError):
            netns.remove(name)


def list_labs() -> dict[str, dict[str, Any]]:
    """Every lab namespace on this host, grouped by prefix, with its owner and whether it lives."""
    from pyroute2 import netns

    labs: dict[str, dict[str, Any]] = {}
    for name in sorted(netns.listnetns()):
        m = NAME_RE.match(name)
        if not m:
            continue
        pid, start = int(m.group(1)), int(m.group(2), 16)
        prefix = name[: len(name) - len(m.group(4))]
        lab = labs.setdefault(
            prefix, {"owner": pid, "alive": _start_time(pid) == start, "namespaces": []}
        )
        lab["namespaces"].append(name)
    return labs


def sweep(prefix: str | None = None) -> list[str]:
    """Remove labs whose owner process is dead (or exactly ``prefix``); return removed names."""
    removed: list[str] = []
    for p, lab in list_labs().items():
        if (prefix is None and not lab["alive"]) or p == prefix:
            _remove_namespaces(lab["namespaces"])
            removed += lab["namespaces"]
    return removed
