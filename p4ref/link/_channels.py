"""Channels on a link: asyncio :class:`Channel` objects over the pure
:class:`~p4ref.channels.ChannelMux` (spec/p4-05-channels-v1.md; contract in the module docstring
of :mod:`p4ref.link`).

Theory of operation
-------------------
Every channel item is one session message.  Sending: the mux turns ``write``/``open``/``close``
into items, each appended to the outbox; the mux's persistent state is written in the same
commit as the last item of the call (p4-05 CHN-30, ``SessionStore.append_outbox(...,
channel_state=...)``), and the call returns when the items are durable.  A write waits for
credit: the peer's limit on the channel's byte offset, raised only when the peer's application
confirms consumption, so a reader that stops stalls its channel only.

Receiving: every session delivery (durable in the inbox) is fed to ``mux.receive``.  An item
that carries channel bytes stays in the inbox until the application has confirmed every message
those bytes belong to; then its row is deleted in the same commit as the new mux state (the
consumed offset) and the CREDIT items the confirmation produced are appended.  Any other item
(OPEN, CREDIT, CLOSE, RESET, or data already consumed) is confirmed at once with the state.
After a restart the unconfirmed rows come again and the mux, restored with its consumed
offsets, trims what was consumed: each message reaches the application at least once, with the
same id ``(channel id, start offset)``, until it is confirmed [CHN-27, CHN-31].

Messages are contiguous byte ranges ended by ``end_of_message``; :meth:`Channel.send` writes a
whole message (in several credit-sized pieces if it must wait for credit).  The receiver hands
a message over whole, unless it reaches half the receive window minus one item: then it comes
in pieces (``end_of_message`` False), because the sender may not write beyond the consumed
offset plus half the window until the application consumed the beginning (p4-05 CHN-29).
:attr:`Channel.offset` is what this side has durably written (after a crash, an application
resumes a stream from there).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..channels import (
    DATA_HEADER_LEN,
    MAX_DATA,
    ChannelConfig,
    ChannelData,
    ChannelHalfClosed,
    ChannelMux,
    ChannelOpened,
    ChannelReset,
    ChannelsFailed,
    CreditGranted,
)
from ..errors import ErrorCode, LocalProtocolError, P4Error

if TYPE_CHECKING:
    from ._link import Delivery, Link

__all__ = ["Channel", "ChannelError", "ChannelMessage", "Channels"]

log = logging.getLogger(__name__)


class ChannelError(P4Error):
    """The channel was reset (``code``), or the channel layer failed."""


@dataclass(frozen=True, slots=True)
class ChannelMessage:
    """One message of the peer's direction of a channel; ``id`` is ``(channel, offset)``, the
    same after a restart.  Call :meth:`confirm` once it is consumed (credit is released then;
    confirming one message confirms every earlier one of the channel).

    ``end_of_message`` is False for a *piece* of a message that does not fit half the receive
    window: it is delivered in pieces (the rest follows at ``end``), since its sender cannot
    write the rest before this side consumes the beginning."""

    channel: Channel
    offset: int
    data: bytes
    end_of_message: bool = True

    @property
    def id(self) -> tuple[int, int]:
        return (self.channel.id, self.offset)

    @property
    def end(self) -> int:
        return self.offset + len(self.data)

    async def confirm(self) -> None:
        await self.channel._layer.confirm(self.channel, self.end)


@dataclass(eq=False)
class _Recv:
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    start: int = 0
    consumed: int = 0
    rows: list[tuple[int, tuple[bytes, int]]] = field(default_factory=list)  # (end, row id)


class Channel:
    """One channel of the link (create with :meth:`Link.open_channel`, or get the peer's from
    :meth:`Link.accept_channel`)."""

    def __init__(self, layer: Channels, chan: int, name: str, local: bool) -> None:
        self._layer = layer
        self.id = chan
        self.name = name
        self.local = local
        self._queue: asyncio.Queue[ChannelMessage | ChannelError | None] = asyncio.Queue()
        self._recv = _Recv()
        self._credit = asyncio.Event()
        self._writing = asyncio.Lock()  # one write at a time: a message's items stay together
        self.error: ChannelError | None = None
        self.peer_closed = False

    def __repr__(self) -> str:
        return f"Channel({self.id}, {self.name!r})"

    @property
    def offset(self) -> int:
        """Bytes this side has written on the channel (durable once the write returned)."""
        return self._layer.sent(self.id)

    async def send(self, message: bytes) -> None:
        """Write one whole message; returns when all of it is durable in the outbox.
        Concurrent sends on one channel are written one after the other, in the order of the
        calls, each message whole (never interleaved with another's bytes while one waits for
        credit)."""
        await self.write(message, end_of_message=True)

    async def write(self, data: bytes, *, end_of_message: bool) -> None:
        """Write bytes (streaming), waiting for credit as needed; returns once all of them
        are durable in the outbox.  SES_OUTBOX_FULL (session quota) or a reset channel
        interrupts it: what was written before is durable, :attr:`offset` says how far.
        Concurrent calls are serialised in call order; a message streamed in several calls
        is the caller's to keep together (one task per channel writes it)."""
        await self._layer.write(self, bytes(data), end_of_message)

    async def recv(self) -> ChannelMessage | None:
        """The next message, in order; ``None`` once the peer half-closed (and after that)."""
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)
            return None
        if isinstance(item, ChannelError):
            self._queue.put_nowait(item)
            raise item
        return item

    async def close(self) -> None:
        """Half-close: no more data from this side."""
        await self._layer.close(self)

    async def reset(self, code: int = 0) -> None:
        await self._layer.reset(self, code)


