"""Two session machines wired back to back (p4-04): generations, faults, crashes, exactly-once.

The network here is a set of connections, each a pair of FIFO queues (a data channel is
reliable and ordered, SES-26, SES-27), that the schedule may deliver in any interleaving, kill with
frames in flight, or outlive; peers may crash and restart from their persistent state.  The
check is the promise of §9.6: every message given to ``send`` reaches the peer's committed
inbox exactly once, in order.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from nacl.signing import SigningKey

from p4ref.framing import FrameType, Path, decode_frame
from p4ref.session import (
    ConnState,
    MessageReceived,
    ReconnectNeeded,
    SessionConfig,
    SessionMachine,
    SessionReset,
)

SEED_A, SEED_B = bytes(range(32)), bytes(range(100, 132))
PUB_A, PUB_B = bytes(SigningKey(SEED_A).verify_key), bytes(SigningKey(SEED_B).verify_key)


@dataclass
class Peer:
    name: str
    seed: bytes
    peer_pub: bytes
    rng: random.Random
    config: SessionConfig = field(default_factory=SessionConfig)
    m: SessionMachine = field(init=False)
    inbox: list[bytes] = field(default_factory=list)  # committed (durable) inbox
    pending: list[tuple[int, bytes]] = field(default_factory=list)  # delivered, not committed
    sent: list[bytes] = field(default_factory=list)
    wants_reconnect: bool = False
    resets: list[SessionReset] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.m = SessionMachine(self.seed, self.peer_pub, rng=self.rng.randbytes,
                                config=self.config)

    def crash_restart(self) -> None:
        state = self.m.persistent_state()
        self.m = SessionMachine(self.seed, self.peer_pub, rng=self.rng.randbytes, state=state,
                                config=self.config)
        self.pending.clear()  # never committed: the peer will send them again

    def drain_events(self) -> None:
        while (e := self.m.next_event()) is not None:
            if isinstance(e, MessageReceived):
                self.pending.append((e.seq, e.payload))
            elif isinstance(e, ReconnectNeeded):
                self.wants_reconnect = True
            elif isinstance(e, SessionReset):
                self.resets.append(e)
                # delivered under the old numbering: stored, never committed (SES-57)
                self.inbox.extend(p for _, p in self.pending)
                self.pending.clear()

    def commit(self, now: int) -> None:
        if self.pending:
            self.inbox.extend(p for _, p in self.pending)
            self.m.inbox_committed(self.pending[-1][0], now)
            self.pending.clear()


class Net:
    def __init__(self, a: Peer, b: Peer) -> None:
        self.peers = {"A": a, "B": b}
        self.queues: dict[tuple[int, str], deque[bytes]] = {}  # (conn, receiver) -> frames
        self.alive: set[int] = set()
        self.gen = 0
        self.now = 1_000

    def other(self, name: str) -> str:
        return "B" if name == "A" else "A"

    def flush(self) -> None:
        for name, p in self.peers.items():
            for conn, data in p.m.data_to_send():
                if conn in self.alive:
                    self.queues[(conn, self.other(name))].append(data)
            p.drain_events()

    def open_generation(self) -> int:
        self.gen = max(self.gen, self.peers["A"].m.s.generation,
                       self.peers["B"].m.s.generation) + 1
        g = self.gen
        fa, fb = bytes([g % 256]) * 32, bytes([(g + 128) % 256]) * 32
        self.alive.add(g)
        self.queues[(g, "A")], self.queues[(g, "B")] = deque(), deque()
        self.peers["A"].m.open(g, g, Path.DATACHANNEL, fa, fb, self.now)
        self.peers["B"].m.open(g, g, Path.DATACHANNEL, fb, fa, self.now)
        for p in self.peers.values():
            p.wants_reconnect = False
        self.flush()
        return g

    def open_tor(self) -> int:
        """A session connection on the kept-open onion stream (generation 0, SES-2)."""
        self.tor_id = getattr(self, "tor_id", 10_000) + 1
        t = self.tor_id
        ba, bb = bytes([1]) * 32, bytes([2]) * 32  # SHA-256 of each side's RV_HELLO body
        self.alive.add(t)
        self.queues[(t, "A")], self.queues[(t, "B")] = deque(), deque()
        self.peers["A"].m.open(t, 0, Path.TOR, ba, bb, self.now)
        self.peers["B"].m.open(t, 0, Path.TOR, bb, ba, self.now)
        self.flush()
        return t

    def deliver_one(self, conn: int, to: str) -> bool:
        q = self.queues.get((conn, to))
        if not q:
            return False
        data = q.popleft()
        p = self.peers[to]
        if conn in p.m._conns:
            p.m.receive_data(conn, data, self.now)
        self.flush()
        return True

    def kill(self, conn: int) -> None:
        """The transport dies: frames in flight are lost, both ends see it close."""
        if conn not in self.alive:
            return
        self.alive.discard(conn)
        for name, p in self.peers.items():
            self.queues[(conn, name)].clear()
            if conn in p.m._conns:
                p.m.receive_data(conn, b"", self.now)
        self.flush()

    def crash(self, name: str) -> None:
        p = self.peers[name]
        for conn in list(self.alive):
            if conn in p.m._conns:
                self.kill(conn)
        p.crash_restart()

    def tick(self, ms: int) -> None:
        self.now += ms
        for p in self.peers.values():
            p.m.handle_timer(self.now)
        self.flush()

    def settle(self, rounds: int = 2000) -> None:
        """Deliver everything, commit, and reconnect until both outboxes are empty."""
        for _ in range(rounds):
            moved = False
            for (conn, to), q in list(self.queues.items()):
                while q:
                    self.deliver_one(conn, to)
                    moved = True
            for p in self.peers.values():
                p.commit(self.now)
            self.tick(50)
            a, b = self.peers["A"].m, self.peers["B"].m
            if (a.active is None or b.active is None) and not any(self.queues.values()):
                self.open_generation()
                moved = True
            if not moved and not a.s.outbox and not b.s.outbox and not a.s.tx - a.s.acked \
                    and not b.s.tx - b.s.acked and not any(self.queues.values()):
                return
        raise AssertionError("did not settle")


def _pair(seed: int, config: SessionConfig | None = None) -> tuple[Net, Peer, Peer]:
    r = random.Random(seed)
    cfg = config or SessionConfig()
    a = Peer("A", SEED_A, PUB_B, random.Random(r.random()), cfg)
    b = Peer("B", SEED_B, PUB_A, random.Random(r.random()), cfg)
    return Net(a, b), a, b


def _send(p: Peer, net: Net, payload: bytes) -> bool:
    p.m.send(payload, net.now)
    p.sent.append(payload)
    net.flush()
    return True


def _check_exactly_once(a: Peer, b: Peer) -> None:
    assert b.inbox == a.sent, "A -> B lost, duplicated or reordered"
    assert a.inbox == b.sent, "B -> A lost, duplicated or reordered"


def test_one_generation_round_trip() -> None:
    """SES-5, SES-6, SES-26, SES-27, SES-38: messages both ways, acknowledged and removed from
    the outbox."""
    net, a, b = _pair(1)
    net.open_generation()
    net.settle()
    for i in range(40):
        _send(a if i % 3 else b, net, b"m%d" % i)
    net.settle()
    _check_exactly_once(a, b)
    assert a.m.s.outbox == {} and b.m.s.outbox == {}
    assert a.m.status == "connected"


def test_late_frame_of_old_generation_after_new_generations_first_frame() -> None:
    """SES-26, SES-27, SES-31, SES-32, SES-33, SES-34: generation 2 takes over while frames of
    generation 1 are still in flight; the late frames of 1 arrive after 2's first frame and
    are neither lost nor delivered twice; 1 then ends with SES_END and closes."""
    net, a, b = _pair(2)
    g1 = net.open_generation()
    net.settle()
    for i in range(1, 6):
        _send(a, net, b"x%d" % i)  # seq 1..5 queued on generation 1
    net.deliver_one(g1, "B")
    net.deliver_one(g1, "B")  # B has 1, 2; 3, 4, 5 still in flight on generation 1
    g2 = net.open_generation()
    # run generation 2's handshake only
    for _ in range(2):  # HELLO both ways, then AUTH both ways
        net.deliver_one(g2, "A")
        net.deliver_one(g2, "B")
    assert a.m.active == g2 and b.m.active == g2
    _send(a, net, b"x6")
    # generation 2 replays from B's announced position (2): 3, 4, 5, then 6
    on_g2 = [decode_frame(f, Path.DATACHANNEL) for f in net.queues[(g2, "B")]]
    seqs = [int.from_bytes(f.body[:8], "big") for f in on_g2 if f.type == FrameType.SES_MSG]
    assert seqs == [3, 4, 5, 6]
    # generation 1 still holds 3, 4, 5 in flight, then SES_END{5}, and nothing after it (SES-33)
    on_g1 = [decode_frame(f, Path.DATACHANNEL) for f in net.queues[(g1, "B")]]
    assert [f.type for f in on_g1] == [FrameType.SES_MSG] * 3 + [FrameType.SES_END]
    net.deliver_one(g2, "B")  # generation 2's first MSG (3) before the late frames of 1
    for _ in range(3):
        net.deliver_one(g1, "B")  # late 3, 4, 5 of generation 1: duplicates, dropped
    while net.deliver_one(g2, "B"):
        pass
    while net.deliver_one(g1, "B") or net.deliver_one(g1, "A"):
        pass
    assert [s for s, _ in b.pending] == [1, 2, 3, 4, 5, 6]
    assert b.m.conn_state(g1) is ConnState.CLOSED and a.m.conn_state(g1) is ConnState.CLOSED
    net.settle()
    _check_exactly_once(a, b)


def test_late_frame_of_old_generation_first() -> None:
    """SES-26, SES-27: the same switch, but generation 1's late frame wins the race."""
    net, a, b = _pair(3)
    g1 = net.open_generation()
    net.settle()
    for i in range(1, 4):
        _send(a, net, b"y%d" % i)
    g2 = net.open_generation()
    for _ in range(2):  # HELLO both ways, then AUTH both ways
        net.deliver_one(g2, "A")
        net.deliver_one(g2, "B")
    net.deliver_one(g1, "B")  # 1 via generation 1
    net.deliver_one(g2, "B")  # 1 again via generation 2: dropped
    net.deliver_one(g1, "B")  # 2 via generation 1
    net.settle()
    _check_exactly_once(a, b)


