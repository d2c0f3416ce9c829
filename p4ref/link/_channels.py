"""Channels on a link: asyncio :class:`Channel` objects over the pure
:class:`~p4ref.channels.ChannelMux` (spec/p4-05-channels-v1.md; contract in the module docstring
of :mod:`p4ref.link`).

Theory of operation
-------------------
Every channel item is one session message.  Sending: the mux turns ``write``/``open``/``close``
into items, each appended to the outbox; the mux's persistent state is written in the same
commit as the last item of the call (p4-05 CHN-30, ``SessionStore.append_outbox(...,
channel_state=mux.persistent_state)``: the store reads it once per commit, when it forms the
batch, so it describes exactly what that commit makes durable), and the call's future is done
when the items are durable.  A write waits for credit: the peer's limit on the channel's byte
offset, raised only when the peer's application confirms consumption, so a reader that stops
stalls its channel only.  Writes start at the call: one that finds its channel's queue empty
and enough credit is written at once (no task); the others wait in the channel's queue, in call
order, and its writer task writes them as credit comes (:meth:`Channels.enqueue`).

Receiving: every session delivery (stored in the inbox; handed over before its commit, see
:mod:`._link`) is fed to ``mux.receive``.  An item
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

Bytes from a file (p4-06 FIL-39).  :meth:`Channel.send_file_regions` writes a message some of
whose bytes were read from a file (:class:`~p4ref.io.fileref.FileRegions` says which): each DATA
item carrying file bytes is appended to the outbox as a reference (``ref=``, ``size=``, see
:mod:`p4ref.io.fileref`), every other item as its bytes; seq order, the commit of the channel
state with the last item (CHN-30) and "returns once durable" are those of :meth:`Channel.send`.
At a restart the link rebuilds those items from the file (:class:`OutboxRefs`).  An item whose
file no longer holds its bytes is not rebuilt: it becomes a RESET of its channel with
FILE_SOURCE_CHANGED (the peer resets the channel, and every later item of that channel is a late
item it ignores, CHN-17; its receiver keeps its verified prefix, p4-06 §4.1), and
:meth:`Channels.sources_changed` resets the channel here too, so its :class:`Channel` raises
:class:`ChannelError` with code FILE_SOURCE_CHANGED.  Other channels are not touched.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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
    ItemType,
    Reset,
    encode_item,
)
from ..errors import ErrorCode, LocalProtocolError, P4Error
from ..io.fileref import (
    FileRegions,
    RegionReader,
    SourceChanged,
    encode_ref,
    is_file_ref,
    ref_literal,
)

if TYPE_CHECKING:
    from ..io.session_store import OutboxEntry
    from ._link import Delivery, Link

__all__ = ["Channel", "ChannelError", "ChannelMessage", "Channels", "OutboxRefs"]

log = logging.getLogger(__name__)


class ChannelError(P4Error):
    """The channel was reset (``code``), or the channel layer failed.  ``reset_code``: the
    RESET's code (p4-05 §8.2) when the channel was reset: the peer's, or FILE_SOURCE_CHANGED
    when this side reset it at a start because a file it was sending changed (p4-06)."""

    def __init__(self, code: ErrorCode, message: str = "", *,
                 reset_code: int | None = None) -> None:
        super().__init__(code, message)
        self.reset_code = reset_code


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

    def confirm(self) -> asyncio.Future[None]:
        """Confirm now; the future is done once the confirmation is durable (``await
        msg.confirm()``, or keep the future and await it later: no task is needed to have
        many confirmations under way)."""
        return self.channel._layer.confirm(self.channel, self.end)


@dataclass(eq=False)
class _Recv:
    parts: list[bytes] = field(default_factory=list)
    size: int = 0
    start: int = 0
    consumed: int = 0
    # (end, row id) of the inbox rows not yet confirmed, in stream order (ends increase)
    rows: collections.deque[tuple[int, tuple[bytes, int]]] = field(
        default_factory=collections.deque)


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
        # writes not yet written whole, in call order; the first may be written in part
        # (waiting for credit); a writer task drains them (Channels._writer)
        self._writes: collections.deque[_Write] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self.error: ChannelError | None = None
        self.peer_closed = False

    def __repr__(self) -> str:
        return f"Channel({self.id}, {self.name!r})"

    @property
    def offset(self) -> int:
        """Bytes this side has written on the channel (durable once the write returned)."""
        return self._layer.sent(self.id)

    def send(self, message: bytes) -> asyncio.Future[None]:
        """Write one whole message, starting now; the future is done when all of it is
        durable in the outbox (``await ch.send(m)``, or keep the future: an application may
        have many sends under way without a task each).  Writes on one channel (``send``,
        :meth:`write`, :meth:`send_file_regions`, :meth:`close`) go out in the order of the
        calls, each whole: one waiting for credit holds the later ones back.  Cancelling the
        future withdraws what of the message is not written yet: one cancelled while waiting
        for credit is left cut short (the peer's reader would take the next message as its
        continuation), so cancel only what the peer no longer reads, e.g. after it ended a
        transfer (:mod:`p4ref.io.files` does)."""
        return self._layer.enqueue(self, bytes(message), True)

    def write(self, data: bytes, *, end_of_message: bool) -> asyncio.Future[None]:
        """Write bytes (streaming), waiting for credit as needed; the future is done once all
        of them are durable in the outbox.  SES_OUTBOX_FULL (session quota) or a reset channel
        fails it: what was written before is durable, :attr:`offset` says how far.  A message
        streamed in several calls is the caller's to keep together."""
        return self._layer.enqueue(self, bytes(data), end_of_message)

    def send_file_regions(self, message: bytes, regions: FileRegions) -> asyncio.Future[None]:
        """:meth:`send` of a message whose bytes at ``regions`` were read from a file: the
        items carrying them are stored in the outbox as references to the file, not copies
        (p4-06 FIL-39; module docstring).  The file must keep those bytes until the peer has
        acknowledged them; if it does not, a restart resets the channel (FILE_SOURCE_CHANGED)."""
        return self._layer.enqueue(self, bytes(message), True, regions)

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

    def close(self) -> asyncio.Future[None]:
        """Half-close: no more data from this side (after the writes called before it)."""
        return self._layer.enqueue(self, b"", False, close=True)

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

    def _submit(self, items: list[bytes], refs: list[str | None] | None = None
                ) -> list[asyncio.Future[int]]:
        """Append ``items`` in order, the channel state with the last one (CHN-30); an item
        with a reference in ``refs`` is stored as that reference (:meth:`write`)."""
        futs = []
        for i, item in enumerate(items):
            state = self.mux.persistent_state if i == len(items) - 1 else None
            ref = refs[i] if refs else None
            futs.append(self.link._append(item, state) if ref is None
                        else self.link._append(item, state, ref))
        return futs

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
        await _joined(self._submit(items))
        return ch

    def enqueue(self, ch: Channel, data: bytes, eom: bool,
                regions: FileRegions | None = None, *, close: bool = False
                ) -> asyncio.Future[None]:
        """Queue one write (or the half-close) of ``ch`` behind those called before it.  When
        none is waiting it is written at once, as far as the credit allows (the common case:
        no coroutine, no task, no lock); what must wait for credit is written by the channel's
        writer task, in call order (:meth:`_writer`)."""
        w = _Write(data, eom, regions, asyncio.get_running_loop().create_future(), close)
        if not ch._writes and self._advance(ch, w):
            return w.done
        ch._writes.append(w)
        if ch._writer is None:
            ch._writer = asyncio.ensure_future(self._writer(ch))
        return w.done

    def _advance(self, ch: Channel, w: _Write) -> bool:
        """Write what the credit allows of ``w``; True once it is finished (all of it
        written and its future linked to the items' durability, or failed)."""
        try:
            if w.close:
                self._check()
                w.futs += self._submit(self.mux.close(ch.id))
            else:
                while w.pos < len(w.data):
                    step = self._write_step(ch, w.data, w.eom, w.pos, w.futs, w.regions)
                    if step is None:
                        return False
                    w.pos = step
        except P4Error as exc:  # failed once what was written before it is durable
            _joined(w.futs).add_done_callback(functools.partial(_fail_with, w.done, exc))
            return True
        _joined(w.futs, w.done)
        return True

    async def _writer(self, ch: Channel) -> None:
        """Write the queued writes of ``ch`` in order, waiting for credit as needed: the
        items of one write stay together across the waits [CHN-5].  A write whose future was
        cancelled is dropped, also while it waits for credit (cancelling wakes the writer):
        what of it was written stays written (see :meth:`Channel.send`)."""
        try:
            while ch._writes:
                w = ch._writes[0]
                if w.done.cancelled():
                    ch._writes.popleft()
                    continue
                if self._advance(ch, w):
                    ch._writes.popleft()
                    continue
                if not w.watched:  # a cancel must not wait for credit that may never come
                    w.watched = True
                    w.done.add_done_callback(lambda _f: ch._credit.set())
                ch._credit.clear()
                await ch._credit.wait()
        finally:
            ch._writer = None

    def _write_step(self, ch: Channel, data: bytes, eom: bool, pos: int,
                    futs: list[asyncio.Future[int]], regions: FileRegions | None
                    ) -> int | None:
        """Write ``data[pos:]`` as far as the credit allows; the new position, or None
        without credit.  Raises SES_OUTBOX_FULL, CHAN_CLOSED once this side's direction is
        closed, or the channel's or the layer's error."""
        self._check()
        if ch.error is not None:
            raise ch.error
        credit = self.mux.credit(ch.id)
        if credit <= 0 and not self.mux.writable(ch.id):  # no credit will come
            raise LocalProtocolError(ErrorCode.CHAN_CLOSED,
                                     f"channel {ch.id} is closed for writing")
        if credit <= 0:
            return None
        n = min(credit, len(data) - pos)
        items = -(-n // MAX_DATA)
        if not self.link.store.db.outbox_room(self.link.peer_pub, items,
                                              n + items * DATA_HEADER_LEN):
            raise LocalProtocolError(ErrorCode.SES_OUTBOX_FULL,
                                     "the outbox is full; wait for the peer's ACKs")
        last = pos + n == len(data)
        chunk = data if n == len(data) else data[pos:pos + n]
        out = self.mux.write(ch.id, chunk, end_of_message=eom and last)
        refs = None if regions is None else self._refs(out, items, pos, n, regions)
        futs += self._submit(out, refs)
        return pos + n

    @staticmethod
    def _refs(out: list[bytes], items: int, pos: int, n: int, regions: FileRegions
              ) -> list[str | None]:
        """The outbox references of ``out``: its last ``items`` items are the DATA items of
        the written bytes ``[pos, pos + n)``, MAX_DATA each (the mux cuts them so, p4-05 §5.1);
        those carrying file bytes get one, every other item None (stored as its bytes)."""
        refs: list[str | None] = [None] * len(out)
        first = len(out) - items
        for k in range(items):
            a = pos + k * MAX_DATA
            b = min(a + MAX_DATA, pos + n)
            item = out[first + k]
            if item[0] != ItemType.DATA or len(item) != DATA_HEADER_LEN + b - a:
                continue  # not the layout expected: stored as its bytes, never a wrong ref
            spans = [(p + DATA_HEADER_LEN, off, m) for p, off, m in regions.within(a, b)]
            refs[first + k] = encode_ref(item, spans, regions.path)
        return refs

    async def reset(self, ch: Channel, code: int) -> None:
        self._check()
        await _joined(self._submit(self.mux.reset(ch.id, code)))

    def resync(self) -> None:
        """After every new connection and at start: re-announce the credit limits [CHN-42]."""
        if self.failed is None:
            self._submit(self.mux.resync())

    # ------------------------------------------------------------------ receiving

    def receive(self, d: Delivery) -> None:
        """One session delivery (its inbox row planned, maybe not committed yet): an item of
        the peer's channel stream."""
        if self.failed is not None:
            return
        try:
            events = self.mux.receive(d.payload)
        except P4Error as exc:
            self._fail(ChannelError(exc.code, f"channel layer failed: {exc.message}"))
            return
        row_end: tuple[Channel, int] | None = None
        for ev in events:
            if isinstance(ev, ChannelData):  # the usual one first
                ch = self._chans[ev.chan]
                r = ch._recv
                if not r.parts and ev.end_of_message:  # a whole message in one item
                    ch._queue.put_nowait(ChannelMessage(ch, ev.offset, ev.data, True))
                else:
                    if not r.parts:
                        r.start = ev.offset
                    r.parts.append(ev.data)
                    r.size += len(ev.data)
                    if ev.end_of_message or r.size >= self.piece:
                        ch._queue.put_nowait(ChannelMessage(ch, r.start, b"".join(r.parts),
                                                            ev.end_of_message))
                        r.parts, r.size = [], 0
                row_end = (ch, ev.end)
            elif isinstance(ev, ChannelOpened):
                ch = Channel(self, ev.chan, ev.name, False)
                self._chans[ev.chan] = ch
                self.incoming.put_nowait(ch)
            elif isinstance(ev, ChannelHalfClosed):
                ch = self._chans[ev.chan]
                ch.peer_closed = True
                ch._queue.put_nowait(None)
            elif isinstance(ev, ChannelReset):
                ch = self._chans[ev.chan]
                ch.error = ChannelError(ErrorCode.CHAN_CLOSED,
                                        f"channel {ev.chan} reset (0x{ev.code:04x})",
                                        reset_code=ev.code)
                ch._queue.put_nowait(ch.error)
                ch._credit.set()
            elif isinstance(ev, CreditGranted):
                self._chans[ev.chan]._credit.set()
            elif isinstance(ev, ChannelsFailed):
                self._fail(ChannelError(ErrorCode.CHAN_CLOSED,
                                        f"channel layer failed (0x{ev.code:04x})"))
                return
        items = self.mux.items_to_send()
        futs = self._submit(items) if items else ()
        if row_end is not None:
            ch, end = row_end
            ch._recv.rows.append((end, d.id))
        else:  # nothing here waits for the application
            self.link._confirm_row(d.id, self.mux.persistent_state)
        for f in futs:
            f.add_done_callback(_log_failure)

    def confirm(self, ch: Channel, end: int) -> asyncio.Future[None]:
        """The application consumed ``ch``'s messages up to byte ``end``: done now, durable
        when the future is."""
        r = ch._recv
        if end <= r.consumed:
            return _joined(())
        try:
            items = self.mux.consumed(ch.id, end - r.consumed)
        except LocalProtocolError as exc:
            if exc.code != ErrorCode.CHAN_UNKNOWN:
                raise
            items = []
        r.consumed = end
        state = self.mux.persistent_state  # read when the commit is formed (CHN-30)
        confirms: list[asyncio.Future[None]] = []
        while r.rows and r.rows[0][0] <= end:
            confirms.append(self.link._confirm_row(r.rows.popleft()[1], state))
        if len(confirms) == 1 and not items:  # the usual case: one message, one row: the
            return confirms[0]  # store's own future (cancelling it drops no write)
        return _joined([*confirms, *self._submit(items)] if items else confirms)

    def sources_changed(self, changed: dict[int, str]) -> None:
        """At a start: the outbox items of these channels (id -> why) named file bytes that
        their file no longer holds; the session replays them as RESETs with
        FILE_SOURCE_CHANGED (:class:`OutboxRefs`).  Reset each channel here too (p4-05 §8.2,
        one more RESET the peer ignores as a late item, CHN-17), so that it is forgotten and
        its :class:`Channel` raises FILE_SOURCE_CHANGED; the other channels go on."""
        for chan, why in sorted(changed.items()):
            ch = self._chans.get(chan)
            name = ch.name if ch is not None else "?"
            log.warning("channel %d (%s): %s; it is reset (FILE_SOURCE_CHANGED)", chan, name,
                        why)
            try:
                items = self.mux.reset(chan, int(ErrorCode.FILE_SOURCE_CHANGED))
            except LocalProtocolError:  # not live here any more: nothing to reset
                items = []
            for f in self._submit(items):
                f.add_done_callback(_log_failure)
            if ch is not None:
                ch.error = ChannelError(ErrorCode.FILE_SOURCE_CHANGED,
                                        f"channel {chan} ({name}) reset: {why}",
                                        reset_code=int(ErrorCode.FILE_SOURCE_CHANGED))
                ch._queue.put_nowait(ch.error)
                ch._credit.set()

    def _fail(self, err: ChannelError) -> None:
        log.error("%s", err)
        self.failed = err
        for ch in self._chans.values():
            ch.error = err
            ch._queue.put_nowait(err)
            ch._credit.set()


@dataclass(eq=False, slots=True)
class _Write:
    """One queued write of a channel (:meth:`Channels.enqueue`): ``pos`` bytes of ``data``
    written so far, ``futs`` the store futures of their items."""

    data: bytes
    eom: bool
    regions: FileRegions | None
    done: asyncio.Future[None]
    close: bool = False
    pos: int = 0
    futs: list[asyncio.Future[int]] = field(default_factory=list)
    watched: bool = False  # a cancel of ``done`` wakes the writer


def _joined(futs: Sequence[asyncio.Future[Any]],
            out: asyncio.Future[None] | None = None) -> asyncio.Future[None]:
    """One future (``out``, or a new one) for ``futs``: done when all of them are, failed by
    the first that fails.  Cancelling it cancels none of them: a store future's completion
    hands its message to the machine.  (What ``asyncio.shield(asyncio.gather(...))`` does,
    without the extra futures and loop turns: this is on every send and confirm.)"""
    if out is None:
        out = asyncio.get_running_loop().create_future()
    if not futs:
        if not out.done():
            out.set_result(None)
        return out
    done = _Join(out, len(futs))
    for f in futs:
        f.add_done_callback(done)
    return out


class _Join:
    """The done callback of :func:`_joined`: one small object, not a closure and its cells
    (it lives until the commit; docs/performance.md)."""

    __slots__ = ("left", "out")

    def __init__(self, out: asyncio.Future[None], left: int) -> None:
        self.out = out
        self.left = left

    def __call__(self, f: asyncio.Future[Any]) -> None:
        self.left -= 1
        exc = (P4Error(ErrorCode.INTERNAL_ERROR, "a store write was cancelled")
               if f.cancelled() else f.exception())  # retrieved, even if ``out`` is done
        if self.out.done():
            return
        if exc is not None:
            self.out.set_exception(exc)
        elif not self.left:
            self.out.set_result(None)


def _fail_with(out: asyncio.Future[None], exc: BaseException, _f: asyncio.Future[None]
               ) -> None:
    if not out.done():
        out.set_exception(exc)


def _log_failure(f: asyncio.Future[int]) -> None:
    if not f.cancelled() and f.exception() is not None:
        log.error("channel item not stored: %r", f.exception())


class OutboxRefs:
    """The ``resolve`` of ``SessionStore.session_state`` for a link's outbox: rebuilds an item
    stored as a file reference from the file (:mod:`p4ref.io.fileref`).  When the file no
    longer holds the item's bytes, the item becomes a RESET of its channel with
    FILE_SOURCE_CHANGED (p4-05 §8.2), never different bytes, and :attr:`changed` records the
    channel (id -> why) for :meth:`Channels.sources_changed`.  The outbox row itself is not
    touched: resolved again at a later start, it gives the same answer.  Runs in the store's
    writer thread; :meth:`close` once the state is read."""

    def __init__(self) -> None:
        self.reader = RegionReader()
        self.changed: dict[int, str] = {}
        self.resolved = 0

    def __call__(self, entry: OutboxEntry) -> bytes:
        ref = entry.ref
        if ref is None or not is_file_ref(ref):
            raise P4Error(ErrorCode.PROFILE_CORRUPT,
                          f"outbox seq {entry.seq}: an unknown kind of reference")
        try:
            item = self.reader.resolve(ref, entry.size)
        except SourceChanged as exc:
            head = ref_literal(ref)
            if len(head) < DATA_HEADER_LEN or head[0] != ItemType.DATA:
                raise P4Error(ErrorCode.PROFILE_CORRUPT,
                              f"outbox seq {entry.seq}: a file reference that is no DATA item"
                              ) from exc
            chan = int.from_bytes(head[2:10], "big")
            self.changed.setdefault(chan, exc.message)
            return encode_item(Reset(chan, int(ErrorCode.FILE_SOURCE_CHANGED)))
        self.resolved += 1
        return item

    def close(self) -> None:
        self.reader.close()