class Channels:
    """The channel layer of one link (built by :class:`~p4ref.link.Link` when enabled)."""

    def __init__(self, link: Link, config: ChannelConfig | None = None) -> None:
        self.link = link
        state = link.store.channel_state(link.peer_pub)
        config = config or ChannelConfig()
        self.mux = ChannelMux(low=link.machine.is_low, config=config, state=state)
        # a partial message is handed over before the sender could stall on it: the peer may
        # always write up to consumed + window // 2 (p4-05 CHN-29's hysteresis)
        self.piece = max(1, config.window // 2 - MAX_DATA)
        self._chans: dict[int, Channel] = {}
        self.incoming: asyncio.Queue[Channel] = asyncio.Queue()
        self.failed: ChannelError | None = None
        for info in self.mux.channels():  # restored: the peer's are offered again
            ch = Channel(self, info.chan, info.name, info.local)
            ch._recv.consumed = info.consumed
            ch._recv.start = info.consumed
            self._chans[info.chan] = ch
            if not info.local:
                self.incoming.put_nowait(ch)

    # ------------------------------------------------------------------ sending

    def _submit(self, items: list[bytes]) -> list[asyncio.Future[int]]:
        futs = []
        for i, item in enumerate(items):
            state = self.mux.persistent_state() if i == len(items) - 1 else None
            futs.append(self.link._append(item, state))
        return futs

    async def _wait(self, futs: list[asyncio.Future[int]]) -> None:
        if futs:
            await asyncio.shield(asyncio.gather(*futs))

    def sent(self, chan: int) -> int:
        for info in self.mux.channels():
            if info.chan == chan:
                return info.sent
        return 0

    def channel(self, name: str, local: bool = True) -> Channel | None:
        for ch in self._chans.values():
            if ch.name == name and ch.local == local:
                return ch
        return None

    def _check(self) -> None:
        if self.failed is not None:
            raise self.failed

    async def open(self, name: str) -> Channel:
        self._check()
        chan, items = self.mux.open(name)
        ch = Channel(self, chan, name, True)
        self._chans[chan] = ch
        await self._wait(self._submit(items))
        return ch

    async def write(self, ch: Channel, data: bytes, eom: bool) -> None:
        futs: list[asyncio.Future[int]] = []
        async with ch._writing:  # the items of one write stay together across credit waits;
            await self._write_items(ch, data, eom, futs)  # the next write may go on while
        await self._wait(futs)  # these become durable

    async def _write_items(self, ch: Channel, data: bytes, eom: bool,
                           futs: list[asyncio.Future[int]]) -> None:
        view = memoryview(data)
        pos = 0
        while pos < len(data):
            self._check()
            if ch.error is not None:
                raise ch.error
            credit = self.mux.credit(ch.id)
            if credit <= 0:
                ch._credit.clear()
                await ch._credit.wait()
                continue
            n = min(credit, len(data) - pos)
            items = -(-n // MAX_DATA)
            if not self.link.store.db.outbox_room(self.link.peer_pub, items,
                                                  n + items * DATA_HEADER_LEN):
                raise LocalProtocolError(ErrorCode.SES_OUTBOX_FULL,
                                         "the outbox is full; wait for the peer's ACKs")
            last = pos + n == len(data)
            futs += self._submit(self.mux.write(ch.id, bytes(view[pos:pos + n]),
                                                end_of_message=eom and last))
            pos += n

    async def close(self, ch: Channel) -> None:
        self._check()
        async with ch._writing:  # after the writes called before it
            futs = self._submit(self.mux.close(ch.id))
        await self._wait(futs)

    async def reset(self, ch: Channel, code: int) -> None:
        self._check()
        await self._wait(self._submit(self.mux.reset(ch.id, code)))

    def resync(self) -> None:
        """After every new connection and at start: re-announce the credit limits [CHN-42]."""
        if self.failed is None:
            self._submit(self.mux.resync())

    # ------------------------------------------------------------------ receiving

    def receive(self, d: Delivery) -> None:
        """One durable session delivery: an item of the peer's channel stream."""
        if self.failed is not None:
            return
        try:
            events = self.mux.receive(d.payload)
        except P4Error as exc:
            self._fail(ChannelError(exc.code, f"channel layer failed: {exc.message}"))
            return
        row_end: tuple[Channel, int] | None = None
        for ev in events:
            if isinstance(ev, ChannelOpened):
                ch = Channel(self, ev.chan, ev.name, False)
                self._chans[ev.chan] = ch
                self.incoming.put_nowait(ch)
            elif isinstance(ev, ChannelData):
                ch = self._chans[ev.chan]
                r = ch._recv
                if not r.parts:
                    r.start = ev.offset
                r.parts.append(ev.data)
                r.size += len(ev.data)
                if ev.end_of_message or r.size >= self.piece:
                    ch._queue.put_nowait(ChannelMessage(ch, r.start, b"".join(r.parts),
                                                        ev.end_of_message))
                    r.parts, r.size = [], 0
                row_end = (ch, ev.end)
            elif isinstance(ev, ChannelHalfClosed):
                ch = self._chans[ev.chan]
                ch.peer_closed = True
                ch._queue.put_nowait(None)
            elif isinstance(ev, ChannelReset):
                ch = self._chans[ev.chan]
                ch.error = ChannelError(ErrorCode.CHAN_CLOSED,
                                        f"channel {ev.chan} reset (0x{ev.code:04x})")
                ch._queue.put_nowait(ch.error)
                ch._credit.set()
            elif isinstance(ev, CreditGranted):
                self._chans[ev.chan]._credit.set()
            elif isinstance(ev, ChannelsFailed):
                self._fail(ChannelError(ErrorCode.CHAN_CLOSED,
                                        f"channel layer failed (0x{ev.code:04x})"))
                return
        futs = self._submit(self.mux.items_to_send())
        if row_end is not None:
            ch, end = row_end
            ch._recv.rows.append((end, d.id))
        else:  # nothing here waits for the application
            self.link._confirm_row(d.id, self.mux.persistent_state())
        for f in futs:
            f.add_done_callback(_log_failure)

    async def confirm(self, ch: Channel, end: int) -> None:
        """The application consumed ``ch``'s messages up to byte ``end``."""
        r = ch._recv
        if end <= r.consumed:
            return
        try:
            items = self.mux.consumed(ch.id, end - r.consumed)
        except LocalProtocolError as exc:
            if exc.code != ErrorCode.CHAN_UNKNOWN:
                raise
            items = []
        r.consumed = end
        state = self.mux.persistent_state()
        done = [row for e, row in r.rows if e <= end]
        r.rows = [(e, row) for e, row in r.rows if e > end]
        confirms = [self.link._confirm_row(row, state) for row in done]
        credits = self._submit(items)
        if confirms or credits:
            await asyncio.shield(asyncio.gather(*confirms, *credits))

    def _fail(self, err: ChannelError) -> None:
        log.error("%s", err)
        self.failed = err
        for ch in self._chans.values():
            ch.error = err
            ch._queue.put_nowait(err)
            ch._credit.set()


def _log_failure(f: asyncio.Future[int]) -> None:
    if not f.cancelled() and f.exception() is not None:
        log.error("channel item not stored: %r", f.exception())