@pytest.mark.parametrize("seed", range(12))
def test_random_faults_exactly_once(seed: int) -> None:
    """SES-5, SES-6, SES-7, SES-9, SES-25, SES-26, SES-27, SES-31, SES-32, SES-34, SES-38,
    SES-50, SES-51, SES-53:
    random sends both ways across many generations and onion-stream connections, with
    connections killed with frames in flight, old and new connections interleaved, small
    windows, lazy inbox commits and crashes of either peer; every message arrives once, in
    order."""
    small = SessionConfig(dc_window=12, tor_window=6)  # a few messages in flight at most
    net, a, b = _pair(100 + seed, small if seed % 2 else None)
    r = random.Random(seed)
    inc_a, inc_b = a.m.s.inc, b.m.s.inc
    net.open_generation()
    n = 0
    for _ in range(600):
        x = r.random()
        if x < 0.25:
            n += 1
            _send(r.choice((a, b)), net, b"%d-%d" % (seed, n))
        elif x < 0.65:
            live = [k for k, q in net.queues.items() if q]
            if live:
                net.deliver_one(*r.choice(live))
        elif x < 0.75:
            r.choice((a, b)).commit(net.now)
            net.flush()
        elif x < 0.83:
            net.tick(r.choice((5, 50, 500, 3000)))
        elif x < 0.89:
            net.open_generation()
        elif x < 0.94 and net.alive:
            net.kill(r.choice(sorted(net.alive)))
        elif x < 0.96:
            net.crash(r.choice("AB"))
        elif x < 0.98 and not [c for c in net.alive if c > 10_000]:
            net.open_tor()
        elif x < 0.99:
            # a broken transport: two frames swapped, or one duplicated, inside one connection;
            # the receiver fails that connection (SES_SEQ_GAP, UNEXPECTED_MESSAGE) and the
            # session recovers on the next one
            busy = [q for q in net.queues.values() if len(q) >= 2]
            if busy:
                q = r.choice(busy)
                if r.random() < 0.5:
                    q[0], q[1] = q[1], q[0]
                else:
                    q.insert(1, q[0])
        if a.m.active is None and b.m.active is None and not net.alive:
            net.open_generation()
    net.settle()
    _check_exactly_once(a, b)
    assert net.gen >= 5
    assert not a.resets and not b.resets  # crashes with a WAL are not resets (SES-42)
    assert a.m.s.inc == inc_a and b.m.s.inc == inc_b
    for p in (a, b):  # memory stays bounded over many generations
        assert sum(c.state in (ConnState.CLOSED, ConnState.FAILED)
                   for c in p.m._conns.values()) <= 8


