"""The local API's :class:`~p4ref.api.backend.Backend` over the real per-peer links of ``p4 up``.

``p4 up`` builds one started :class:`p4ref.link.Link` per paired peer, with
``LinkConfig(channels=True)``, and hands them over (:func:`serve_links` does all of this)::

    backend = LinkBackend(home, {device_id: link, ...})
    await backend.start()
    server = ApiServer(home, backend)          # p4ref.api.listen
    await server.start()
    ...
    await server.stop(); await backend.close()

What this adapter adds to the link's channels (``p4ref/link/_channels.py``):

- **Idempotency keys**, which the link does not have: :mod:`p4ref.api.idempotency` records
  each send before writing it and resolves an interrupted one against the channel's durable
  offset, so "accepted" stays exactly-once across crashes.
- **Per-message confirm.** The link confirms cumulatively (a message and every earlier one of
  its channel); apps may confirm out of order, so a confirm is passed on only for the longest
  confirmed prefix of what was handed out.
- **Routing by prefix**: one task per link takes every incoming channel and parks it until the
  app owning its prefix asks (:meth:`accept_channel`); after a restart the link offers the
  peer's channels again, and this adapter offers this side's own open channels too.
- **Events and status** in the API's terms.

Status comes from :meth:`p4ref.link.Link.stats`: the path type of the active generation
(``direct`` or ``turn``; never ``tor`` yet: the onion stream is no data path so far), SCTP's
smoothed RTT, session bytes sent and received on data channels, the outbox size, and the last
reconnect with its cause; a link without ``stats`` (a test double) reports null/0/"direct".
A peer message larger than half the channel window arrives in pieces (p4-05 CHN-29); each
piece is one API message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from p4ref.errors import P4Error
from p4ref.io.store import Profile

from ._signal import Changed
from .backend import (
    BackendError,
    Channel,
    LastReconnect,
    LinkEvent,
    Message,
    PathType,
    PeerInfo,
    PeerStatus,
    SendResult,
    SessionStateName,
)
from .idempotency import SendStore
from .listen import ApiServer, Transport
from .tokens import api_dir

__all__ = ["LinkBackend", "LinkChannel", "serve_links"]

log = logging.getLogger("p4.api")

#: p4ref.link.RECONNECT_CAUSES in the words of LastReconnect.reason
_CAUSES = {"dead": "liveness timeout", "network": "network change",
           "no_direct": "no direct path", "forced": "forced", "restart": "restart",
           "peer": "peer's new generation"}
_STATES: dict[str, SessionStateName] = {"connected": "connected",
                                        "reconnecting": "connecting", "offline": "offline"}


# --- the parts of p4ref.link this adapter uses (structural, so tests can stand in) ---


class _LinkMessage(Protocol):
    @property
    def offset(self) -> int: ...
    @property
    def data(self) -> bytes: ...
    def confirm(self) -> Awaitable[None]: ...


class _LinkChannel(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def offset(self) -> int: ...
    def write(self, data: bytes, *, end_of_message: bool) -> Awaitable[None]: ...
    async def recv(self) -> _LinkMessage | None: ...
    def close(self) -> Awaitable[None]: ...


class _ChanInfo(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def local(self) -> bool: ...


class _Mux(Protocol):
    def channels(self) -> Sequence[_ChanInfo]: ...


class _Layer(Protocol):
    @property
    def mux(self) -> _Mux: ...


class _LinkEvent(Protocol):
    @property
    def kind(self) -> str: ...
    @property
    def status(self) -> str | None: ...
    @property
    def generation(self) -> int | None: ...
    @property
    def code(self) -> int | None: ...
    @property
    def detail(self) -> str: ...


class _Link(Protocol):
    @property
    def status(self) -> str: ...
    @property
    def active_generation(self) -> int | None: ...
    @property
    def channels(self) -> _Layer | None: ...
    async def open_channel(self, name: str) -> _LinkChannel: ...
    async def accept_channel(self) -> _LinkChannel: ...
    def channel(self, name: str) -> _LinkChannel | None: ...
    def events(self) -> AsyncIterator[_LinkEvent]: ...


if TYPE_CHECKING:  # mypy proves the real link fits the protocols above
    from p4ref.link import Link

    def _fits(link: Link) -> _Link:
        return link


# --- one channel ---


class LinkChannel:
    """A link channel as the API's :class:`~p4ref.api.backend.Channel`."""

    def __init__(self, peer: str, ch: _LinkChannel, store: SendStore) -> None:
        self._peer = peer
        self._ch = ch
        self._store = store
        self._lock = asyncio.Lock()
        self._handed: OrderedDict[int, _LinkMessage] = OrderedDict()  # offset -> message
        self._confirmed: set[int] = set()
        self._closed = False
        self._broken = False
        self._replay: list[_LinkMessage] = []
        self._running: set[asyncio.Task[SendResult]] = set()

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def name(self) -> str:
        return self._ch.name

    @property
    def link_channel(self) -> _LinkChannel:
        """The :class:`p4ref.link.Channel` underneath, for a service in the same process that
        streams on it directly (``p4 up``'s file transfers), without the API's per-message
        idempotency and confirmation bookkeeping."""
        return self._ch

    async def recover(self) -> None:
        """Resolve sends a crash interrupted (see :mod:`p4ref.api.idempotency`)."""
        async with self._lock:
            for rec in await self._store.pending(self._peer, self.name):
                assert rec.data is not None
                off = self._ch.offset
                if off >= rec.start + rec.length:
                    await self._store.mark_done(rec.key)
                elif off <= rec.start:
                    await self._store.delete(rec.key)  # never written: the retry sends it
                else:
                    await self._ch.write(rec.data[off - rec.start:], end_of_message=True)
                    await self._store.mark_done(rec.key)
                    log.info("completed an interrupted send on %r", self.name)

    async def send(self, data: bytes, *, idempotency_key: str) -> SendResult:
        # a write cut short would leave half a message in the channel's byte stream: a client
        # that goes away (a closed WebSocket cancels its sends) does not interrupt it
        task = asyncio.get_running_loop().create_task(self._send(data, idempotency_key))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return await asyncio.shield(task)

    async def _send(self, data: bytes, idempotency_key: str) -> SendResult:
        digest = hashlib.sha256(data).digest()
        async with self._lock:
            rec = await self._store.get(idempotency_key)
            if rec is not None:
                if (rec.peer, rec.channel, rec.digest) != (self._peer, self.name, digest):
                    raise BackendError("IDEMPOTENCY_CONFLICT",
                                       "this idempotency key was used for another message")
                return SendResult(f"{rec.start}", replayed=True)
            if self._closed:
                raise BackendError("CHANNEL_CLOSED", f"channel {self.name!r} is closed")
            if self._broken:
                raise BackendError("BACKEND_UNAVAILABLE", f"a write on {self.name!r} failed"
                                   " half-way; it is completed when p4 up restarts")
            start = self._ch.offset
            await self._store.put_pending(idempotency_key, self._peer, self.name, digest, start,
                                          data)
            try:
                await self._ch.write(data, end_of_message=True)
            except BaseException:
                if self._ch.offset == start:  # nothing written: forget the key
                    await self._store.delete(idempotency_key)
                else:  # partly written: recover() finishes it at the next start
                    self._broken = True
                raise
            await self._store.mark_done(idempotency_key)
            return SendResult(f"{start}", replayed=False)

    async def receive(self) -> Message | None:
        if self._replay:
            m: _LinkMessage | None = self._replay.pop(0)
        else:
            m = await self._ch.recv()
        if m is None:
            return None
        self._handed[m.offset] = m
        return Message(f"{m.offset}", m.data)

    def release(self) -> None:
        """Hand out again what was handed out and not confirmed (its reader went away)."""
        self._replay = [m for off, m in self._handed.items() if off not in self._confirmed]
        self._handed.clear()
        self._confirmed.clear()

    async def confirm(self, message_id: str) -> None:
        try:
            offset = int(message_id)
        except ValueError:
            return
        if offset not in self._handed:
            return
        self._confirmed.add(offset)
        last: _LinkMessage | None = None
        while self._handed:
            first = next(iter(self._handed))
            if first not in self._confirmed:
                break
            last = self._handed.pop(first)
            self._confirmed.discard(first)
        if last is not None:
            await last.confirm()  # the link's confirm is cumulative

    async def close(self) -> None:
        async with self._lock:
            if not self._closed:
                self._closed = True
                await self._ch.close()


