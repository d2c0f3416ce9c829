"""A private Tor network on loopback, for P⁴'s tests, CI and the offline demo.

It lives in the package so ``p4 demo`` and the tests import it; ``tools/tornet.py`` is its
command line.  Usage::

    python tools/tornet.py up [--dir DIR] [--authorities 3] [--relays 2] [--clients 2]
    python tools/tornet.py down --dir DIR

``up`` prints one JSON object (control/SOCKS ports, cookie paths, pids) on stdout, writes the same
to ``DIR/tornet.json`` and stays up until Ctrl-C, SIGTERM or ``down``. ``down`` stops only the
processes this launcher started (pid files in DIR, each checked against its command line).

Importable: :class:`TorNet` (a context manager) with :meth:`TorNet.start`, :meth:`TorNet.stop`,
:attr:`TorNet.clients` (a list of :class:`ClientInfo`) and :meth:`TorNet.restart_client`.

Hooks for networks that are not all on loopback (``tools/netlab/tor.py`` runs every tor in a
network namespace of its own): override :meth:`TorNet.node_address` (the address a relay or
authority listens on and is named by), :meth:`TorNet.launch_prefix` (a command prefix such as
``ip netns exec NS``) and :meth:`TorNet.on_planned` (after nicknames and ports are chosen); set
``unix_sockets=True`` to put every control port and client SOCKS port on a Unix socket in the
node's data directory (reachable from another namespace through the file system; then
:meth:`TorNet.connect_controller` opens it with ``Controller.from_socket_file``) and
``extra_torrc`` for lines every node gets.

The recipe follows research/tor-lab.md closely (that document has the measurements):

- ``TestingTorNetwork 1`` with the rapid-voting options on every node, ``Schedulers Vanilla``
  (pitfall 5: not ``Scheduler``), three authorities keyed with ``tor-gencert``, relays keyed
  with ``tor --list-fingerprint`` (which needs a dummy ``DirAuthority``), clients with
  ``SocksPort … ExtendedErrors``;
- a phased launch (pitfall 1): authorities and relays first, clients once the consensus lists
  every relay with the HSDir flag; ready = that, plus every client at ``Bootstrapped 100%``;
- every listener is on 127.0.0.1 on a port found by binding port 0; nothing uses 9050/9051 or
  /var/lib/tor (``--defaults-torrc`` points at an empty file, ``-f`` at our torrc);
- tors die with the launcher: ``__OwningControllerProcess`` names a tiny *watchdog* child that
  exits when the launcher's pipe to it closes (even on SIGKILL). It is deliberately not the
  launcher's own pid: stem's ``authenticate()`` sends ``TAKEOWNERSHIP`` when that option equals
  ``os.getpid()``, and then closing *that* controller kills tor (research pitfall "Step 6.2") —
  fatal when a driver in the same process (pytest) connects and later disconnects.

Running as root works (tor logs "running as root"; no ``User`` option is needed; Debian's
AppArmor profile ``system_tor`` only applies to the systemd unit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Literal

from ..errors import ErrorCode, P4Error
from ._platform import find_tor

__all__ = ["ClientInfo", "NodeInfo", "TorNet", "TorNetError", "clients_in", "main"]

Role = Literal["authority", "relay", "client"]

_DUMMY_AUTHORITY = (
    "dummy orport=1 no-v2 v3ident=0000000000000000000000000000000000000000 "
    "127.0.0.1:1 0000000000000000000000000000000000000000"
)
_WATCHDOG = "import sys; sys.stdin.buffer.read()"


class TorNetError(P4Error):
    """The private network could not be built or started (``TOR_NOT_INSTALLED``,
    ``TOR_LAUNCH_FAILED``, ``TOR_TIMEOUT``)."""


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A client tor of the network: what a driver needs to use it (``TorConfig.testnet``)."""

    control_port: int
    socks_port: int
    cookie_path: str
    data_dir: str
    nickname: str = ""
    control_socket: str = ""  # with ``TorNet(unix_sockets=True)``: the control socket's path
    socks_socket: str = ""  # … and the SOCKS socket's (then the two ports are unused)