def test_dead_path_noticed_within_ten_seconds_when_busy() -> None:
    """SES-43, SES-46: unacknowledged data on a silently dead path is noticed in <= 10 s."""
    net, a, b = _pair(4)
    g = net.open_generation()
    net.settle()
    net.alive.discard(g)  # silently dead: nothing delivered, nobody told
    t0 = net.now
    _send(a, net, b"lost in the void")
    while a.m.active == g:
        net.tick(100)
        assert net.now - t0 <= 10_000
    assert a.wants_reconnect
    net.alive.add(g)
    net.kill(g)
    net.settle()
    _check_exactly_once(a, b)


def test_idle_path_probes_rarely() -> None:
    """SES-44: an idle session sends no PING more often than every 30 s, and only the LOW
    peer probes while the LOW peer's probes arrive."""
    net, a, _b = _pair(5)
    net.open_generation()
    net.settle()
    pings: dict[str, list[int]] = {"A": [], "B": []}
    for _ in range(1200):  # 120 s in 100 ms steps, both ends reachable
        net.now += 100
        for name, p in net.peers.items():
            p.m.handle_timer(net.now)
            for conn, data in p.m.data_to_send():
                if decode_frame(data, Path.DATACHANNEL).type == FrameType.PING:
                    pings[name].append(net.now)
                net.queues[(conn, net.other(name))].append(data)
        for (conn, to), q in list(net.queues.items()):
            while q:
                net.deliver_one(conn, to)
    low, high = ("A", "B") if PUB_A < PUB_B else ("B", "A")
    assert len(pings[low]) >= 3, "idle sessions still probe"
    assert pings[high] == []
    gaps = [y - x for x, y in zip(pings[low], pings[low][1:], strict=False)]
    assert min(gaps) >= 30_000
    assert a.m.status == "connected"


