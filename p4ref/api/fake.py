"""An in-memory :class:`~p4ref.api.backend.Backend` for tests and the client examples.

It plays both our link and the peers behind it: a test makes a peer send
(:meth:`FakeBackend.inject`, or :meth:`FakeBackend.peer_send`, which waits for channel credit as a
real sender would), close a channel, or change state, and reads what the app sent
(:meth:`FakeChannel.sent`). ``echo=True`` makes every peer send back what it
receives, on the same channel (the client examples use it).
:meth:`FakeBackend.restart` forgets what was handed out but not confirmed, as a process restart
does, so the same messages come back with the same ids.

Semantics kept from the real link: ``send`` is "durable" when it returns (after
``commit_delay`` s), idempotency keys survive (they live in the backend, not the server), message
ids are stable until confirmed, and a channel's credit (``window`` unconfirmed messages) is
released only by ``confirm``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

from p4ref.errors import ErrorCode, P4Error

from ._signal import Changed
from .backend import (
    BackendError,
    Channel,
    LinkEvent,
    Message,
    PeerInfo,
    PeerStatus,
    SendResult,
)

__all__ = ["FakeBackend", "FakeChannel"]


class FakeChannel:
    """One channel of :class:`FakeBackend`; satisfies :class:`~p4ref.api.backend.Channel`."""

    def __init__(self, backend: FakeBackend, peer: str, name: str) -> None:
        self._backend = backend
        self._peer = peer
        self._name = name
        self._inbox: list[Message] = []  # unconfirmed, in order
        self._handed = 0  # how many of _inbox receive() has returned since the last restart
        self._next_id = 0
        self._peer_closed = False
        self._closed = False
        self._outgoing: list[tuple[str, bytes]] = []
        self._changed = Changed()

    @property
    def peer(self) -> str:
        return self._peer

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        """We half-closed (the app called close)."""
        return self._closed

    def sent(self) -> list[bytes]:
        """What the app sent on this channel, in order (the peer's view)."""
        return [data for _, data in self._outgoing]

    def unconfirmed(self) -> int:
        return len(self._inbox)

    async def send(self, data: bytes, *, idempotency_key: str) -> SendResult:
        b = self._backend
        digest = hashlib.sha256(data).digest()
        seen = b.keys.get(idempotency_key)
        if seen is not None:
            where, old_digest, mid = seen
            if where != (self._peer, self._name) or old_digest != digest:
                raise BackendError("IDEMPOTENCY_CONFLICT",
                                   "this idempotency key was used for another message")
            return SendResult(mid, replayed=True)
        if self._closed:
            raise BackendError("CHANNEL_CLOSED", f"channel {self._name!r} is closed for sending")
        if b.outbox_full:
            raise P4Error(ErrorCode.SES_OUTBOX_FULL, "the outbox is full")
        mid = f"out-{len(b.keys) + 1}"
        b.keys[idempotency_key] = ((self._peer, self._name), digest, mid)  # planned at once
        if b.commit_delay:
            await asyncio.sleep(b.commit_delay)
        self._outgoing.append((mid, data))
        if b.echo:
            self.inject(data)
        return SendResult(mid, replayed=False)

    def inject(self, data: bytes) -> str:
        """The peer sends ``data`` (credit not checked); returns the message id."""
        self._next_id += 1
        mid = f"m{self._next_id}"
        self._inbox.append(Message(mid, data))
        self._notify()
        return mid

    async def peer_send(self, data: bytes) -> str:
        """The peer sends ``data`` once the channel has credit (fewer than ``window``
        unconfirmed messages): the backpressure a real sender sees."""
        await self._changed.wait_for(lambda: len(self._inbox) < self._backend.window)
        return self.inject(data)

    def peer_close(self) -> None:
        self._peer_closed = True
        self._notify()

    async def receive(self) -> Message | None:
        await self._changed.wait_for(
            lambda: self._handed < len(self._inbox) or self._peer_closed)
        if self._handed < len(self._inbox):
            self._handed += 1
            return self._inbox[self._handed - 1]
        return None

    async def confirm(self, message_id: str) -> None:
        for i, m in enumerate(self._inbox):
            if m.id == message_id:
                del self._inbox[i]
                if i < self._handed:
                    self._handed -= 1
                self._backend.confirmed.append((self._peer, self._name, message_id))
                self._notify()
                return

    async def close(self) -> None:
        self._closed = True

    def restart(self) -> None:
        self._handed = 0
        self._notify()

    def _notify(self) -> None:
        self._changed.notify()


class FakeBackend:
    """In-memory backend; see the module docstring."""

    def __init__(self, peers: Sequence[PeerInfo] = (), *, echo: bool = False,
                 window: int = 64, commit_delay: float = 0.0) -> None:
        self._peers = list(peers)
        self._status = {p.device_id: PeerStatus(
            device_id=p.device_id, name=p.name, state="connected", generation=1, path="direct",
            rtt_ms=12.5, bytes_sent=0, bytes_received=0, outbox_messages=0,
            last_reconnect=None) for p in peers}
        self.echo = echo
        self.window = window
        self.commit_delay = commit_delay
        self.outbox_full = False
        self.keys: dict[str, tuple[tuple[str, str], bytes, str]] = {}
        self.confirmed: list[tuple[str, str, str]] = []
        self.channels: dict[tuple[str, str], FakeChannel] = {}
        self._incoming: dict[str, list[FakeChannel]] = {}
        self._arrived = Changed()
        self._events: asyncio.Queue[LinkEvent] = asyncio.Queue()

    # --- the Backend protocol ---

    def peers(self) -> Sequence[PeerInfo]:
        return list(self._peers)

    def status(self, peer: str) -> PeerStatus:
        try:
            return self._status[peer]
        except KeyError:
            raise P4Error(ErrorCode.PEER_UNKNOWN, "no such peer") from None

    async def open_channel(self, peer: str, name: str) -> FakeChannel:
        self.status(peer)
        ch = self.channels.get((peer, name))
        if ch is None:
            ch = self.channels[(peer, name)] = FakeChannel(self, peer, name)
        return ch

    async def accept_channel(self, peer: str, prefix: str) -> FakeChannel:
        self.status(peer)

        def ready() -> bool:
            return any(c.name.startswith(prefix) for c in self._incoming.get(peer, []))

        await self._arrived.wait_for(ready)
        pending = self._incoming[peer]
        ch = next(c for c in pending if c.name.startswith(prefix))
        pending.remove(ch)
        return ch

    async def events(self) -> AsyncIterator[LinkEvent]:
        while True:
            yield await self._events.get()

    # --- the test's side: what the peers do ---

    def release(self, channel: Channel) -> None:
        if not isinstance(channel, FakeChannel):
            return
        channel.restart()
        pending = self._incoming.setdefault(channel.peer, [])
        if channel not in pending:
            pending.append(channel)
        self._arrived.notify()

    def channel(self, peer: str, name: str) -> FakeChannel:
        """The channel ``name`` with ``peer``; if the peer has to open it, it does so now."""
        ch = self.channels.get((peer, name))
        if ch is None:
            self.status(peer)
            ch = self.channels[(peer, name)] = FakeChannel(self, peer, name)
            self._incoming.setdefault(peer, []).append(ch)
            self._arrived.notify()
        return ch

    def inject(self, peer: str, name: str, data: bytes) -> str:
        return self.channel(peer, name).inject(data)

    async def peer_send(self, peer: str, name: str, data: bytes) -> str:
        return await self.channel(peer, name).peer_send(data)

    def set_status(self, peer: str, **changes: object) -> None:
        self._status[peer] = replace(self._status[peer], **changes)  # type: ignore[arg-type]

    def add_peer(self, peer: PeerInfo) -> None:
        """A peer paired while running (event ``paired``)."""
        self._peers.append(peer)
        self._status[peer.device_id] = PeerStatus(
            device_id=peer.device_id, name=peer.name, state="connecting", generation=0,
            path=None, rtt_ms=None, bytes_sent=0, bytes_received=0, outbox_messages=0,
            last_reconnect=None)
        self.emit(LinkEvent(peer.device_id, "paired"))

    def remove_peer(self, device_id: str) -> None:
        """A peer forgotten while running (event ``forgotten``)."""
        self._peers = [p for p in self._peers if p.device_id != device_id]
        self._status.pop(device_id, None)
        self.emit(LinkEvent(device_id, "forgotten"))

    def emit(self, event: LinkEvent) -> None:
        self._events.put_nowait(event)

    def restart(self) -> None:
        """As after a restart: every open channel is offered to ``accept_channel`` again and
        every unconfirmed message will be received again, with the same id."""
        self._incoming = {}
        for (peer, _), ch in self.channels.items():
            ch.restart()
            self._incoming.setdefault(peer, []).append(ch)  # offered again to accept_channel
        self._arrived.notify()
