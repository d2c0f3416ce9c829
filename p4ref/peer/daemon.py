"""``p4 up``: the long-running peer of one profile (ARCHITECTURE decision 11).

:class:`Daemon` owns, for its lifetime:

- the **daemon lock** ``<home>/daemon.lock`` (exclusive, never waited for: a second ``p4 up`` on
  the same profile fails at once with PROFILE_LOCKED and the first one's pid from
  ``<home>/daemon.pid``);
- the **Tor driver** (``--tor`` as for ``p4 pair``);
- one started :class:`p4ref.link.Link` per paired peer, with channels on; each publishes the
  per-pair rendezvous and reconnects by itself; network changes from
  :class:`p4ref.io.netwatch.NetWatch` go to every link's ``network_changed``;
- the **local API** (:class:`p4ref.api.ApiServer` over :class:`p4ref.peer.backend.PeerBackend`)
  plus the CLI's own routes (:mod:`p4ref.peer.routes`) under the ``p4-cli`` app token, written
  to ``<home>/api/cli.token`` (mode 0600) at every start;
- the **files** (:class:`p4ref.peer.files.FileService`): transfers of ``p4 send`` and the inbox.

Stopping (SIGTERM, SIGINT, :meth:`Daemon.request_stop`) closes the API first, then the transfer
tasks, the links (everything accepted is durable in the session store and resumes at the next
start), Tor, and the lock.  A new pairing is picked up within a few seconds (the peer list is
re-read).

Forgetting a peer (:meth:`Daemon.forget`, ``p4 peers forget`` while this runs): if the session
is up, one message on the channel ``p4ctl/forgotten`` tells the peer, waited for until
acknowledged; then a signed BYE (RDV_UNKNOWN_PEER) on the open signalling streams; then the
link stops (its onions are unpublished), the pair's transfers and session rows are purged, and
the CLI deletes the pairing, so the key is refused until the devices pair again.  The other
side's ``p4 up`` logs "<name> forgot this device", stops that link and shows it in ``p4
status`` (its pairing stays until its user forgets it too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, P4Error
from ..io import _platform
from ..io.store import Profile, ProfileError, atomic_write, locked_file
from ..io.tor import TorConfig, TorDriver

__all__ = ["CLI_APP", "CLI_PREFIX", "Daemon", "DaemonOptions", "daemon_lock"]

log = logging.getLogger("p4.peer")

CLI_APP = "p4-cli"
CLI_PREFIX = "p4chat/"
CLI_TOKEN_FILE = "cli.token"
LOCK_FILE = "daemon.lock"
PID_FILE = "daemon.pid"


@dataclass(frozen=True)
class DaemonOptions:
    tor: TorConfig
    host_addresses: tuple[str, ...] | None = None
    ice_servers: tuple[Any, ...] = ()
    """STUN/TURN servers (:class:`p4ref.io.webrtc.IceServer`); none by default (docs/network.md)."""
    inbox: Path | None = None
    max_file_size: int = (1 << 63) - 1
    transport: str = "auto"
    netwatch: bool = True
    rescan_s: float = 3.0


@contextlib.contextmanager
def daemon_lock(home: Path) -> Iterator[None]:
    """Hold ``<home>/daemon.lock`` for the daemon's life; PROFILE_LOCKED at once if a running
    ``p4 up`` has it."""
    try:
        cm = locked_file(home / LOCK_FILE, 0.0, "busy")
        cm.__enter__()
    except ProfileError as exc:
        if exc.code != ErrorCode.PROFILE_LOCKED:
            raise
        pid = ""
        with contextlib.suppress(OSError, ValueError):
            pid = f" (pid {int((home / PID_FILE).read_text())})"
        raise ProfileError(ErrorCode.PROFILE_LOCKED,
                           f"p4 up is already running for {home}{pid}; stop it first, or use"
                           " `p4 status` to talk to it") from None
    try:
        atomic_write(home / PID_FILE, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            (home / PID_FILE).unlink()
        cm.__exit__(None, None, None)


class Daemon:
    """One profile's running peer (module docstring)."""

    def __init__(self, home: Path, options: DaemonOptions,
                 on_ready: Callable[[Daemon], None] | None = None) -> None:
        self.home = home
        self.options = options
        self.profile = Profile.open(home)
        self.links: dict[str, Any] = {}
        self.names: dict[str, str] = {}
        self.tor: TorDriver | None = None
        self.backend: Any = None
        self.files: Any = None
        self.server: Any = None
        self.started_at = time.time()
        self._stop = asyncio.Event()
        self._on_ready = on_ready
        self._tasks: list[asyncio.Task[None]] = []
        self._forgotten: set[str] = set()
        self.forgot_us: dict[str, float] = {}  # device ID -> when it told us it forgot us

    def request_stop(self) -> None:
        self._stop.set()

    # ---------------------------------------------------------------- links

    def _link_config(self) -> Any:
        from ..link import LinkConfig

        return LinkConfig(channels=True, host_addresses=self.options.host_addresses,
                          ice_servers=tuple(self.options.ice_servers))

    def _on_event(self, peer: str) -> Callable[[Any], None]:
        def report(ev: Any) -> None:
            name = self.names.get(peer, peer[:8])
            if ev.kind == "status":
                log.info("%s: %s", name, ev.status)
            elif ev.kind == "connection_open" and ev.active:
                link, path = self.links.get(peer), "tor" if ev.generation == 0 else None
                with contextlib.suppress(Exception):  # (None while the link is starting)
                    path = path or (link.stats().path if link is not None else None)
                log.info("%s: generation %s open (%s)", name, ev.generation,
                         {"turn": "relayed by TURN", "tor": "over Tor"}.get(path or "", "direct"))
            elif ev.kind == "bye":
                log.info("%s: closed its signalling stream (BYE %s)", name, ev.detail)
            elif ev.kind in ("connection_failed", "generation_failed", "session_reset"):
                log.info("%s: %s%s", name, ev.kind.replace("_", " "),
                         f" ({ev.detail})" if ev.detail else "")
            else:
                log.debug("%s: %s gen=%s %s", name, ev.kind, ev.generation, ev.detail)
        return report

    async def _open_link(self, device_id: str) -> Any:
        from ..link import Link

        assert self.tor is not None
        link = Link.open(self.home, device_id, tor=self.tor, config=self._link_config(),
                         on_event=self._on_event(device_id))
        await link.start()
        return link

    # ---------------------------------------------------------------- run

    async def run(self) -> None:
        with daemon_lock(self.home):
            try:
                await self._run()
            finally:
                await self._shutdown()

    async def _run(self) -> None:
        from ..api.listen import ApiServer
        from ..api.tokens import TokenError, TokenStore, api_dir
        from .backend import PeerBackend
        from .files import FileService
        from .routes import add_routes

        loop = asyncio.get_running_loop()
        undo = _platform.on_stop_signals(loop, self.request_stop)
        self._tasks.append(asyncio.create_task(self._undo_at_stop(undo)))
        peers = self.profile.peers()
        self.names = {p.device_id: p.name for p in peers}
        log.info("profile %s, device %s, %d paired peer(s)", self.home,
                 self.profile.identity.device_id, len(peers))
        self.tor = TorDriver(self.options.tor)
        log.info("connecting to Tor (%s)", self.options.tor.mode)
        await self._until_stop(self.tor.start())
        opened = await self._until_stop(asyncio.gather(
            *(self._open_link(p.device_id) for p in peers), return_exceptions=True))
        for p, res in zip(peers, opened, strict=True):
            if isinstance(res, BaseException):
                log.error("%s: the link did not start: %s", p.name, res)
            else:
                self.links[p.device_id] = res
                log.info("%s: link started (publishing the rendezvous)", p.name)
        self.backend = PeerBackend(self.home, self.links, self.names)
        await self.backend.start()
        self.files = FileService(self.home, self.links, self.backend.accept_channel,
                                 inbox=self.options.inbox,
                                 max_size=self.options.max_file_size, names=self.names)
        await self.files.start()
        for d in list(self.links):
            self._tasks.append(asyncio.create_task(self._goodbyes(d)))
        tokens = TokenStore(self.home)
        with contextlib.suppress(TokenError):
            tokens.remove(CLI_APP)
        try:
            token = tokens.add(CLI_APP, ["*"], CLI_PREFIX)
        except TokenError as exc:
            log.warning("no token for the p4 CLI (%s): p4 chat will not work", exc.message)
            token = ""
        atomic_write(api_dir(self.home) / CLI_TOKEN_FILE, (token + "\n").encode())
        self.server = ApiServer(self.home, self.backend,
                                transport=self.options.transport)  # type: ignore[arg-type]
        add_routes(self.server.app, self)
        await self.server.start()
        log.info("received files go to %s", self.files.inbox)
        if self.options.netwatch:
            self._tasks.append(asyncio.create_task(self._netwatch()))
        self._tasks.append(asyncio.create_task(self._rescan()))
        log.info("ready")
        if self._on_ready is not None:
            self._on_ready(self)
        await self._stop.wait()
        log.info("stopping")

    async def _undo_at_stop(self, undo: Callable[[], None]) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            undo()

    async def _until_stop(self, aw: Any) -> Any:
        """Await ``aw`` unless a stop is asked for first (then raise CancelledError)."""
        task = asyncio.ensure_future(aw)
        stop = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise asyncio.CancelledError
        return task.result()

    async def _netwatch(self) -> None:
        from ..io.netwatch import NetWatch

        try:
            async with NetWatch() as watch:
                async for change in watch:
                    log.info("network changed (%s); telling %d link(s)",
                             ",".join(sorted(change.reason)) if hasattr(change, "reason")
                             else "", len(self.links))
                    for link in list(self.links.values()):
                        with contextlib.suppress(Exception):
                            link.network_changed(change.gained)
        except (OSError, ImportError, ValueError) as exc:
            log.warning("network changes are not watched here (%s)", exc)

    async def _rescan(self) -> None:
        """Follow the profile: start a link for a new pairing, stop (and purge) the link of a
        peer forgotten without asking us (an older ``p4`` or a hand edit)."""
        told: set[str] = set()
        while True:
            await asyncio.sleep(self.options.rescan_s)
            try:
                peers = {p.device_id: p.name for p in Profile.open(self.home).peers()}
            except P4Error:
                continue
            for d in list(self.links):
                if d not in peers:
                    await self.forget(d, purge=True, bye=False)
            for d, name in peers.items():
                self.names[d] = name
                if d not in self.links and d not in told and d not in self._forgotten:
                    told.add(d)
                    try:
                        link = await self._open_link(d)
                    except Exception as exc:
                        log.error("%s: newly paired, but the link did not start: %s", name, exc)
                        continue
                    self.links[d] = link
                    self.backend.add_link(d, link)
                    self.files.add_peer(d)
                    self._tasks.append(asyncio.create_task(self._goodbyes(d)))
                    log.info("%s: newly paired; link started", name)

    async def _goodbyes(self, device_id: str) -> None:
        """The peer forgot this device (``p4 peers forget`` there): say so, stop its link
        (it would only dial in vain); the pairing stays until the user forgets it here too."""
        try:
            wrapped = await self.backend.accept_channel(device_id, "p4ctl/")
        except P4Error:
            return
        ch: Any = _link_channel(wrapped)
        m = await ch.recv()
        if m is not None:
            await m.confirm()
        if getattr(ch, "local", False) or m is None:
            return
        name = self.names.get(device_id, device_id[:8])
        self.forgot_us[device_id] = time.time()
        log.warning("%s forgot this device (it unpaired us); its link is stopped. Pair again"
                    " to talk to it, or `p4 peers forget %s` here too", name, name)
        link = self.links.pop(device_id, None)
        self.backend.remove_link(device_id)
        self.files.forget_peer(device_id)
        self._forgotten.add(device_id)
        if link is not None:
            with contextlib.suppress(Exception):
                await link.stop()

    # ---------------------------------------------------------------- forget

    async def forget(self, device_id: str, *, purge: bool = True, bye: bool = True) -> bool:
        """Stop the link to ``device_id`` (its onions go), drop its transfers and, with
        ``purge``, its session queues. True if a link was running."""
        self._forgotten.add(device_id)
        link = self.links.pop(device_id, None)
        name = self.names.get(device_id, device_id[:8])
        if self.files is not None:
            self.files.forget_peer(device_id)
        if self.backend is not None:
            self.backend.remove_link(device_id)
        if link is None:
            return False
        if bye:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_say_goodbye(link), 5.0)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_send_bye(link), 5.0)
        with contextlib.suppress(Exception):
            await link.stop(forget=purge)  # with purge: its session rows go (SessionStore)
        log.info("%s: forgotten (link stopped, onions removed, queues purged)", name)
        return True

    # ---------------------------------------------------------------- shutdown

    async def _shutdown(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                await self.server.stop()
        if self.files is not None:
            await self.files.stop()
        if self.backend is not None:
            with contextlib.suppress(Exception):
                await self.backend.close()
        links = list(self.links.values())
        await asyncio.gather(*(link.stop() for link in links), return_exceptions=True)
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.tor is not None:
            with contextlib.suppress(Exception):
                await self.tor.close()
        with contextlib.suppress(OSError):
            (self.home / "api" / CLI_TOKEN_FILE).unlink()
        log.info("stopped; everything accepted is on disk")


GOODBYE_CHANNEL = "p4ctl/forgotten"


async def _say_goodbye(link: Any) -> None:
    """While the session is up: one message on ``p4ctl/forgotten`` (authenticated by the
    session like all traffic), waited for until the peer acknowledged it, so its ``p4 up``
    can say plainly that this device forgot it."""
    if link.status != "connected":
        return
    ch = await link.open_channel(GOODBYE_CHANNEL)
    await ch.send(b'{"forgotten": true}')
    want = link.store.watermarks(link.peer_pub).tx_next - 1
    while link.store.watermarks(link.peer_pub).acked < want:
        await asyncio.sleep(0.05)


async def _send_bye(link: Any) -> None:
    """Tell the peer we forgot it: a signed BYE with RDV_UNKNOWN_PEER on every open signalling
    stream (best effort; link.stop() would send BYE NO_ERROR)."""
    await link.goodbye(ErrorCode.RDV_UNKNOWN_PEER)


def _link_channel(wrapped: Any) -> Any:
    """The link channel under the API's channel wrapper (or ``wrapped`` itself)."""
    from ..api.linkbackend import LinkChannel

    return wrapped.link_channel if isinstance(wrapped, LinkChannel) else wrapped