def test_network_changed_asks_for_a_new_generation_at_once() -> None:
    """SES-49: the network-changed input asks for a new generation in the same step, while the
    old connection keeps carrying traffic (make-before-break)."""
    net, a, b = _pair(6)
    g = net.open_generation()
    net.settle()
    a.m.network_changed(net.now)
    net.flush()
    assert a.wants_reconnect
    assert a.m.active == g
    _send(a, net, b"still flowing")
    net.settle()
    _check_exactly_once(a, b)


@pytest.mark.parametrize("seed", range(6))
def test_restored_backup_recovers_under_faults(seed: int) -> None:
    """SES-41, SES-42: A is restored from an older backup in the middle of random traffic; the
    session reports the reset, recovers, and every message sent after the restore, both ways,
    is delivered exactly once and in order."""
    net, a, b = _pair(500 + seed)
    r = random.Random(seed)
    net.open_generation()
    backup = None
    restored_at: dict[str, int] = {}
    n = 0
    for step in range(500):
        x = r.random()
        if step == 150:
            backup = a.m.persistent_state()
        if step == 350:
            assert backup is not None
            net.crash("A")
            a.m = SessionMachine(SEED_A, PUB_B, rng=a.rng.randbytes, state=backup)
            restored_at = {"A": len(a.sent), "B": len(b.sent)}
            a.inbox = a.inbox[:0]  # the restored profile's inbox is the backup's; not checked
        if x < 0.3:
            n += 1
            _send(r.choice((a, b)), net, b"%d-%d" % (seed, n))
        elif x < 0.7:
            live = [k for k, q in net.queues.items() if q]
            if live:
                net.deliver_one(*r.choice(live))
        elif x < 0.8:
            r.choice((a, b)).commit(net.now)
            net.flush()
        elif x < 0.9:
            net.tick(r.choice((5, 50, 500)))
        elif x < 0.95:
            net.open_generation()
        elif net.alive:
            net.kill(r.choice(sorted(net.alive)))
        if a.m.active is None and b.m.active is None and not net.alive:
            net.open_generation()
    net.settle()
    after_a = a.sent[restored_at["A"]:]
    after_b = b.sent[restored_at["B"]:]
    assert [m for m in b.inbox if m in set(after_a)] == after_a
    assert [m for m in a.inbox if m in set(after_b)] == after_b
