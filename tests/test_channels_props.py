"""Property tests of ChannelMux over a simulated durable session (p4-05 §4.2, §11).

Two sides, each a ChannelMux with a store: an outbox of items (appended in the same transaction
as the state the write/consume produced, CHN-2), an inbox of the peer's items (a DATA item is
confirmed only once the application consumed all it delivered, CHN-3), and the persisted state.
The session moves outbox items to the peer's inbox in order.  Hypothesis interleaves writes,
deliveries, consumption, restarts (from the persisted state, in-memory buffers lost), resyncs
and closes; the properties: every byte an application consumed is the next byte written on that
channel (never twice, never lost, in order) and, once everything is delivered and consumed, the
consumed bytes equal the written ones; a channel whose reader never consumes stalls no other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p4ref.channels import (
    ChannelConfig,
    ChannelData,
    ChannelHalfClosed,
    ChannelMux,
    ChannelOpened,
    ChannelReset,
    CreditGranted,
)

WINDOW = 4000
CFG = ChannelConfig(window=WINDOW, max_channels=8)


@dataclass
class Side:
    low: bool
    mux: ChannelMux
    state: bytes
    outbox: list[bytes] = field(default_factory=list)  # durable, not yet moved to the peer
    inbox: list[tuple[int, bytes]] = field(default_factory=list)  # durable rows (row id, item)
    processed: int = 0  # rows of the inbox handed to the mux in this lifetime
    pending: dict[int, tuple[int, int]] = field(default_factory=dict)  # row -> (chan, end)
    buffers: dict[int, bytearray] = field(default_factory=dict)  # delivered, not consumed (RAM)
    consumed_log: dict[int, bytearray] = field(default_factory=dict)  # durable app effects
    written: dict[int, bytearray] = field(default_factory=dict)
    closed_by_peer: set[int] = field(default_factory=set)
    rows: int = 0

    def commit(self, items: list[bytes]) -> None:
        """One store transaction: the items and the state that produced them (CHN-2)."""
        self.outbox += items
        self.state = self.mux.persistent_state()

    def restart(self) -> None:
        self.mux = ChannelMux(low=self.low, config=CFG, state=self.state)
        self.processed = 0  # the inbox delivers every unconfirmed row again
        self.pending.clear()
        self.buffers.clear()
        self.commit(self.mux.resync())  # CHN-42

    def live(self) -> list[int]:
        return [c.chan for c in self.mux.channels()]

    def consumed_of(self, chan: int) -> int:
        return next((c.consumed for c in self.mux.channels() if c.chan == chan), -1)

    def process_one(self) -> bool:
        if self.processed >= len(self.inbox):
            return False
        row, item = self.inbox[self.processed]
        self.processed += 1
        events = self.mux.receive(item)
        data = [e for e in events if isinstance(e, ChannelData)]
        for e in events:
            if isinstance(e, ChannelData):
                buf = self.buffers.setdefault(e.chan, bytearray())
                done = self.consumed_log.setdefault(e.chan, bytearray())
                # never twice, never a gap: the delivery starts where the application is
                assert e.offset == len(done) + len(buf), (e, len(done), len(buf))
                assert e.offset >= self.consumed_of(e.chan)
                buf += e.data
            elif isinstance(e, ChannelHalfClosed):
                self.closed_by_peer.add(e.chan)
            else:
                assert not isinstance(e, ChannelReset), e
                assert isinstance(e, ChannelOpened | CreditGranted), e
        if data:
            self.pending[row] = (data[0].chan, data[-1].end)
        else:
            self.inbox = [r for r in self.inbox if r[0] != row]
            self.processed -= 1
        self.commit(self.mux.items_to_send())
        return True

    def consume(self, chan: int, n: int) -> None:
        buf = self.buffers.get(chan)
        if not buf or chan not in self.live():
            return
        n = min(n, len(buf))
        self.consumed_log.setdefault(chan, bytearray()).extend(buf[:n])
        del buf[:n]
        items = self.mux.consumed(chan, n)
        # confirm the rows whose bytes are all consumed, in the same transaction (CHN-3)
        done = self.consumed_of(chan)
        gone = chan not in self.live()
        confirm = {r for r, (c, end) in self.pending.items() if c == chan and (gone or end <= done)}
        self.processed -= sum(1 for r, _ in self.inbox[: self.processed] if r in confirm)
        self.inbox = [r for r in self.inbox if r[0] not in confirm]
        for r in confirm:
            del self.pending[r]
        self.commit(items)

    def write(self, chan: int, n: int, fill: int) -> None:
        if chan not in self.live():
            return
        n = min(n, self.mux.credit(chan))
        if n <= 0:
            return
        data = bytes((fill + i) % 251 for i in range(n))
        items = self.mux.write(chan, data, end_of_message=n % 3 == 0)
        self.written.setdefault(chan, bytearray()).extend(data)
        self.commit(items)


def transfer(src: Side, dst: Side, k: int) -> None:
    """The session: the first ``k`` outbox items reach the peer's inbox, in order, durably."""
    for item in src.outbox[:k]:
        dst.rows += 1
        dst.inbox.append((dst.rows, item))
    del src.outbox[:k]


