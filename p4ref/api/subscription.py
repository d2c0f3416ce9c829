"""Each app's subscription: the messages of its channels, held for it until it confirms them.

An app owns the channels whose names start with its prefix, on the peers its token names (the
token store guarantees no two apps own one channel). Its :class:`Subscription` accepts those
channels from the backend (plus the ones the app opens itself by sending), reads their messages
into one ordered list of :class:`Item`, and hands them out to the app's connections:

- **Quota.** Readers stop calling ``receive`` while the app holds ``quota_messages`` unconfirmed
  items or ``quota_bytes`` of data (one more message per channel may be in flight). The messages
  then wait in the link, whose channel credit is not released, so the peer stops sending on those
  channels: a slow app stalls only its own channels and never fills the peer's memory.
- **Leases.** An item handed to a WebSocket is leased to that connection until it closes; one
  handed out by ``POST /v1/receive`` is leased for ``lease_ms``. An item whose lease ended is
  handed out again (at-least-once), with the same id.
- **Order.** A channel's items go out in the channel's order, also across leases: while an item
  is leased to one holder, the channel's later items go to nobody else (a reader that died with
  item 1 leased would otherwise let the next reader apply item 2 first). The holder itself may
  take them (a WebSocket with credit reads ahead); other channels are not held back.
- **Confirm** removes the item and confirms it to the backend, which deletes it durably and
  releases its credit. Only items handed out to this app can be confirmed; any other id is
  "unknown", so an app cannot touch another app's messages even by guessing ids.
- **Durability** comes from the link: nothing is confirmed to it before the app confirms, so
  after a restart of ``p4 up`` the link hands the same messages out again and they get the same
  ids (an item id is a hash of peer, channel and the link's message id).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ._signal import Changed
from .backend import Backend, Channel, LinkEvent, Message
from .tokens import AppScope

__all__ = ["EventHub", "Item", "Subscription"]

log = logging.getLogger("p4.api")


def item_id(peer: str, channel: str, message_id: str) -> str:
    h = hashlib.sha256(f"{peer}\n{channel}\n{message_id}".encode()).hexdigest()
    return h[:32]


@dataclass(slots=True, eq=False)
class Item:
    """A message (or the peer's half-close, ``message is None``) waiting for the app."""

    id: str
    channel: Channel
    message: Message | None
    size: int
    holder: object | None = None
    lease_until: float | None = None  # loop time; None while held: until the holder lets go

    def free(self, now: float) -> bool:
        return self.holder is None or (self.lease_until is not None and self.lease_until <= now)


class Subscription:
    """One app's subscription (see the module docstring)."""

    def __init__(self, scope: AppScope, backend: Backend) -> None:
        self.scope = scope
        self._backend = backend
        self._items: dict[str, Item] = {}
        self._bytes = 0
        self._readers: dict[tuple[str, str], asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = Changed()
        self._started = False
        self._accepting: dict[str, asyncio.Task[None]] = {}
        self._channels: dict[tuple[str, str], Channel] = {}

    # --- channels ---

    def start(self) -> None:
        """Accept the app's channels on every peer it may use (idempotent)."""
        if self._started:
            return
        self._started = True
        self.refresh()

    def refresh(self) -> None:
        """The peer list changed (``paired``/``forgotten``): accept on the new peers, stop on
        the ones that went."""
        if not self._started:
            return
        now = {p.device_id for p in self._backend.peers() if self.scope.allows_peer(p.device_id)}
        for peer in now - set(self._accepting):
            self._accepting[peer] = self._spawn(self._accept(peer))
        for peer in set(self._accepting) - now:
            self._accepting.pop(peer).cancel()

    def watch(self, channel: Channel) -> None:
        """Read ``channel`` into the subscription (once per channel)."""
        key = (channel.peer, channel.name)
        self._channels[key] = channel
        if key not in self._readers:
            self._readers[key] = self._spawn(self._read(channel))

    def _spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, peer: str) -> None:
        try:
            while True:
                self.watch(await self._backend.accept_channel(peer, self.scope.prefix))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("app %s: accepting channels of %s failed", self.scope.name, peer)

    def _room(self) -> bool:
        return (len(self._items) < self.scope.quota_messages
                and self._bytes < self.scope.quota_bytes)

    async def _read(self, channel: Channel) -> None:
        try:
            while True:
                await self.changed.wait_for(self._room)
                message = await channel.receive()
                mid = "\x00closed" if message is None else message.id
                item = Item(item_id(channel.peer, channel.name, mid), channel, message,
                            0 if message is None else len(message.data))
                if item.id not in self._items:
                    self._items[item.id] = item
                    self._bytes += item.size
                    self.changed.notify()
                if message is None:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("app %s: reading channel %r failed", self.scope.name, channel.name)
        finally:
            self._readers.pop((channel.peer, channel.name), None)

    # --- handing out ---

    def pending(self) -> tuple[int, int]:
        """(unconfirmed items, their bytes)."""
        return len(self._items), self._bytes

    def _takeable(self, holder: object | None) -> Iterator[Item]:
        """The items ``holder`` may take now, oldest first: free, and no earlier item of their
        channel leased to another holder (docs/local-api.md §5.4)."""
        now = asyncio.get_running_loop().time()
        held: set[tuple[str, str]] = set()
        for it in self._items.values():
            key = (it.channel.peer, it.channel.name)
            if key in held:
                continue
            if it.free(now):
                yield it
            elif it.holder is not holder:
                held.add(key)

    def available(self, holder: object | None = None) -> bool:
        """Whether ``holder`` (None: a new one) could take an item now."""
        return next(self._takeable(holder), None) is not None

    def next_expiry(self) -> float | None:
        """Seconds until the first lease ends (None if no item is leased with a deadline)."""
        ends = [it.lease_until for it in self._items.values() if it.lease_until is not None]
        if not ends:
            return None
        return max(0.0, min(ends) - asyncio.get_running_loop().time())

    def take(self, holder: object, limit: int, lease: float | None = None) -> list[Item]:
        """Up to ``limit`` free items, oldest first, leased to ``holder`` (for ``lease`` s, or
        until :meth:`release` when None)."""
        now = asyncio.get_running_loop().time()
        out = list(itertools.islice(self._takeable(holder), limit))
        for it in out:
            it.holder = holder
            it.lease_until = None if lease is None else now + lease
        return out

    async def wait_available(self, timeout: float | None, holder: object | None = None) -> bool:
        """Wait until ``holder`` (None: a new one) could take an item (a lease running out
        counts); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.available(holder):
            step = self.next_expiry()
            if deadline is not None:
                left = deadline - loop.time()
                if left <= 0:
                    return False
                step = left if step is None else min(step, left)
            await self.changed.wait_for(lambda: self.available(holder), step)
        return True

    def release(self, holder: object) -> None:
        """``holder`` went away: its items are free for the app's other connections."""
        for it in self._items.values():
            if it.holder is holder:
                it.holder = None
                it.lease_until = None
        self.changed.notify()

    async def confirm(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """Confirm handed-out items: (confirmed ids, unknown ids)."""
        done: list[str] = []
        unknown: list[str] = []
        for i in ids:
            it = self._items.get(i)
            if it is None or it.holder is None:
                unknown.append(i)
                continue
            del self._items[i]
            self._bytes -= it.size
            self.changed.notify()
            if it.message is not None:
                await it.channel.confirm(it.message.id)
            done.append(i)
        return done, unknown

    async def close(self) -> None:
        """Stop reading; every channel goes back to the backend (``release``) with its
        unconfirmed messages, to be accepted again by whichever app owns it now."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for channel in self._channels.values():
            try:
                self._backend.release(channel)
            except Exception:
                log.exception("app %s: releasing channel %r failed", self.scope.name,
                              channel.name)
        self._channels.clear()
        self._items.clear()
        self._bytes = 0
        self.changed.notify()


class EventHub:
    """Fans the backend's events out to listeners (each with a bounded queue: a listener that
    does not keep up loses events, and the next one it gets says how many)."""

    QUEUE = 256

    def __init__(self, backend: Backend,
                 on_peers_changed: Callable[[], None] | None = None) -> None:
        self._backend = backend
        self._on_peers_changed = on_peers_changed
        self._listeners: dict[object, tuple[Callable[[str], bool], asyncio.Queue[LinkEvent],
                                            list[int]]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            async for event in self._backend.events():
                if event.kind in ("paired", "forgotten") and self._on_peers_changed:
                    self._on_peers_changed()
                for allows, queue, lost in self._listeners.values():
                    if not allows(event.peer):
                        continue
                    if queue.full():
                        lost[0] += 1
                    else:
                        queue.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("the backend's event stream failed")

    def listen(self, key: object, allows: Callable[[str], bool]) -> None:
        self._listeners[key] = (allows, asyncio.Queue(self.QUEUE), [0])

    def unlisten(self, key: object) -> None:
        self._listeners.pop(key, None)

    async def next(self, key: object) -> tuple[LinkEvent, int]:
        """The listener's next event and how many were lost before it."""
        _, queue, lost = self._listeners[key]
        event = await queue.get()
        n, lost[0] = lost[0], 0
        return event, n

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
