"""Concurrent writers on one channel (p4ref.link._channels): each message stays whole.

A writer whose message needs more credit than the peer granted waits for CREDIT with part of
the message written; another task's ``send`` on the same channel must not slip its bytes in
between (the bench's 256 concurrent 16 KiB sends once delivered 256 garbled messages when a
CREDIT arrived while woken writers had not run yet).  The link below is a stand-in that only
records the items handed to the session (no store, no transport): the channel layer itself is
what is tested."""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace
from typing import Any, cast

import pytest

from p4ref.channels import ChannelConfig, Credit, Data, decode_item, encode_item
from p4ref.errors import ErrorCode, LocalProtocolError
from p4ref.link._channels import Channels
from p4ref.link._link import Delivery


class StandIn:
    """What :class:`Channels` uses of a Link: it appends items, confirms rows."""

    def __init__(self) -> None:
        self.peer_pub = bytes(32)
        self.machine = SimpleNamespace(is_low=True)
        self.store = SimpleNamespace(channel_state=lambda _pub: None,
                                     db=SimpleNamespace(outbox_room=lambda *_a: True))
        self.items: list[bytes] = []

    def _append(self, item: bytes, _state: bytes | None) -> asyncio.Future[int]:
        self.items.append(item)
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.001, fut.set_result, len(self.items))
        return fut

    def _confirm_row(self, _row: Any, _state: bytes | None) -> asyncio.Future[bool]:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        fut.set_result(True)
        return fut


def messages(items: list[bytes], chan: int) -> list[bytes]:
    out, cur = [], b""
    for raw in items:
        it = decode_item(raw)
        if isinstance(it, Data) and it.chan == chan:
            cur += it.data
            if it.end_of_message:
                out.append(cur)
                cur = b""
    return out


def test_a_new_send_waits_for_the_message_that_waits_for_credit() -> None:
    """A's message needs more than the initial credit and waits with 16 KiB written; B's send
    is called, and in the same moment CREDIT arrives: B's first step runs before A is woken,
    finds credit, and must still not write before A's message is complete."""
    async def scenario() -> list[bytes]:
        link = StandIn()
        layer = Channels(cast(Any, link), ChannelConfig())
        ch = await layer.open("bulk")
        a = asyncio.ensure_future(ch.send(b"A" * 20_000))
        for _ in range(10):  # A writes what the initial window allows, then waits for credit
            await asyncio.sleep(0)
        assert not a.done() and layer.mux.credit(ch.id) == 0
        b = asyncio.ensure_future(ch.send(b"B" * 5_000))
        layer.receive(Delivery(bytes(16), 1, encode_item(Credit(ch.id, 100_000))))
        await asyncio.gather(a, b)
        return messages(link.items, ch.id)

    got = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert got == [b"A" * 20_000, b"B" * 5_000]


def test_concurrent_sends_are_never_interleaved() -> None:
    """Many senders, CREDIT in small steps: every message whole, in the order of the calls."""
    async def scenario() -> list[bytes]:
        link = StandIn()
        layer = Channels(cast(Any, link), ChannelConfig())
        ch = await layer.open("bulk")
        sends = []
        seq = itertools.count(1)
        limit = 16_384  # INITIAL_WINDOW: the peer grants more in small steps, each as a new
        for i, n in enumerate(SIZES):  # sender is called
            sends.append(asyncio.ensure_future(ch.send(bytes([65 + i]) * n)))
            limit += 7_000
            layer.receive(Delivery(bytes(16), next(seq), encode_item(Credit(ch.id, limit))))
            await asyncio.sleep(0)
        while not all(s.done() for s in sends):
            limit += 7_000
            layer.receive(Delivery(bytes(16), next(seq), encode_item(Credit(ch.id, limit))))
            await asyncio.sleep(0)
        await asyncio.gather(*sends)
        return messages(link.items, ch.id)

    got = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert [(m[:1], len(m)) for m in got] == [(bytes([65 + i]), n) for i, n in enumerate(SIZES)]
    assert all(len(set(m)) == 1 for m in got)


SIZES = [20_000, 9_000, 30_000, 5_000, 16_384, 40_000]