def make() -> tuple[Side, Side]:
    sides = []
    for low in (True, False):
        mux = ChannelMux(low=low, config=CFG)
        sides.append(Side(low, mux, mux.persistent_state()))
    a, b = sides
    for side, names in ((a, ("x", "y")), (b, ("z",))):
        for name in names:
            side.commit(side.mux.open(name)[1])
    return a, b


KINDS = ["write", "write", "transfer", "transfer", "process", "process", "consume", "consume",
         "restart", "resync", "close"]  # repeated kinds are drawn more often
OPS = st.lists(st.tuples(st.sampled_from(KINDS), st.booleans(), st.integers(0, 2),
                         st.integers(1, 9000)), min_size=20, max_size=80)


def run(ops: list[tuple[str, bool, int, int]], a: Side, b: Side,
        never_consume: int | None = None) -> None:
    for kind, first, which, n in ops:
        me, peer = (a, b) if first else (b, a)
        chans = sorted(set(me.live()) | set(me.written))
        chan = chans[which % len(chans)] if chans else 0
        if kind == "write":
            me.write(chan, n, n)
        elif kind == "transfer":
            transfer(me, peer, 1 + n % 4)
        elif kind == "process":
            for _ in range(1 + n % 4):
                me.process_one()
        elif kind == "consume" and chan != never_consume:
            me.consume(chan, n)
        elif kind == "restart":
            me.restart()
        elif kind == "resync":
            me.commit(me.mux.resync())
        elif kind == "close" and n % 5 == 0 and chan in me.live() and never_consume is None:
            info = next(c for c in me.mux.channels() if c.chan == chan)
            if info.state in ("OPEN", "HALF_CLOSED_REMOTE"):
                me.commit(me.mux.close(chan))


def drain(a: Side, b: Side, never_consume: int | None = None) -> None:
    for _ in range(10_000):
        moved = bool(a.outbox or b.outbox)
        transfer(a, b, len(a.outbox))
        transfer(b, a, len(b.outbox))
        while a.process_one() or b.process_one():
            moved = True
        for side in (a, b):
            for chan, buf in list(side.buffers.items()):
                if buf and chan != never_consume:
                    side.consume(chan, len(buf))
                    moved = True
        if not moved:
            return
    raise AssertionError("no quiescence")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_no_byte_twice_none_lost_across_restarts(ops: list[tuple[str, bool, int, int]]) -> None:
    a, b = make()
    run(ops, a, b)
    drain(a, b)
    for writer, reader in ((a, b), (b, a)):
        for chan, data in writer.written.items():
            assert bytes(reader.consumed_log.get(chan, b"")) == bytes(data), chan


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_a_stalled_channel_never_blocks_another(ops: list[tuple[str, bool, int, int]]) -> None:
    a, b = make()  # LOW's channels 0 ("x") and 2 ("y"); B never consumes channel 0
    run(ops, a, b, never_consume=0)
    drain(a, b, never_consume=0)
    for _ in range(3):  # channel 2 keeps moving whole windows while channel 0 is full
        a.write(0, 10**6, 1)
        a.write(2, 10**6, 2)
        drain(a, b, never_consume=0)
    assert a.mux.credit(0) == 0
    assert bytes(b.consumed_log.get(2, b"")) == bytes(a.written[2])
    assert len(a.written[2]) >= 3 * WINDOW