# --- the backend ---


class LinkBackend:
    """The :class:`~p4ref.api.backend.Backend` of ``p4 up`` (module docstring)."""

    def __init__(self, home: Path, links: Mapping[str, _Link]) -> None:
        self.home = home
        self._links = dict(links)
        self._store = SendStore(api_dir(home) / "sends.db")
        self._chans: dict[tuple[str, str], LinkChannel] = {}
        self._parked: dict[str, list[_LinkChannel]] = {p: [] for p in self._links}
        self._arrived = Changed()
        self._events: asyncio.Queue[LinkEvent] = asyncio.Queue(1024)
        self._reconnects: dict[str, LastReconnect] = {}
        self._last_cause: dict[str, str] = {}
        self._tasks: dict[str, list[asyncio.Task[None]]] = {}
        self._open_lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        await self._store.open()
        self._started = True
        for peer, link in self._links.items():
            self._run_link(peer, link)

    def _run_link(self, peer: str, link: _Link) -> None:
        parked = self._parked.setdefault(peer, [])
        if link.channels is not None:  # this side's own channels, offered again
            for info in link.channels.mux.channels():
                ch = link.channel(info.name) if info.local else None
                if ch is not None:
                    parked.append(ch)
        loop = asyncio.get_running_loop()
        self._tasks[peer] = [loop.create_task(self._dispatch(peer, link)),
                             loop.create_task(self._watch(peer, link))]
        self._arrived.notify()

    def add_link(self, peer: str, link: _Link) -> None:
        """A peer paired while ``p4 up`` runs: its started link joins (event ``paired``; the
        API's subscriptions start accepting its channels)."""
        self._links[peer] = link
        if self._started:
            self._run_link(peer, link)
        self._emit(LinkEvent(peer, "paired", {}))

    def remove_link(self, peer: str) -> None:
        """A peer forgotten while ``p4 up`` runs: it disappears from ``peers``/``status``, its
        parked and open channels are dropped (event ``forgotten``). Stopping the link and
        purging its queues is the caller's."""
        self._links.pop(peer, None)
        self._parked.pop(peer, None)
        for t in self._tasks.pop(peer, []):
            t.cancel()
        for key in [k for k in self._chans if k[0] == peer]:
            del self._chans[key]
        self._emit(LinkEvent(peer, "forgotten", {}))

    def _emit(self, event: LinkEvent) -> None:
        if self._events.full():
            self._events.get_nowait()  # the oldest goes; listeners see live state
        self._events.put_nowait(event)

    async def close(self) -> None:
        tasks = [t for ts in self._tasks.values() for t in ts]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        await self._store.close()

    def _link(self, peer: str) -> _Link:
        try:
            return self._links[peer]
        except KeyError:
            from p4ref.errors import ErrorCode

            raise P4Error(ErrorCode.PEER_UNKNOWN, "no link to that peer") from None

    # --- Backend ---

    def peers(self) -> Sequence[PeerInfo]:
        names = {p.device_id: p.name for p in Profile.open(self.home).peers()}
        return [PeerInfo(d, names.get(d, "")) for d in self._links]

    def status(self, peer: str) -> PeerStatus:
        link = self._link(peer)
        name = next((p.name for p in self.peers() if p.device_id == peer), "")
        state = _STATES.get(link.status, "failed")
        try:
            generation = link.active_generation or 0
        except AttributeError:  # not started
            generation = 0
        stats_of = getattr(link, "stats", None)
        try:
            st = stats_of() if callable(stats_of) else None
        except (AttributeError, P4Error):  # not started
            st = None
        if st is None:
            return PeerStatus(device_id=peer, name=name, state=state, generation=generation,
                              path="direct" if state == "connected" else None, rtt_ms=None,
                              bytes_sent=0, bytes_received=0, outbox_messages=0,
                              last_reconnect=self._reconnects.get(peer))
        path: PathType | None = None
        if state == "connected":
            path = "turn" if st.path == "turn" else "tor" if st.path == "tor" else "direct"
        last = self._reconnects.get(peer)
        if st.last_reconnect_at is not None:
            last = LastReconnect(st.last_reconnect_at,
                                 _CAUSES.get(st.last_reconnect_cause or "", "new generation"))
        return PeerStatus(device_id=peer, name=name, state=state, generation=generation,
                          path=path, rtt_ms=None if st.rtt_ms is None else round(st.rtt_ms, 1),
                          bytes_sent=st.bytes_sent, bytes_received=st.bytes_received,
                          outbox_messages=st.outbox_messages, last_reconnect=last)

    async def _wrap(self, peer: str, ch: _LinkChannel) -> LinkChannel:
        key = (peer, ch.name)
        wrapped = self._chans.get(key)
        if wrapped is None:
            wrapped = self._chans[key] = LinkChannel(peer, ch, self._store)
            await wrapped.recover()
        return wrapped

    async def open_channel(self, peer: str, name: str) -> LinkChannel:
        link = self._link(peer)
        async with self._open_lock:
            ch = link.channel(name) or await link.open_channel(name)
            return await self._wrap(peer, ch)

    async def accept_channel(self, peer: str, prefix: str) -> LinkChannel:
        self._link(peer)

        def ready() -> bool:
            return any(c.name.startswith(prefix) for c in self._parked.get(peer, []))

        await self._arrived.wait_for(ready)
        parked = self._parked[peer]
        ch = next(c for c in parked if c.name.startswith(prefix))
        parked.remove(ch)
        return await self._wrap(peer, ch)

    async def events(self) -> AsyncIterator[LinkEvent]:
        while True:
            yield await self._events.get()

    def release(self, channel: Channel) -> None:
        if not isinstance(channel, LinkChannel):
            return
        channel.release()
        parked = self._parked.get(channel.peer)
        if parked is not None and channel._ch not in parked:
            parked.append(channel._ch)
            self._arrived.notify()

    # --- tasks ---

    async def _dispatch(self, peer: str, link: _Link) -> None:
        while True:
            ch = await link.accept_channel()
            self._parked[peer].append(ch)
            self._arrived.notify()

    async def _watch(self, peer: str, link: _Link) -> None:
        async for ev in link.events():
            fields: dict[str, str | int | float | bool | None] = {}
            if ev.kind == "status":
                kind = "state"
                fields["state"] = _STATES.get(ev.status or "", "failed")
                fields["reason"] = self._last_cause.get(peer, "")
            else:
                kind = ev.kind
                if ev.code is not None:
                    fields["code"] = ev.code
                if ev.detail:
                    fields["detail"] = ev.detail
                if ev.kind in ("connection_failed", "connection_closed", "generation_failed",
                               "session_reset"):
                    self._last_cause[peer] = ev.detail or ev.kind.replace("_", " ")
            if ev.generation is not None:
                fields["generation"] = ev.generation
                if ev.kind == "connection_open" and ev.generation > 1:
                    self._reconnects[peer] = LastReconnect(
                        time.time(), self._last_cause.get(peer, "new generation"))
            self._emit(LinkEvent(peer, kind, fields))


@contextlib.asynccontextmanager
async def serve_links(home: Path, links: Mapping[str, _Link], *, transport: Transport = "auto",
                      port: int = 0) -> AsyncIterator[ApiServer]:
    """What ``p4 up`` runs: the local API over its started links, until the block ends::

        async with serve_links(home, links) as api:
            log.info("local API on %s", api.endpoint)
            await stop.wait()
    """
    backend = LinkBackend(home, links)
    await backend.start()
    server = ApiServer(home, backend, transport=transport, port=port)
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
        await backend.close()