@dataclass(slots=True)
class NodeInfo:
    """One tor process of the network (mutable: ``pid`` changes on restart)."""

    nickname: str
    role: Role
    data_dir: str
    control_port: int
    or_port: int = 0
    dir_port: int = 0
    socks_port: int = 0
    pid: int = 0
    fingerprint: str = ""
    v3ident: str = ""

    @property
    def torrc(self) -> str:
        return os.path.join(self.data_dir, "torrc")

    @property
    def cookie_path(self) -> str:
        return os.path.join(self.data_dir, "control_auth_cookie")

    @property
    def log_path(self) -> str:
        return os.path.join(self.data_dir, "notice.log")

    @property
    def control_socket(self) -> str:
        """Where ``ControlPort unix:`` puts the control socket (``TorNet(unix_sockets=True)``)."""
        return os.path.join(self.data_dir, "control.sock")

    @property
    def socks_socket(self) -> str:
        """Where a client's ``SocksPort unix:`` socket is (``TorNet(unix_sockets=True)``)."""
        return os.path.join(self.data_dir, "socks.sock")


def clients_in(base_dir: str | os.PathLike[str]) -> list[ClientInfo]:
    """The clients of a running network described in ``base_dir/tornet.json`` (written by
    :meth:`TorNet.start`: ``tools/tornet.py up --dir DIR``, or the test suite's network).
    Raises TorNetError(TOR_UNREACHABLE) naming the file if it is missing or malformed."""
    path = os.path.join(base_dir, "tornet.json")
    try:
        with open(path, encoding="utf-8") as f:
            desc = json.load(f)
        return [ClientInfo(int(c["control_port"]), int(c["socks_port"]), str(c["cookie_path"]),
                           str(c["data_dir"]), str(c.get("nickname", "")),
                           str(c.get("control_socket", "")), str(c.get("socks_socket", "")))
                for c in desc["clients"]]  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TorNetError(
            ErrorCode.TOR_UNREACHABLE,
            f"no private Tor network described in {path} ({exc}); start one with "
            f"`python tools/tornet.py up --dir {base_dir}`",
        ) from None


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (bind port 0; all held until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _which(name: str) -> str:
    """``tor`` where each platform's packages put it (:func:`p4ref.io._platform.find_tor`),
    ``tor-gencert`` on PATH or next to it; any other name on PATH or in /usr/sbin."""
    tor = find_tor() if name in ("tor", "tor-gencert") else None
    if name == "tor" and tor:
        return tor
    sbin = f"/usr/sbin/{name}"
    path = shutil.which(name) or (sbin if os.path.exists(sbin) else "")
    if not path and tor:
        beside = os.path.join(os.path.dirname(tor), name + (".exe" if os.name == "nt" else ""))
        path = beside if os.path.exists(beside) else ""
    if not path:
        raise TorNetError(
            ErrorCode.TOR_NOT_INSTALLED,
            f"`{name}` not found on PATH; install tor "
            "(Debian/Ubuntu: `sudo apt-get install -y tor`, macOS: `brew install tor`)",
        )
    return path


def _tail(path: str, n: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class TorNet:
    """A private Tor network: ``authorities`` + ``relays`` relays and ``clients`` clients.

    ``with TorNet() as net: net.clients[0].socks_port`` — :meth:`start` on enter, :meth:`stop`
    on exit. ``base_dir=None`` uses a fresh temporary directory, removed by :meth:`stop` unless
    ``keep_dir``.
    """

    base_dir: str | None = None
    authorities: int = 3
    relays: int = 2
    clients_count: int = 2
    keep_dir: bool = False
    tor_cmd: str = "tor"
    gencert_cmd: str = "tor-gencert"
    unix_sockets: bool = False
    """Control ports and client SOCKS ports on Unix sockets in each data directory."""
    extra_torrc: list[str] = field(default_factory=list)
    """Lines appended to every node's torrc."""
    nodes: list[NodeInfo] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``keygen``; from the first tor start to ``consensus`` (all relays HSDir) and to
    ``ready`` (every client bootstrapped); ``total`` from :meth:`start`."""
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _watchdog: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _made_dir: bool = field(default=False, repr=False)
    _tor: str = field(default="", repr=False)

    # ------------------------------------------------------------------ public API

    @property
    def clients(self) -> list[ClientInfo]:
        unix = self.unix_sockets
        return [
            ClientInfo(n.control_port, n.socks_port, n.cookie_path, n.data_dir, n.nickname,
                       n.control_socket if unix else "", n.socks_socket if unix else "")
            for n in self.nodes
            if n.role == "client"
        ]

    # ------------------------------------------------------------------ hooks (override)

    def node_address(self, n: NodeInfo) -> str:
        """The address relay or authority ``n`` listens on (``Address``, ``ORPort``,
        ``DirPort``) and is named by in the ``DirAuthority`` lines."""
        return "127.0.0.1"

    def launch_prefix(self, n: NodeInfo) -> list[str]:
        """Prepended to ``n``'s tor command line, e.g. ``["ip", "netns", "exec", NS]``."""
        return []

    def on_planned(self) -> None:
        """Called once nicknames, ports and directories are chosen, before any key is made."""

    def connect_controller(self, n: NodeInfo) -> Any:
        """An authenticated stem ``Controller`` on ``n`` (one try; the caller closes it).
        Raises ``stem.SocketError``/``OSError`` while tor is not listening yet."""
        import stem.control

        if self.unix_sockets:
            c = stem.control.Controller.from_socket_file(n.control_socket)
        else:
            # probe first: stem leaks its socket when the connection is refused
            with socket.create_connection(("127.0.0.1", n.control_port), timeout=5):
                pass
            c = stem.control.Controller.from_port("127.0.0.1", n.control_port)
        try:
            c.authenticate()
        except BaseException:
            c.close()
            raise
        return c

    def controller(self, index: int) -> Any:
        """An authenticated stem Controller on client ``index`` (the caller closes it)."""
        return self.connect_controller(self._client_node(index))

    def control_socket(self, index: int) -> str:
        return self._client_node(index).control_socket

    def socks_socket(self, index: int) -> str:
        return self._client_node(index).socks_socket

    @property
    def dir(self) -> str:
        assert self.base_dir is not None
        return self.base_dir

    def __enter__(self) -> TorNet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout: float = 120.0) -> TorNet:
        """Generate keys and torrcs, launch in phases, wait until ready (raises TorNetError)."""
        if self.authorities < 1 or self.authorities + self.relays < 4:
            raise TorNetError(
                ErrorCode.INTERNAL_ERROR,
                "need >= 1 authority and >= 4 relays in total (research/tor-lab.md: 3 never work)",
            )
        self._tor = _which(self.tor_cmd)
        gencert = _which(self.gencert_cmd)
        t0 = time.monotonic()
        deadline = t0 + timeout
        if self.base_dir is None:
            self.base_dir = tempfile.mkdtemp(prefix="p4-tornet-")
            self._made_dir = True
        os.makedirs(self.dir, mode=0o700, exist_ok=True)
        try:
            self._plan()
            self._keygen(gencert)
            self.timings["keygen"] = time.monotonic() - t0
            self._start_watchdog()
            t1 = time.monotonic()
            for node in self.nodes:
                self._write_torrc(node)
            for node in self.nodes:
                if node.role != "client":
                    self._launch(node)
            self._wait_consensus(deadline)
            self.timings["consensus"] = time.monotonic() - t1
            for node in self.nodes:
                if node.role == "client":
                    self._launch(node)
            for node in self.nodes:
                if node.role == "client":
                    self._wait_bootstrap(node, deadline)
            self.timings["ready"] = time.monotonic() - t1
            self.timings["total"] = time.monotonic() - t0
            self._write_description()
        except BaseException:
            self.stop(remove_dir=False)
            raise
        return self

    def stop(self, remove_dir: bool | None = None) -> None:
        """SIGTERM every tor this object started (by pid), SIGKILL stragglers, stop the watchdog."""
        procs = list(self._procs.values())
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        for p in procs:
            try:
                p.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._procs.clear()
        if self._watchdog is not None:
            if self._watchdog.stdin is not None:
                self._watchdog.stdin.close()
            try:
                self._watchdog.wait(5)
            except subprocess.TimeoutExpired:
                self._watchdog.kill()
                self._watchdog.wait()
            self._watchdog = None
        for n in self.nodes:
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(n.data_dir, "tor.pid"))
        if remove_dir is None:
            remove_dir = self._made_dir and not self.keep_dir
        if remove_dir and self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def node(self, nickname: str) -> NodeInfo:
        for n in self.nodes:
            if n.nickname == nickname:
                return n
        raise KeyError(nickname)

    def process(self, nickname: str) -> subprocess.Popen[bytes] | None:
        return self._procs.get(nickname)

    def stop_client(self, index: int, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send ``sig`` to client ``index``'s tor and wait for it to exit."""
        node = self._client_node(index)
        p = self._procs.pop(node.nickname, None)
        if p is None:
            return
        if p.poll() is None:
            p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def restart_client(self, index: int, timeout: float = 60.0) -> ClientInfo:
        """(Re)start client ``index`` with the same torrc, ports and data directory; wait for
        ``Bootstrapped 100%``. Stops it first if it is still running."""
        node = self._client_node(index)
        if node.nickname in self._procs:
            self.stop_client(index)
        self._launch(node)
        self._wait_bootstrap(node, time.monotonic() + timeout)
        self._write_description()
        return self.clients[index]

    def client_options(self) -> dict[str, str | list[str]]:
        """torrc options that let an extra tor (e.g. ``TorConfig(mode="launch")``) join this
        network as a client: TestingTorNetwork, the DirAuthority lines and the fast options."""
        return {
            "TestingTorNetwork": "1",
            "DirAuthority": self._dir_authority_lines(),
            "AssumeReachable": "1",
            "PathsNeededToBuildCircuits": "0.25",
            "Schedulers": "Vanilla",
            "SafeLogging": "0",
            "ConnLimit": "60",
        }

    def describe(self) -> dict[str, Any]:
        """The JSON description ``up`` prints."""
        return {
            "dir": self.base_dir,
            "launcher_pid": os.getpid(),
            "watchdog_pid": self._watchdog.pid if self._watchdog else 0,
            "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
            "clients": [asdict(c) for c in self.clients],
            "nodes": [
                {
                    **asdict(n),
                    "cookie_path": n.cookie_path,
                    "torrc": n.torrc,
                    "log": n.log_path,
                }
                for n in self.nodes
            ],
        }

    # ------------------------------------------------------------------ internals

    def _client_node(self, index: int) -> NodeInfo:
        return [n for n in self.nodes if n.role == "client"][index]

    def _plan(self) -> None:
        """Choose nicknames and ports; (re)create each node's directory. Refuses a directory
        whose network is still running (a live pid in its pid files)."""
        running = [pid for pid in _recorded_pids(self.dir) if _cmdline(pid)]
        if running:
            raise TorNetError(
                ErrorCode.TOR_LAUNCH_FAILED,
                f"{self.dir} has a running network (pids {running}); run `tornet.py down` first",
            )
        n_relay_like = self.authorities + self.relays
        ports = iter(free_ports(self.authorities * 3 + self.relays * 2 + self.clients_count * 2))
        self.nodes = []
        for i in range(n_relay_like):
            role: Role = "authority" if i < self.authorities else "relay"
            nick = f"p4auth{i}" if role == "authority" else f"p4relay{i - self.authorities}"
            node = NodeInfo(
                nickname=nick,
                role=role,
                data_dir=os.path.join(self.dir, nick),
                control_port=next(ports),
                or_port=next(ports),
                dir_port=next(ports) if role == "authority" else 0,
            )
            self.nodes.append(node)
        for i in range(self.clients_count):
            nick = f"p4client{i}"
            self.nodes.append(
                NodeInfo(
                    nickname=nick,
                    role="client",
                    data_dir=os.path.join(self.dir, nick),
                    control_port=next(ports),
                    socks_port=next(ports),
                )
            )
        for entry in os.listdir(self.dir):  # old node directories from an earlier run
            if entry.startswith(("p4auth", "p4relay", "p4client")):
                shutil.rmtree(os.path.join(self.dir, entry), ignore_errors=True)
        for n in self.nodes:
            os.makedirs(os.path.join(n.data_dir, "keys"), mode=0o700, exist_ok=True)
            os.chmod(n.data_dir, 0o700)
        with open(os.path.join(self.dir, "torrc-defaults"), "w", encoding="utf-8"):
            pass
        self.on_planned()

    def _keygen(self, gencert: str) -> None:
        """Authority v3 keys (tor-gencert) and every relay's RSA fingerprint, in parallel."""
        gens: list[tuple[NodeInfo, subprocess.Popen[bytes]]] = []
        for n in self.nodes:
            if n.role != "authority":
                continue
            keys = os.path.join(n.data_dir, "keys")
            cmd = [
                gencert, "--create-identity-key", "--passphrase-fd", "0",
                "-i", os.path.join(keys, "authority_identity_key"),
                "-s", os.path.join(keys, "authority_signing_key"),
                "-c", os.path.join(keys, "authority_certificate"),
                "-m", "12", "-a", f"{self.node_address(n)}:{n.dir_port}",
            ]  # fmt: skip
            p = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
            )
            gens.append((n, p))
        for n, p in gens:
            out, _ = p.communicate(b"\n", timeout=120)
            if p.returncode != 0:
                raise TorNetError(ErrorCode.TOR_LAUNCH_FAILED, f"tor-gencert failed: {out!r}")
            cert = os.path.join(n.data_dir, "keys", "authority_certificate")
            with open(cert, encoding="ascii") as f:
                for line in f:
                    if line.startswith("fingerprint "):
                        n.v3ident = line.split()[1].strip()
            if not n.v3ident:
                raise TorNetError(ErrorCode.TOR_LAUNCH_FAILED, f"no fingerprint in {cert}")
        fps: list[tuple[NodeInfo, subprocess.Popen[bytes]]] = []
        for n in self.nodes:
            if n.role == "client":
                continue
            self._write_torrc(n, with_authorities=False)
            cmd = [
                self._tor, "--list-fingerprint", "--defaults-torrc", self._defaults(),
                "-f", n.torrc, "--DirAuthority", _DUMMY_AUTHORITY, "--quiet",
            ]  # fmt: skip
            fps.append((n, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        for n, p in fps:
            out, _ = p.communicate(timeout=120)
            fp_file = os.path.join(n.data_dir, "fingerprint")
            try:
                with open(fp_file, encoding="ascii") as f:
                    n.fingerprint = f.read().split()[1]
            except (OSError, IndexError) as exc:
                raise TorNetError(
                    ErrorCode.TOR_LAUNCH_FAILED,
                    f"tor --list-fingerprint failed for {n.nickname}: "
                    f"{out.decode(errors='replace')}",
                ) from exc

    def _defaults(self) -> str:
        return os.path.join(self.dir, "torrc-defaults")

    def _dir_authority_lines(self) -> list[str]:
        return [
            f"{n.nickname} orport={n.or_port} no-v2 v3ident={n.v3ident} "
            f"{self.node_address(n)}:{n.dir_port} {n.fingerprint}"
            for n in self.nodes
            if n.role == "authority"
        ]

    def _write_torrc(self, n: NodeInfo, with_authorities: bool = True) -> None:
        owner = self._watchdog.pid if self._watchdog else 0
        lines = [
            "TestingTorNetwork 1",
            f"DataDirectory {n.data_dir}",
            f"Nickname {n.nickname}",
            f"Log notice file {n.log_path}",
            f"PidFile {os.path.join(n.data_dir, 'tor.pid')}",
            "RunAsDaemon 0",
            "SafeLogging 0",
            "LogTimeGranularity 1",
            "ShutdownWaitLength 0",
            "ConnLimit 60",
            f"ControlPort unix:{n.control_socket}" if self.unix_sockets
            else f"ControlPort 127.0.0.1:{n.control_port}",
            "CookieAuthentication 1",
            "AssumeReachable 1",
            "PathsNeededToBuildCircuits 0.25",
            "TestingDirAuthVoteGuard *",
            "TestingDirAuthVoteHSDir *",
            "TestingDirAuthVoteExit *",
            "TestingMinExitFlagThreshold 0",
            "V3AuthNIntervalsValid 2",
            "Schedulers Vanilla",
        ]
        if owner:
            lines.append(f"__OwningControllerProcess {owner}")
        ip = self.node_address(n)
        if n.role == "client":
            socks = f"unix:{n.socks_socket}" if self.unix_sockets else f"127.0.0.1:{n.socks_port}"
            lines += [f"SocksPort {socks} ExtendedErrors"]
        else:
            lines += [
                f"Address {ip}",
                f"ORPort {ip}:{n.or_port}",
                "SocksPort 0",
                "ExitRelay 0",
                "ExitPolicy reject *:*",
                "ContactInfo p4-tornet@localhost",
                "ServerDNSDetectHijacking 0",
                "ServerDNSTestAddresses",
            ]
        if n.role == "authority":
            lines += [
                f"DirPort {ip}:{n.dir_port}",
                "AuthoritativeDirectory 1",
                "V3AuthoritativeDirectory 1",
                "TestingV3AuthInitialVotingInterval 5",
                "TestingV3AuthInitialVoteDelay 2",
                "TestingV3AuthInitialDistDelay 2",
                "V3AuthVotingInterval 10",
                "V3AuthVoteDelay 2",
                "V3AuthDistDelay 2",
            ]
        if with_authorities:
            lines += [f"DirAuthority {a}" for a in self._dir_authority_lines()]
        lines += self.extra_torrc
        with open(n.torrc, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def _start_watchdog(self) -> None:
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _launch(self, n: NodeInfo) -> None:
        if self._watchdog is None or self._watchdog.poll() is not None:
            self._start_watchdog()
            self._write_torrc(n)
        for stale in (n.cookie_path, n.control_socket, n.socks_socket):
            with contextlib.suppress(OSError):
                os.unlink(stale)
        out = open(os.path.join(n.data_dir, "stdout.log"), "ab")  # noqa: SIM115
        try:
            p = subprocess.Popen(
                [*self.launch_prefix(n), self._tor, "--defaults-torrc", self._defaults(),
                 "-f", n.torrc],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()
        self._procs[n.nickname] = p
        n.pid = p.pid

    def _check_alive(self, n: NodeInfo) -> None:
        p = self._procs.get(n.nickname)
        if p is None or p.poll() is not None:
            raise TorNetError(
                ErrorCode.TOR_LAUNCH_FAILED,
                f"tor {n.nickname} exited (code {p.returncode if p else '?'}); "
                f"log tail:\n{_tail(n.log_path)}\n{_tail(os.path.join(n.data_dir, 'stdout.log'))}",
            )

    @contextlib.contextmanager
    def _controller(self, n: NodeInfo, deadline: float) -> Iterator[Any]:
        """A stem controller on ``n`` (:meth:`connect_controller`, retried until ``deadline``;
        closed on exit)."""
        import stem

        last: Exception | None = None
        while time.monotonic() < deadline:
            self._check_alive(n)
            ready = os.path.exists(n.cookie_path) and (
                not self.unix_sockets or os.path.exists(n.control_socket)
            )
            if ready:
                try:
                    c = self.connect_controller(n)
                except (stem.SocketError, OSError) as exc:
                    last = exc
                else:
                    try:
                        yield c
                        return
                    finally:
                        c.close()
            time.sleep(0.1)
        raise TorNetError(
            ErrorCode.TOR_TIMEOUT, f"control port of {n.nickname} not reachable: {last}"
        )

    def _wait_consensus(self, deadline: float) -> None:
        """Until authority 0's consensus lists every relay with HSDir (research: phased launch)."""
        import stem

        want = {n.fingerprint for n in self.nodes if n.role != "client"}
        auth0 = self.nodes[0]
        have: set[str] = set()
        with self._controller(auth0, deadline) as c:
            while time.monotonic() < deadline:
                for n in self.nodes:
                    if n.role != "client":
                        self._check_alive(n)
                try:
                    have = {
                        r.fingerprint
                        for r in c.get_network_statuses()
                        if "HSDir" in r.flags and r.fingerprint in want
                    }
                except stem.ControllerError:
                    have = set()
                if have == want:
                    return
                time.sleep(0.25)
        raise TorNetError(
            ErrorCode.TOR_TIMEOUT,
            f"consensus lists {len(have)}/{len(want)} HSDir relays at the deadline; "
            f"{auth0.nickname} log:\n{_tail(auth0.log_path)}",
        )

    def _wait_bootstrap(self, n: NodeInfo, deadline: float) -> None:
        import stem

        with self._controller(n, deadline) as c:
            phase = ""
            while time.monotonic() < deadline:
                self._check_alive(n)
                with contextlib.suppress(stem.ControllerError):
                    phase = c.get_info("status/bootstrap-phase")
                if "PROGRESS=100" in phase:
                    return
                time.sleep(0.1)
        raise TorNetError(
            ErrorCode.TOR_TIMEOUT,
            f"{n.nickname} not bootstrapped at the deadline ({phase}); log:\n{_tail(n.log_path)}",
        )

    def _write_description(self) -> None:
        with open(os.path.join(self.dir, "tornet.json"), "w", encoding="utf-8") as f:
            json.dump(self.describe(), f, indent=2)
            f.write("\n")


# ---------------------------------------------------------------------- CLI


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0


def _recorded_pids(base_dir: str) -> list[int]:
    """Pids recorded under ``base_dir`` that still belong to it: the launcher (its command line
    names tornet) and each tor (its command line names its node directory). A recycled pid
    therefore never matches."""
    base = os.path.abspath(base_dir)
    pids: list[int] = []
    pid = _read_pid(os.path.join(base, "launcher.pid"))
    if pid and pid != os.getpid() and "tornet" in _cmdline(pid):
        pids.append(pid)
    for entry in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        pid = _read_pid(os.path.join(base, entry, "tor.pid"))
        if pid and os.path.join(base, entry) + os.sep in _cmdline(pid):
            pids.append(pid)
    return pids


def _down(base_dir: str, timeout: float = 15.0) -> int:
    """Stop the launcher and the tors recorded under ``base_dir`` (see :func:`_recorded_pids`)."""
    victims = _recorded_pids(base_dir)
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + timeout
    while time.monotonic() < end and any(_cmdline(p) for p in victims):
        time.sleep(0.1)
    for pid in victims:
        if _cmdline(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows: no SIGKILL
    print(json.dumps({"stopped": victims}))
    return 0


def _up(args: argparse.Namespace) -> int:
    base = os.path.abspath(args.dir) if args.dir else None
    net = TorNet(
        base_dir=base,
        authorities=args.authorities,
        relays=args.relays,
        clients_count=args.clients,
        keep_dir=True,
    )

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    try:
        net.start(timeout=args.timeout)
        with open(os.path.join(net.dir, "launcher.pid"), "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
        print(json.dumps(net.describe(), indent=2), flush=True)
        while True:
            time.sleep(1)
            dead = [n for n, p in net._procs.items() if p.poll() is not None]
            if dead:
                print(f"tornet: tor exited: {', '.join(dead)}", file=sys.stderr, flush=True)
                return 1
    except KeyboardInterrupt:
        return 0
    except TorNetError as exc:
        print(f"tornet: {exc}", file=sys.stderr)
        return 2
    finally:
        net.stop(remove_dir=False)
        if net.base_dir is not None:
            launcher_pid = os.path.join(net.base_dir, "launcher.pid")
            if _read_pid(launcher_pid) == os.getpid():
                os.unlink(launcher_pid)


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", r"setDaemon\(\) is deprecated", DeprecationWarning)
    ap = argparse.ArgumentParser(prog="tornet", description=(__doc__ or "").split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a private Tor network and stay up")
    up.add_argument("--dir", help="state directory (default: a new temporary directory)")
    up.add_argument("--authorities", type=int, default=3)
    up.add_argument("--relays", type=int, default=2)
    up.add_argument("--clients", type=int, default=2)
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to become ready")
    down = sub.add_parser("down", help="stop the network recorded in --dir")
    down.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "up":
        return _up(args)
    return _down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
