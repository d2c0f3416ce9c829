"""The make-before-break race that the live interop runs hit (ports/ts/live/README.md,
"Finding"), reproduced with two reference session machines and no I/O.

Both peers hold generation 1 and keep exchanging messages on it while generation 2 is set up.
Each side builds its SES_HELLO for generation 2 when *its* end of the new data channel opens;
here A's HELLO is built, then 3 more messages travel on generation 1 (and are acknowledged), then
B's HELLO is built.  B's HELLO says ``rx = 8`` while A's says ``tx = 5``: p4-04 §9 rule 2 reads
``h.rx > m.tx`` as "this peer is stale" although nobody was restored, fails the new connection
with SES_INCARNATION_STALE and re-incarnates a healthy peer.

p4-04 draft revision 4 fixed the rule (each side judges only its own staleness, against its
current counters): generation 2 opens on both sides.
"""

from __future__ import annotations

import os

from nacl.signing import SigningKey

from p4ref.session import (
    ConnectionFailed,
    ConnectionOpen,
    MessageReceived,
    SessionMachine,
)


def _seed_pair() -> tuple[bytes, bytes]:
    return bytes(range(32)), bytes(range(1, 33))


class Side:
    def __init__(self, m: SessionMachine) -> None:
        self.m = m
        self.opened: list[int] = []
        self.failed: list[tuple[int, int]] = []

    def drain_events(self) -> None:
        while (ev := self.m.next_event()) is not None:
            if isinstance(ev, MessageReceived):
                self.m.inbox_committed(ev.seq, 0)
            elif isinstance(ev, ConnectionOpen):
                self.opened.append(ev.conn)
            elif isinstance(ev, ConnectionFailed):
                self.failed.append((ev.conn, ev.code))


def shuttle(a: Side, b: Side, now: int = 0) -> None:
    """Move every frame both ways until nothing moves."""
    for _ in range(100):
        moved = False
        for src, dst in ((a, b), (b, a)):
            src.drain_events()
            for conn, data in src.m.data_to_send():
                dst.m.receive_data(conn, data, now)
                moved = True
            dst.drain_events()
        if not moved:
            return


def test_make_before_break_under_traffic_is_not_a_restore() -> None:
    sa, sb = _seed_pair()
    pa, pb = bytes(SigningKey(sa).verify_key), bytes(SigningKey(sb).verify_key)
    a = Side(SessionMachine(sa, pb, rng=os.urandom))
    b = Side(SessionMachine(sb, pa, rng=os.urandom))
    fa, fb = b"\xaa" * 32, b"\xbb" * 32  # the two DTLS fingerprints (channel bindings)
    a.m.open(1, 1, "datachannel", fa, fb, 0)
    b.m.open(1, 1, "datachannel", fb, fa, 0)
    shuttle(a, b)
    assert a.opened == [1] and b.opened == [1]
    for i in range(5):
        a.m.send(b"x%d" % i, 0)
    shuttle(a, b)
    # generation 2: A's end opens first; its SES_HELLO (tx = 5) waits in the network
    a.m.open(2, 2, "datachannel", fa, fb, 0)
    held: list[tuple[int, bytes]] = []
    for conn, data in a.m.data_to_send():
        if conn == 2:
            held.append((conn, data))
        else:
            b.m.receive_data(conn, data, 0)
    # meanwhile generation 1 carries 3 more messages, delivered and acknowledged
    for i in range(5, 8):
        a.m.send(b"x%d" % i, 0)
    shuttle(a, b)
    # B's end opens: its SES_HELLO says rx = 8
    b.m.open(2, 2, "datachannel", fb, fa, 0)
    for conn, data in held:
        b.m.receive_data(conn, data, 0)
    shuttle(a, b)
    assert not a.failed and not b.failed, (a.failed, b.failed)
    assert 2 in a.opened and 2 in b.opened
