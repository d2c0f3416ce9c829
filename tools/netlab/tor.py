"""The private Tor network inside the lab: relays in namespaces of their own, clients behind NATs.

:class:`LabTorNet` is :class:`p4ref.io.tornet.TorNet` with its public hooks filled in:

- **addresses** (:meth:`~p4ref.io.tornet.TorNet.node_address`): each authority and relay gets a
  lab host namespace on the internet bridge (``Lab.add_host``: 172.31.0.101, .102, …, made in
  :meth:`~p4ref.io.tornet.TorNet.on_planned`) and its ``Address``/``ORPort``/``DirPort`` there,
  so every hop crosses a real veth and can be impaired per hop
  (``lab.impair("tor-p4relay0", …)``);
- **clients** run in the namespaces of lab devices (``client_homes``, default ``a`` and ``b``),
  behind their NATs (:meth:`~p4ref.io.tornet.TorNet.launch_prefix`: ``ip netns exec NS``), so
  a :meth:`~tools.netlab.lab.Lab.move` breaks their OR connections the way a phone's move does;
- **control and SOCKS are Unix sockets** in each node's data directory (``unix_sockets=True``):
  the test process stays in the root namespace and reaches every tor through the file system,
  never through a network address outside the lab.

Each tor runs ``LearnCircuitBuildTimeout 0`` (a fixed circuit build timeout, not one learned
from the lab's artificially fast links).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from p4ref.errors import ErrorCode
from p4ref.io.tornet import NodeInfo, TorNet, TorNetError

from . import ns
from .lab import Lab

__all__ = ["LabTorNet", "SocksError", "socks_connect"]

EXTRA_TORRC = ["LearnCircuitBuildTimeout 0", "ClientUseIPv6 0"]


@dataclass
class LabTorNet(TorNet):
    """``LabTorNet(lab=lab).start()``; ``control_socket(i)`` / ``socks_socket(i)`` /
    ``controller(i)`` per client (TorNet's)."""

    lab: Lab | None = None
    client_homes: tuple[str, ...] = ("a", "b")
    unix_sockets: bool = True
    extra_torrc: list[str] = field(default_factory=lambda: list(EXTRA_TORRC))
    placement: dict[str, str] = field(default_factory=dict)
    """nickname -> lab role (namespace) of that tor."""
    addresses: dict[str, str] = field(default_factory=dict)
    """nickname -> lab address of each authority and relay."""

    def __post_init__(self) -> None:
        if self.clients_count == 2 and len(self.client_homes) != 2:
            self.clients_count = len(self.client_homes)

    # ------------------------------------------------------------------ TorNet hooks

    def on_planned(self) -> None:
        if self.lab is None:
            raise TorNetError(ErrorCode.INTERNAL_ERROR, "LabTorNet needs lab=Lab(...) (built)")
        clients = iter(self.client_homes)
        for n in self.nodes:
            if n.role == "client":
                self.placement[n.nickname] = next(clients)
            else:
                role = "tor-" + n.nickname
                self.placement[n.nickname] = role
                if role not in self.lab.hosts:
                    self.lab.add_host(role)
                self.addresses[n.nickname] = self.lab.hosts[role]

    def node_address(self, n: NodeInfo) -> str:
        return self.addresses.get(n.nickname, "127.0.0.1")

    def launch_prefix(self, n: NodeInfo) -> list[str]:
        assert self.lab is not None
        return ns.argv(self.lab.ns(self.placement[n.nickname]))

    def open_socks(self, index: int, tcp_port: int) -> None:
        """Client ``index`` listens for SOCKS on its Unix socket and on ``127.0.0.1:tcp_port``
        inside its device's namespace (a peer there speaks SOCKS over TCP), both with
        ExtendedErrors; set again after a restart (they are not in its torrc)."""
        c = self.controller(index)
        try:
            c.set_options([("SocksPort", f"unix:{self.socks_socket(index)} ExtendedErrors"),
                           ("SocksPort", f"127.0.0.1:{tcp_port} ExtendedErrors")])
        finally:
            c.close()


# ---------------------------------------------------------------------- SOCKS over a Unix socket


class SocksError(OSError):
    """SOCKS5 failure; ``code`` is the reply code (0xF0–0xF7: tor's onion ExtendedErrors)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code


async def socks_connect(
    path: str, host: str, port: int, *, isolation: str = ""
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """SOCKS5 CONNECT to ``host:port`` through tor's ``SocksPort unix:path``; a distinct
    ``isolation`` string puts the stream on a fresh circuit (username/password isolation)."""
    if sys.platform == "win32":
        raise OSError("the lab is Linux-only (Unix sockets, network namespaces)")
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        user = (isolation or "p4").encode()
        writer.write(b"\x05\x01\x02")
        if await reader.readexactly(2) != b"\x05\x02":
            raise SocksError(0, "SOCKS server refused username/password auth")
        writer.write(b"\x01" + bytes([len(user)]) + user + b"\x01x")
        if (await reader.readexactly(2))[1] != 0:
            raise SocksError(0, "SOCKS auth failed")
        h = host.encode()
        writer.write(b"\x05\x01\x00\x03" + bytes([len(h)]) + h + struct.pack("!H", port))
        _, rep, _, atyp = await reader.readexactly(4)
        if rep != 0:
            raise SocksError(rep, f"SOCKS reply {rep:#04x}")
        if atyp == 3:
            await reader.readexactly((await reader.readexactly(1))[0] + 2)
        else:
            await reader.readexactly({1: 4, 4: 16}.get(atyp, 0) + 2)
        return reader, writer
    except BaseException:
        writer.close()
        raise


# ---------------------------------------------------------------------- onion reachability


async def echo_server(path: str) -> asyncio.AbstractServer:
    """A Unix-socket echo server (the onion service's target: ``Port=80,unix:path``)."""

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await r.read(4096):
                w.write(data)
                await w.drain()
        w.close()

    if sys.platform == "win32":
        raise OSError("the lab is Linux-only (Unix sockets, network namespaces)")
    return await asyncio.start_unix_server(handle, path)


async def echo_once(socks_path: str, onion: str, isolation: str, timeout: float) -> None:
    """One SOCKS connect to ``onion:80`` and one echoed line, within ``timeout`` seconds."""

    async def go() -> None:
        r, w = await socks_connect(socks_path, onion, 80, isolation=isolation)
        try:
            w.write(b"p4-lab\n")
            if await r.readline() != b"p4-lab\n":
                raise SocksError(0, "echo mismatch")
        finally:
            w.close()

    await asyncio.wait_for(go(), timeout)


async def wait_reachable(
    socks_path: str,
    onion: str,
    *,
    limit: float,
    attempt_timeout: float = 10.0,
    stagger: float | None = None,
    on_failure: Callable[[BaseException], Awaitable[None]] | None = None,
    log: list[tuple[float, str]] | None = None,
) -> tuple[float, int]:
    """Seconds until ``onion`` answers an echo through ``socks_path``, and the attempts made.

    Each attempt uses a fresh circuit and gives up after ``attempt_timeout``; a new attempt
    starts every ``stagger`` seconds (default: one at a time), so a lost introduction does not
    hide a recovery behind a whole attempt timeout. ``TimeoutError`` after ``limit`` seconds.
    ``on_failure`` runs after each failed attempt (e.g. ``HSFETCH``, as the P⁴ Tor driver does
    after an introduction failure); ``log`` collects (elapsed s, outcome) per attempt."""
    t0 = time.monotonic()
    every = stagger if stagger is not None else attempt_timeout
    running: set[asyncio.Task[None]] = set()
    attempts = 0
    last_start = -every
    try:
        while True:
            now = time.monotonic() - t0
            if now >= limit:
                raise TimeoutError(f"{onion} unreachable for {limit:.0f} s ({attempts} attempts)")
            if not running or now - last_start >= every:
                attempts += 1
                last_start = now
                timeout = min(attempt_timeout, limit - now)
                running.add(
                    asyncio.create_task(echo_once(socks_path, onion, f"p{t0}-{attempts}", timeout))
                )
            wait = max(0.01, min(every - (now - last_start), limit - now))
            done, running = await asyncio.wait(
                running, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                exc = task.exception()
                if exc is None:
                    if log is not None:
                        log.append((time.monotonic() - t0, "ok"))
                    return time.monotonic() - t0, attempts
                if log is not None:
                    code = getattr(exc, "code", None)
                    log.append(
                        (
                            time.monotonic() - t0,
                            f"socks {code:#04x}" if code else type(exc).__name__,
                        )
                    )
                if on_failure is not None:
                    await on_failure(exc)
    finally:
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(BaseException):
                await task


async def measure_move_recovery(
    lab: Lab,
    *,
    trials: int = 3,
    nudge: bool = True,
    limit: float = 120.0,
    home: str = "a",
    peer_client: int = 1,
    base_dir: str | None = None,
    settle: float = 10.0,
    extra_torrc: list[str] | None = None,
    relays: int = 4,
    hsfetch: bool = True,
    republish: bool = False,
) -> dict[str, Any]:
    """Tor in the lab: the tor client in ``home`` publishes an onion, the client of another
    device reaches it; then ``trials`` hard moves of ``home`` (cellular and back, alternately),
    each followed, if ``nudge``, by a ``DisableNetwork`` nudge as soon as :class:`NetWatch`
    reports the change (``detect_s``), and the seconds from the move until the onion
    answers again (``None``: not within ``limit``). Moves are ``settle`` seconds apart after a
    recovery (a device does not move every second; in a 5-relay network back-to-back moves
    can leave tor with no usable guard for minutes). With ``hsfetch`` the dialling client
    refetches the descriptor (``HSFETCH``, at most every 2 s) after a failed attempt, as the P⁴
    Tor driver does: after a few moves the service replaces its introduction points, and a
    client that keeps the old descriptor cannot reach it. With ``republish`` the publisher also
    removes and re-adds its onion (same key) after the nudge, which gives it fresh introduction
    points and a fresh descriptor."""
    from p4ref.io.netwatch import NetWatch, nudge_tor

    net = LabTorNet(lab=lab, authorities=1, relays=relays, base_dir=base_dir)
    net.extra_torrc += extra_torrc or []
    result: dict[str, Any] = {
        "nudge": nudge,
        "hsfetch": hsfetch,
        "republish": republish,
        "limit_s": limit,
        "detect_s": [],
        "recovery_s": [],
    }
    await asyncio.to_thread(net.start, 150)
    result["tor_ready_s"] = round(net.timings["total"], 1)
    sock = os.path.join(net.dir, "echo.sock")
    server = await echo_server(sock)
    c0 = await asyncio.to_thread(net.controller, 0)
    c1 = await asyncio.to_thread(net.controller, peer_client)
    fetched = [0.0]
    service_id = [""]

    async def refetch(exc: BaseException) -> None:
        if hsfetch and time.monotonic() - fetched[0] >= 2.0:
            fetched[0] = time.monotonic()
            with contextlib.suppress(Exception):
                await asyncio.to_thread(c1.msg, f"HSFETCH {service_id[0]}")

    try:
        t = time.monotonic()
        hs = await asyncio.to_thread(
            c0.create_ephemeral_hidden_service,
            {80: f"unix:{sock}"},
            key_type="NEW",
            key_content="ED25519-V3",
            await_publication=True,
            timeout=60,
        )
        onion = hs.service_id + ".onion"
        service_id[0] = hs.service_id
        result["publish_s"] = round(time.monotonic() - t, 2)
        first, _ = await wait_reachable(net.socks_socket(peer_client), onion, limit=60)
        result["first_reach_s"] = round(first, 2)
        for i in range(trials):
            if i:
                await asyncio.sleep(settle)
            to: Any = "cell" if lab.homes[home].on == "wlan" else "wlan"
            async with NetWatch(netns=lab.ns(home)) as watch:
                t = time.monotonic()
                await asyncio.to_thread(lab.move, home, to)
                if nudge:  # as P⁴ will: the network-change event triggers the nudge
                    change = await watch.next(5)
                    result["detect_s"].append(round(change.at - t, 2))
                    await nudge_tor(c0)
                if republish:
                    await asyncio.to_thread(c0.remove_ephemeral_hidden_service, hs.service_id)
                    await asyncio.to_thread(
                        c0.create_ephemeral_hidden_service,
                        {80: f"unix:{sock}"},
                        key_type=hs.private_key_type,
                        key_content=hs.private_key,
                        await_publication=False,
                    )
            try:
                await wait_reachable(
                    net.socks_socket(peer_client), onion, limit=limit, attempt_timeout=5.0,
                    stagger=1.0, on_failure=refetch,
                )  # fmt: skip
                result["recovery_s"].append(round(time.monotonic() - t, 2))
            except TimeoutError:
                result["recovery_s"].append(None)
    finally:
        c0.close()
        c1.close()
        server.close()
        await asyncio.to_thread(net.stop)
        if lab.homes[home].on != "wlan":
            await asyncio.to_thread(lab.move, home, "wlan")
    return result