def test_send_starts_at_the_call_and_a_cancelled_send_frees_the_channel() -> None:
    """``Channel.send`` writes at the call when nothing waits before it and the credit covers
    the message (no task: the item is with the session before the caller yields); a send
    that must wait is queued behind.  Cancelling a send that waits for credit that will not
    come (the peer stopped reading) ends the wait at once, keeps what of it was written,
    withdraws the rest, and frees the channel for the next writes (p4ref.io.files relies on
    it once the receiver cancelled a transfer)."""
    async def scenario() -> None:
        link = StandIn()
        layer = Channels(cast(Any, link), ChannelConfig())
        ch = await layer.open("bulk")
        before = len(link.items)
        first = ch.send(b"1" * 100)
        assert len(link.items) == before + 1  # written at the call
        await first
        big = ch.send(b"A" * 20_000)  # more than the credit: written in part, then waits
        small = ch.send(b"B" * 10)  # queued behind it
        await asyncio.sleep(0.01)
        assert not big.done() and len(ch._writes) == 2
        small.cancel()
        big.cancel()
        await asyncio.sleep(0.01)
        assert not ch._writes and ch._writer is None  # no credit came: the cancel woke it
        layer.receive(Delivery(bytes(16), 1, encode_item(Credit(ch.id, 100_000))))
        n = len(link.items)
        last = ch.send(b"C" * 10)
        assert len(link.items) == n + 1  # the fast path again
        await last
        data = [decode_item(i) for i in link.items]
        written = b"".join(d.data for d in data if isinstance(d, Data) and d.chan == ch.id)
        assert written == b"1" * 100 + b"A" * (16_384 - 100) + b"C" * 10  # A's written part

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_writes_and_close_keep_call_order_and_errors_fail_only_their_write() -> None:
    """``write`` pieces, ``send`` and ``close`` called back to back while the first waits for
    credit go out in call order; a write after the half-close fails with CHAN_CLOSED and the
    writes before it are unharmed."""
    async def scenario() -> None:
        link = StandIn()
        layer = Channels(cast(Any, link), ChannelConfig())
        ch = await layer.open("bulk")
        a = ch.write(b"A" * 20_000, end_of_message=False)
        b = ch.write(b"a" * 10, end_of_message=True)
        c = ch.send(b"C" * 5)
        d = ch.close()
        e = ch.send(b"late")
        layer.receive(Delivery(bytes(16), 1, encode_item(Credit(ch.id, 100_000))))
        await asyncio.gather(a, b, c, d)
        with pytest.raises(LocalProtocolError) as exc:
            await e
        assert exc.value.code is ErrorCode.CHAN_CLOSED
        assert messages(link.items, ch.id) == [b"A" * 20_000 + b"a" * 10, b"C" * 5]

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_write_that_fails_half_way_fails_once_its_first_part_is_durable() -> None:
    """SES_OUTBOX_FULL in the middle of a write: its future fails, but only after what was
    written before the failure is durable (``Channel.offset`` then says how far)."""
    async def scenario() -> None:
        link = StandIn()
        rooms = iter([True, False])
        link.store.db.outbox_room = lambda *_a: next(rooms, False)
        held: list[asyncio.Future[int]] = []

        def append(item: bytes, _state: bytes | None) -> asyncio.Future[int]:
            link.items.append(item)
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            held.append(fut)
            return fut
        link._append = append  # type: ignore[method-assign]
        layer = Channels(cast(Any, link), ChannelConfig())
        opened = asyncio.ensure_future(layer.open("bulk"))
        await asyncio.sleep(0)
        for f in held:
            f.set_result(0)
        ch = await opened
        held.clear()
        w = ch.write(b"A" * 20_000, end_of_message=True)  # 16 KiB now, the rest needs credit
        layer.receive(Delivery(bytes(16), 1, encode_item(Credit(ch.id, 100_000))))
        await asyncio.sleep(0.01)
        assert not w.done() and held  # the outbox refused the rest; the first part not durable
        for f in held:
            f.set_result(0)
        with pytest.raises(LocalProtocolError) as exc:
            await w
        assert exc.value.code is ErrorCode.SES_OUTBOX_FULL

    asyncio.run(asyncio.wait_for(scenario(), 10))
