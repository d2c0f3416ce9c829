"""p4ref.io.session_store: what is accepted survives a crash, quotas bound the disk, and a bad
database file is reported and never rewritten (p4-04 §4.2, §8.6, §8.7, §8.8): SES-5 and SES-7
(outbox, counters and rx stored and resumed), SES-6 (rx durable with its inbox rows), SES-36
(SES_OUTBOX_FULL), SES-38 and SES-39 (inbox rows kept until confirmed, handed out in stream order
with their message ids), SES-40 (the level claimed: the SIGKILL and power-loss tests below),
SES-57 (a message of an old incarnation is stored without moving rx), RDV-52 (the generation
mark survives a restart and only grows).

The two durability tests:

- **SIGKILL** (:func:`test_sigkill_loses_nothing_accepted`): a child process appends messages
  through the real store (stdlib ``sqlite3``, WAL, group commits of random size) and writes each
  seq to a pipe only after the commit carrying it returned; the parent kills it with SIGKILL at a
  random moment and reopens the file. Every seq the child reported must be there, in order, with
  its payload, and the file must pass the strict opening (quick_check). This holds at any
  ``synchronous`` level (SQLite's WAL is written before COMMIT returns; only the kernel's page
  cache stands between it and the disk, and a process crash does not lose that), so the test runs
  at NORMAL, the weaker level.
- **Power loss** (:func:`test_power_loss`): a process crash cannot tell FULL from NORMAL, so this
  test runs the *same store code* over an apsw connection whose VFS (a file layer written in
  Python, :class:`PowerLossVFS`) passes every read and write to the real files and also keeps,
  per file, the image as of its last ``xSync`` plus the writes since. At a random write or sync
  the test takes a "power-loss image": the synced image plus a random subset of the later writes
  (each kept or dropped independently, in order — a disk that reorders and loses unsynced
  writes); or, in the "drop" variant, the synced image alone. The image is written to a new
  directory and opened with the real store. With ``synchronous=FULL`` every message whose commit
  returned before the cut must be there and the file must open cleanly; with NORMAL, dropping
  the unsynced writes must lose some (which is why the reference claims power-loss safety only
  for FULL). The model's limits, said plainly: a write is kept or lost whole (no torn sectors);
  a disk that acknowledges a flush it did not do is not modelled; file creation and directory
  entries are taken as durable (SQLite fsyncs the directory when it creates the WAL); the SQLite
  inside apsw is apsw's own build, the same library version range as the stdlib one.
"""

from __future__ import annotations

import asyncio
import os
import random
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from p4ref.errors import ErrorCode, LocalProtocolError, P4Error
from p4ref.io.session_store import (
    APPLICATION_ID,
    BULK_LINGER,
    SESSION_DB,
    DBConnection,
    Quota,
    SessionDB,
    SessionStore,
    SessionStoreError,
    _sqlite_connect,
)
from p4ref.session import SessionState

PEER = bytes(range(32))
PEER2 = bytes(range(1, 33))
INC = bytes([1]) * 16
PINC = bytes([2]) * 16
QUICK = os.environ.get("P4_STORE_STRESS") is None  # P4_STORE_STRESS=1: many more rounds locally
ROOT = Path(__file__).resolve().parent.parent


def _new(tmp_path: Path, **kw: Any) -> SessionDB:
    db = SessionDB(tmp_path / SESSION_DB, **kw)
    db.create_session(PEER, INC)
    db.commit()
    return db


def _payload(seq: int) -> bytes:
    return seq.to_bytes(8, "big") * (1 + seq % 7)


# ---------------------------------------------------------------------------------------------
# the record, the outbox, the inbox, the watermarks


def test_round_trip_and_mode(tmp_path: Path) -> None:
    db = _new(tmp_path)
    seqs = [db.append_outbox(PEER, _payload(i)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    db.append_outbox(PEER, None, ref="file:/x#0-1000000", size=1_000_000)
    db.ack_outbox(PEER, 2)
    db.commit()
    db.close()
    if sys.platform != "win32":
        assert stat.S_IMODE(os.stat(tmp_path / SESSION_DB).st_mode) == 0o600
    db = SessionDB(tmp_path / SESSION_DB)
    wm = db.watermarks(PEER)
    assert (wm.tx_next, wm.acked) == (7, 2)
    entries = db.outbox(PEER)
    assert [e.seq for e in entries] == [3, 4, 5, 6]
    assert entries[-1].ref == "file:/x#0-1000000" and entries[-1].size == 1_000_000
    with pytest.raises(LocalProtocolError) as e:
        db.session_state(PEER)  # a reference needs a resolver
    assert e.value.code == ErrorCode.UNEXPECTED_MESSAGE
    st = db.session_state(PEER, resolve=lambda e: b"bulk")
    assert st is not None and st.outbox == {3: _payload(3), 4: _payload(4), 5: _payload(5),
                                            6: b"bulk"}
    assert (st.inc, st.tx, st.acked) == (INC, 6, 2)
    db.close()


def test_inbox_order_rx_and_confirm(tmp_path: Path) -> None:
    """SES-6, SES-38, SES-39, SES-57."""
    db = _new(tmp_path)
    db.save_session(PEER, SessionState(inc=INC, peer_inc=PINC, rx=10))  # rule 3: rx = h.acked
    assert db.store_inbox(PEER, PINC, 11, b"a") == 11
    assert db.store_inbox(PEER, PINC, 11, b"a") == 11  # duplicate: nothing changes
    with pytest.raises(LocalProtocolError):
        db.store_inbox(PEER, PINC, 13, b"c")  # out of order
    assert db.store_inbox(PEER, PINC, 12, b"b") == 12
    old = bytes([9]) * 16
    assert db.store_inbox(PEER, old, 40, b"late") == 12  # SES-57: stored, rx unchanged
    db.mark_delivered(PEER, PINC, 11)
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    msgs = db.inbox(PEER)
    assert [(m.inc, m.seq, m.payload, m.delivered) for m in msgs] == [
        (PINC, 11, b"a", True), (PINC, 12, b"b", False), (old, 40, b"late", False)]
    assert db.watermarks(PEER).confirmed == 10
    assert db.confirm(PEER, PINC, 12) and not db.confirm(PEER, PINC, 12)
    assert db.watermarks(PEER).confirmed == 10  # 11 is still there
    db.confirm(PEER, PINC, 11)
    assert db.watermarks(PEER).confirmed == 12
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    assert [m.seq for m in db.inbox(PEER)] == [40]
    db.close()


def test_forget_peer_deletes_only_that_peer(tmp_path: Path) -> None:
    """``p4 peers forget``: every row of the peer goes (outbox, inbox, channel state, counters,
    the rendezvous mark); the other peer's rows stay; a later session starts anew."""
    db = _new(tmp_path)
    db.create_session(PEER2, PINC)
    for pub in (PEER, PEER2):
        db.save_session(pub, SessionState(inc=INC if pub == PEER else PINC, peer_inc=PINC))
        db.append_outbox(pub, b"out", channel_state=b"chan")
        db.store_inbox(pub, PINC, 1, b"in")
        db.advance(pub, 7)
    assert db.forget_peer(PEER) and not db.forget_peer(PEER)
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.peers() == [PEER2]
    assert db.last_generation(PEER) == 0 and db.channel_state(PEER) is None
    assert [e.payload for e in db.outbox(PEER2)] == [b"out"]
    assert [m.payload for m in db.inbox(PEER2)] == [b"in"]
    assert db.channel_state(PEER2) == b"chan" and db.last_generation(PEER2) == 7
    db.create_session(PEER, INC)  # anew
    assert db.watermarks(PEER).tx_next == 1 and db.outbox(PEER) == []
    db.commit()
    db.close()

    async def run() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB)
        try:
            assert await store.forget_peer(PEER2)
            assert not await store.forget_peer(PEER2)
            assert store.db.peers() == [PEER]
        finally:
            await store.close()
    asyncio.run(run())
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.peers() == [PEER] and db.last_generation(PEER2) == 0
    db.close()


def test_reincarnation_renumbers_outbox(tmp_path: Path) -> None:
    db = _new(tmp_path)
    for i in range(1, 8):
        db.append_outbox(PEER, _payload(i))
    db.ack_outbox(PEER, 3)
    new_inc = bytes([7]) * 16
    # the machine renumbered its 4 pending messages from 1 (p4-04 §9 rule 2)
    db.save_session(PEER, SessionState(inc=new_inc, tx=4, acked=0, peer_inc=PINC, rx=5,
                                       retired=(bytes([5]) * 16,), generation=9))
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    st = db.session_state(PEER)
    assert st is not None
    assert st.outbox == {1: _payload(4), 2: _payload(5), 3: _payload(6), 4: _payload(7)}
    assert (st.inc, st.tx, st.acked, st.peer_inc, st.rx, st.generation) == (
        new_inc, 4, 0, PINC, 5, 9)
    assert st.retired == (bytes([5]) * 16,)
    assert db.append_outbox(PEER, b"next") == 5
    db.close()


def test_generation_mark_has_replay_store_semantics(tmp_path: Path) -> None:
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.last_generation(PEER2) == 0
    assert db.advance(PEER2, 5) == 5
    assert db.advance(PEER2, 3) == 5  # only grows
    assert db.advance(PEER2, (1 << 64) - 1) == (1 << 64) - 1  # any uint64
    with pytest.raises(P4Error) as e:
        db.advance(PEER2, 1 << 64)
    assert e.value.code == ErrorCode.MESSAGE_INVALID
    db.close()  # advance() is durable without an explicit commit: reopen sees it
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.last_generation(PEER2) == (1 << 64) - 1
    assert db.session_state(PEER2) is None  # a mark alone is no session
    db.close()


def test_replay_marks_for_the_signalling_driver(tmp_path: Path) -> None:
    """RDV-52 through the asyncio store, with ReplayStore's synchronous interface."""
    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB)
        await store.create_session(PEER, INC)
        marks = store.replay_marks()
        busy = [store.append_outbox(PEER, b"x") for _ in range(50)]  # a batch in progress
        assert marks.advance(PEER, 4) == 4 and marks.advance(PEER, 2) == 4
        assert marks.last_generation(PEER) == 4 and marks.last_generation(PEER2) == 0
        await asyncio.gather(*busy)
        await store.close()

    asyncio.run(main())
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.last_generation(PEER) == 4 and len(db.outbox(PEER)) == 50
    db.close()


def test_outbox_quota(tmp_path: Path) -> None:
    """SES-36: a full outbox is an error at once; credit returns with the ACK."""
    db = _new(tmp_path, quota=Quota(outbox_messages=3, outbox_bytes=40_000))
    for _ in range(2):
        db.append_outbox(PEER, b"x" * 16_000)
    with pytest.raises(LocalProtocolError) as e:
        db.append_outbox(PEER, b"x" * 16_000)  # bytes
    assert e.value.code == ErrorCode.SES_OUTBOX_FULL
    db.append_outbox(PEER, b"small")
    with pytest.raises(LocalProtocolError) as e:
        db.append_outbox(PEER, b"")  # count
    assert e.value.code == ErrorCode.SES_OUTBOX_FULL
    db.ack_outbox(PEER, 1)  # credit comes back with the peer's ACK
    assert db.append_outbox(PEER, b"y") == 4
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB, quota=Quota(outbox_messages=3, outbox_bytes=40_000))
    with pytest.raises(LocalProtocolError):
        db.append_outbox(PEER, b"")  # the accounting is rebuilt from the file
    db.close()


def test_inbox_quota_waits_for_confirm(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB,
                                        quota=Quota(inbox_messages=2))
        await store.create_session(PEER, INC)
        await store.save_session(PEER, SessionState(inc=INC, peer_inc=PINC))
        tasks = [store.store_inbox(PEER, PINC, i, b"m") for i in (1, 2, 3, 4)]
        await asyncio.sleep(0.05)
        assert [t.done() for t in tasks] == [True, True, False, False]
        assert store.watermarks(PEER).rx == 2  # no ACK can cover 3 yet
        await store.confirm(PEER, PINC, 1)
        assert await tasks[2] == 3
        assert not tasks[3].done()
        await store.confirm(PEER, PINC, 2)
        assert await tasks[3] == 4
        await store.close()

    asyncio.run(main())


def test_store_inbox_then_runs_at_the_commit_also_for_a_held_message(tmp_path: Path) -> None:
    """``store_inbox(..., then=)`` (the link's way: no callback on the future) gets rx once the
    row is durable, in order, a held message's once it got room and was committed."""
    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB,
                                        quota=Quota(inbox_messages=2))
        await store.create_session(PEER, INC)
        await store.save_session(PEER, SessionState(inc=INC, peer_inc=PINC))
        got: list[int] = []
        futs = [store.store_inbox(PEER, PINC, i, b"m", then=got.append) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        assert got == [1, 2] and not futs[2].done()  # 3 is held: the inbox is full
        await store.confirm(PEER, PINC, 1)
        await futs[2]
        assert got == [1, 2, 3]
        await store.close()

    asyncio.run(main())


def test_confirm_before_the_commit_writes_no_inbox_row(tmp_path: Path) -> None:
    """SES-76: a message the application confirms before its row was taken into a commit costs
    no INSERT and no DELETE: that commit carries rx (so an ACK may cover it, SES-6: durably
    consumed) and nothing else; a confirm after the row was taken deletes it as before; a held
    message (inbox full) is handed out (``planned``) only once its row is planned."""
    async def main() -> list[str]:
        store = await SessionStore.open(tmp_path / SESSION_DB, commit_interval=0.2,
                                        quota=Quota(inbox_messages=3))
        await store.create_session(PEER, INC)
        await store.save_session(PEER, SessionState(inc=INC, peer_inc=PINC))
        sql: list[str] = []
        store.db._db.set_trace_callback(sql.append)  # type: ignore[attr-defined]
        handed: list[int] = []
        first = store.store_inbox(PEER, PINC, 1, b"one", planned=lambda: handed.append(1))
        await first  # a lone lazy row commits at once; the next ones wait for the interval
        futs = [store.store_inbox(PEER, PINC, i, b"m%d" % i,
                                  planned=lambda i=i: handed.append(i)) for i in (2, 3, 4)]
        assert handed == [1, 2, 3]  # 4 is held: the inbox holds 3 messages
        assert await store.confirm(PEER, PINC, 2)  # not written yet: cancelled
        assert handed == [1, 2, 3, 4]  # the confirm made room
        assert await store.confirm(PEER, PINC, 1)  # committed before: deleted
        assert await asyncio.gather(*futs) == [2, 3, 4]
        assert await store.confirm(PEER, PINC, 9, report=False) is None  # (the channel
        assert not await store.confirm(PEER, PINC, 9)  # layer only waits for durability)
        await store.close()
        return sql

    sql = asyncio.run(main())
    inserted = [s.split(", ")[-2] for s in sql if s.startswith("INSERT INTO inbox")]
    deleted = [s for s in sql if s.startswith("DELETE FROM inbox")]
    assert inserted == ["1", "3", "4"], sql  # the seqs: no row 2
    assert len(deleted) == 1, sql  # row 1's
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.watermarks(PEER).rx == 4  # rx covers the cancelled row too
    assert [m.seq for m in db.inbox(PEER)] == [3, 4]
    db.close()


def test_group_commit_shares_transactions(tmp_path: Path) -> None:
    async def main() -> list[int]:
        store = await SessionStore.open(tmp_path / SESSION_DB)
        await store.create_session(PEER, INC)
        seen: list[int] = []
        before = store.db.commits
        seqs = await asyncio.gather(*(store.append_outbox(PEER, _payload(i), then=seen.append)
                                      for i in range(1, 501)))
        assert list(seqs) == list(range(1, 501))
        assert seen == list(range(1, 501))  # `then` runs in seq order, after the commit
        assert store.db.commits - before <= 3  # 500 sends, a few transactions
        await store.close()
        return seen

    asyncio.run(main())
    db = SessionDB(tmp_path / SESSION_DB)
    assert [e.seq for e in db.outbox(PEER)] == list(range(1, 501))
    db.close()


def test_commit_pacing_under_load_never_for_an_awaiting_caller(tmp_path: Path) -> None:
    """COMMIT_INTERVAL (here 0.5 s, so that no machine load blurs it): inbox rows arriving one
    by one (nobody awaits them at once) share commits started ≥ the interval apart; a caller that
    awaits each call before the next finds the writer idle and commits at once every time."""
    async def main() -> tuple[int, int, float]:
        store = await SessionStore.open(tmp_path / SESSION_DB, commit_interval=0.5)
        await store.create_session(PEER, INC)
        await store.save_session(PEER, SessionState(inc=INC, peer_inc=PINC))
        loop = asyncio.get_running_loop()
        before = store.db.commits
        futs = []
        for i in range(1, 21):  # a steady stream of inbox rows, 5 ms apart
            futs.append(store.store_inbox(PEER, PINC, i, _payload(i)))
            await asyncio.sleep(0.005)
        assert await asyncio.gather(*futs) == list(range(1, 21))
        lazy = store.db.commits - before
        before, t0 = store.db.commits, loop.time()
        for i in range(1, 21):  # an application awaiting every send
            await store.append_outbox(PEER, _payload(i))
        awaited, awaited_s = store.db.commits - before, loop.time() - t0
        await store.close()
        return lazy, awaited, awaited_s

    lazy, awaited, awaited_s = asyncio.run(main())
    assert lazy <= 3, lazy  # the first row at once, the rest within one interval
    assert awaited == 20  # one commit per awaited call ...
    assert awaited_s < 5, awaited_s  # ... none held back (paced, 20 calls would take ≥ 9.5 s)


def test_a_bulk_load_commits_less_often(tmp_path: Path) -> None:
    """Under a bulk load (messages of ≥ BULK_MESSAGE bytes on average at ≥ BULK_RATE, seen over
    BULK_SAMPLE) commits are paced at ``bulk_interval`` (here 0.5 s), even for a call that finds
    the writer idle; a stream of small messages is not (each call finds the writer idle here and
    commits at once); once a bulk load has been over for BULK_LINGER, an awaited call commits
    at once again."""
    async def stream(store: SessionStore, size: int) -> int:
        """A sender keeping its sends under way, one every 5 ms for 0.75 s: the commits of the
        last 0.5 s (the load is known by then)."""
        futs = []
        before = 0
        for i in range(150):
            if i == 50:
                before = store.db.commits
            futs.append(store.append_outbox(PEER, b"\x5a" * size))
            await asyncio.sleep(0.005)
        await asyncio.gather(*futs)
        return store.db.commits - before

    async def main() -> tuple[int, int, float]:
        store = await SessionStore.open(tmp_path / SESSION_DB, commit_interval=0.05,
                                        bulk_interval=0.5)
        await store.create_session(PEER, INC)
        small = await stream(store, 1024)  # 200 KiB/s
        bulk = await stream(store, 16000)  # 3.1 MiB/s
        await asyncio.sleep(BULK_LINGER + 0.1)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await store.append_outbox(PEER, b"lone")
        lone_s = loop.time() - t0
        await store.close()
        return small, bulk, lone_s

    small, bulk, lone_s = asyncio.run(main())
    assert small >= 10, small  # 100 calls in 0.5 s, none paced
    assert bulk <= 3, bulk  # 0.5 s paced at 0.5 s (and the commit in flight at the start)
    assert lone_s < 0.4, lone_s  # not held back by a bulk load that is over


def test_a_machine_resumes_from_the_store(tmp_path: Path) -> None:
    """SES-7: what the store returns is what a SessionMachine resumes from."""
    from p4ref.session import SessionMachine

    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB)
        seed = bytes(32)
        machine = SessionMachine(seed, PEER, rng=lambda n: bytes([3]) * n)
        await store.create_session(PEER, machine.persistent_state().inc)
        sent: list[int] = []

        def send(payload: bytes) -> Callable[[int], None]:
            return lambda seq: sent.append(machine.send(payload, 0))

        # not awaited one by one: the read below is ordered after them all the same
        appends = [store.append_outbox(PEER, _payload(i), then=send(_payload(i)))
                   for i in range(1, 21)]
        state = await store.session_state(PEER)
        assert state is not None and sorted(state.outbox) == list(range(1, 21))
        assert [await a for a in appends] == sent == list(range(1, 21))
        await store.close()
        db = SessionDB(tmp_path / SESSION_DB)
        resumed = SessionMachine(seed, PEER, rng=lambda n: bytes([4]) * n,
                                 state=db.session_state(PEER))
        assert resumed.next_seq == db.watermarks(PEER).tx_next == 21
        assert resumed.persistent_state().outbox == machine.persistent_state().outbox
        db.close()

    asyncio.run(main())


class _FailingDB:
    """A sqlite3 connection whose writes fail once ``armed`` (a full disk, an I/O error)."""

    def __init__(self, con: DBConnection) -> None:
        self.con = con
        self.armed = False

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        if self.armed and sql.startswith(("INSERT", "COMMIT")):
            import sqlite3
            raise sqlite3.OperationalError("database or disk is full")
        return self.con.execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        return self.con.executemany(sql, parameters)

    def close(self) -> None:
        self.con.close()


def test_a_failed_write_breaks_the_store_and_loses_only_its_transaction(tmp_path: Path) -> None:
    _new(tmp_path).close()
    wrapped: list[_FailingDB] = []

    def connect(path: Path, read_only: bool) -> DBConnection:
        con = _FailingDB(_sqlite_connect(path, read_only))
        wrapped.append(con)
        return con

    db = SessionDB(tmp_path / SESSION_DB, connect=connect)
    db.append_outbox(PEER, b"one")
    db.commit()
    db.append_outbox(PEER, b"two")
    wrapped[-1].armed = True
    with pytest.raises(SessionStoreError) as e:
        db.commit()
    assert e.value.code == ErrorCode.INTERNAL_ERROR
    with pytest.raises(SessionStoreError) as e:
        db.append_outbox(PEER, b"three")  # broken until reopened
    assert e.value.code == ErrorCode.INTERNAL_ERROR
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    assert [x.payload for x in db.outbox(PEER)] == [b"one"]
    assert db.watermarks(PEER).tx_next == 2
    db.close()


def test_outbox_full_is_raised_before_any_commit(tmp_path: Path) -> None:
    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB, quota=Quota(outbox_messages=2))
        await store.create_session(PEER, INC)
        pending = [store.append_outbox(PEER, b"x") for _ in range(2)]
        with pytest.raises(LocalProtocolError) as e:
            store.append_outbox(PEER, b"y")  # raised by the call, before any commit
        assert e.value.code == ErrorCode.SES_OUTBOX_FULL
        assert await asyncio.gather(*pending) == [1, 2]
        await store.close()

    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# refused files: reported, never rewritten


def _refused(path: Path, code: ErrorCode) -> None:
    before = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    with pytest.raises(SessionStoreError) as e:
        SessionDB(path)
    assert e.value.code == code, e.value
    assert path.read_bytes() == before and path.stat().st_mtime_ns == mtime


def _private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


def test_not_sqlite_truncated_and_empty(tmp_path: Path) -> None:
    _refused(_private(tmp_path / "a.db", b"hello, not a database" * 20), ErrorCode.PROFILE_CORRUPT)
    _refused(_private(tmp_path / "b.db", b""), ErrorCode.PROFILE_CORRUPT)
    db = _new(tmp_path)
    for i in range(1, 200):
        db.append_outbox(PEER, _payload(i) * 50)
    db.close()
    data = (tmp_path / SESSION_DB).read_bytes()
    _refused(_private(tmp_path / "c.db", data[: len(data) // 2]), ErrorCode.PROFILE_CORRUPT)


def test_foreign_and_newer(tmp_path: Path) -> None:
    import sqlite3

    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    other.chmod(0o600)
    _refused(other, ErrorCode.PROFILE_CORRUPT)  # no application_id: not ours

    _new(tmp_path).close()
    path = tmp_path / SESSION_DB
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    _refused(path, ErrorCode.PROFILE_VERSION_UNSUPPORTED)


def test_quick_check_failure(tmp_path: Path) -> None:
    db = _new(tmp_path)
    for i in range(1, 400):
        db.append_outbox(PEER, bytes([i % 256]) * 1000)
    db.close()
    path = tmp_path / SESSION_DB
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    # scribble over the b-tree page headers of pages 3..: the header still says "ours"
    for off in range(2 * page, len(data), page):
        data[off:off + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    _refused(path, ErrorCode.PROFILE_CORRUPT)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SESSION_DB]  # no sidecar left behind


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_insecure_and_locked(tmp_path: Path) -> None:
    db = _new(tmp_path)
    with pytest.raises(SessionStoreError) as e:
        SessionDB(tmp_path / SESSION_DB)  # a second opener while the first holds it
    assert e.value.code == ErrorCode.PROFILE_LOCKED
    db.close()
    (tmp_path / SESSION_DB).chmod(0o644)
    with pytest.raises(SessionStoreError) as e:
        SessionDB(tmp_path / SESSION_DB)
    assert e.value.code == ErrorCode.PROFILE_INSECURE


# ---------------------------------------------------------------------------------------------
# SIGKILL

_CHILD = textwrap.dedent("""
    import os, random, sys
    from p4ref.io.session_store import SessionDB
    path, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    peer = bytes(range(32))
    db = SessionDB(path, synchronous="NORMAL")
    if db.session_state(peer) is None:
        db.create_session(peer, bytes([1]) * 16)
        db.commit()
    out = os.fdopen(1, "w", buffering=1)
    while True:
        batch = [db.append_outbox(peer, s.to_bytes(8, "big") * (1 + s % 7))
                 for s in [db.watermarks(peer).tx_next + i for i in range(rng.randint(1, 40))]]
        db.commit()
        out.write(" ".join(map(str, batch)) + "\\n")   # reported only once durable
""")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_loses_nothing_accepted(tmp_path: Path) -> None:
    path = tmp_path / SESSION_DB
    rng = random.Random(1)
    accepted: list[int] = []
    rounds = 10 if QUICK else 100
    for r in range(rounds):
        with subprocess.Popen(
                [sys.executable, "-c", _CHILD, str(path), str(r)], stdout=subprocess.PIPE,
                env=dict(os.environ, PYTHONPATH=str(ROOT))) as child:
            assert child.stdout is not None
            first = child.stdout.readline()  # it is writing now
            accepted += [int(s) for s in first.split()]
            time.sleep(rng.uniform(0, 0.05))
            child.kill()  # SIGKILL
            rest = child.stdout.read()
        accepted += [int(s) for s in rest.split()]
        db = SessionDB(path)  # strict opening, quick_check
        rows = db.outbox(PEER)
        seqs = [e.seq for e in rows]
        assert seqs == list(range(1, len(seqs) + 1))  # in order, no hole
        assert set(accepted) <= set(seqs), f"round {r}: lost {sorted(set(accepted) - set(seqs))}"
        assert all(e.payload == _payload(e.seq) for e in rows)
        db.close()
    assert len(accepted) > rounds


# ---------------------------------------------------------------------------------------------
# power loss


class _Image:
    """One file as the disk holds it: ``synced`` plus the writes since the last sync."""

    def __init__(self, data: bytes) -> None:
        self.synced = bytearray(data)
        self.pending: list[tuple[int, bytes | None, int]] = []  # (offset, data | None, size)

    @staticmethod
    def _apply(buf: bytearray, op: tuple[int, bytes | None, int]) -> None:
        offset, data, size = op
        if data is None:
            del buf[size:]
            return
        if len(buf) < offset:
            buf.extend(bytes(offset - len(buf)))
        buf[offset:offset + len(data)] = data

    def sync(self) -> None:
        for op in self.pending:
            self._apply(self.synced, op)
        self.pending.clear()

    def after_power_loss(self, rng: random.Random | None) -> bytes:
        buf = bytearray(self.synced)
        for op in self.pending:
            if rng is not None and rng.random() < 0.5:
                self._apply(buf, op)
        return bytes(buf)


class PowerLossVFS(apsw.VFS):
    """Passes I/O to the default VFS and keeps :class:`_Image`s; at the ``cut``-th write or
    sync it records the power-loss image of every file (``keep``: a random subset of the unsynced
    writes survives; None: none does)."""

    def __init__(self, name: str, cut: int, keep: random.Random | None) -> None:
        self.images: dict[str, _Image] = {}
        self.ops = 0
        self.cut = cut
        self.keep = keep
        self.crashed: dict[str, bytes] | None = None
        super().__init__(name, "")

    def tick(self) -> None:
        self.ops += 1
        if self.ops == self.cut and self.crashed is None:
            self.crashed = {n: i.after_power_loss(self.keep) for n, i in self.images.items()}

    def xOpen(self, name: Any, flags: list[int]) -> apsw.VFSFile:
        fname = name.filename() if isinstance(name, apsw.URIFilename) else name
        if fname not in self.images:
            p = Path(fname) if fname else None
            self.images[fname] = _Image(p.read_bytes() if p and p.exists() else b"")
        return _PowerLossFile(self, fname, name, flags)


class _PowerLossFile(apsw.VFSFile):
    def __init__(self, vfs: PowerLossVFS, fname: str, name: Any, flags: list[int]) -> None:
        self.vfs = vfs
        self.image = vfs.images[fname]
        super().__init__("", name, flags)

    def xWrite(self, data: Any, offset: int) -> None:
        super().xWrite(data, offset)
        self.image.pending.append((offset, bytes(data), 0))
        self.vfs.tick()

    def xTruncate(self, newsize: int) -> None:
        super().xTruncate(newsize)
        self.image.pending.append((0, None, newsize))

    def xSync(self, flags: int) -> None:
        super().xSync(flags)
        self.image.sync()
        self.vfs.tick()


def _apsw_connect(vfs: str) -> Any:
    def connect(path: Path, read_only: bool) -> DBConnection:
        if read_only:  # the strict checks before opening: they write nothing
            return _sqlite_connect(path, True)
        con: DBConnection = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE, vfs=vfs)
        return con
    return connect


def _power_loss_round(tmp_path: Path, level: str, cut: int, keep: random.Random | None,
                      seed: int, checkpoint: int = 1000) -> tuple[int, int]:
    """Returns (messages accepted before the cut, how many of them the image lost)."""
    work, after = tmp_path / f"work{seed}", tmp_path / f"after{seed}"
    work.mkdir()
    after.mkdir(mode=0o700)
    _new(work).close()
    name = f"powerloss{seed}"
    vfs = PowerLossVFS(name, cut, keep)
    try:
        db = SessionDB(work / SESSION_DB, synchronous=level,  # type: ignore[arg-type]
                       connect=_apsw_connect(name))
        # a small autocheckpoint moves pages into the database file and restarts the WAL every
        # few commits, so that cuts also land inside checkpoints and WAL restarts
        db._db.execute(f"PRAGMA wal_autocheckpoint = {checkpoint}")
        rng = random.Random(seed)
        accepted: list[int] = []
        acked = 0
        while vfs.crashed is None and len(accepted) < 400:
            batch = [db.append_outbox(PEER, _payload(db.watermarks(PEER).tx_next))
                     for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.2 and accepted:
                acked = rng.randint(acked, accepted[-1])
                db.ack_outbox(PEER, acked)
            db.commit()
            if vfs.crashed is None:  # the commit returned before the power went
                accepted += batch
        if vfs.crashed is None:
            vfs.cut = vfs.ops + 1
            vfs.tick()
        assert vfs.crashed is not None
        db._db.close()  # after the cut: nothing it does now reaches the image
    finally:
        vfs.unregister()
    for fname, data in vfs.crashed.items():
        if fname:
            _private(after / Path(fname).name, data)
    db = SessionDB(after / SESSION_DB)  # must open: strict checks, quick_check
    present = {e.seq for e in db.outbox(PEER)}
    lost = [s for s in accepted if s > db.watermarks(PEER).acked and s not in present]
    assert all(e.payload == _payload(e.seq) for e in db.outbox(PEER) if e.payload is not None)
    db.close()
    return len(accepted), len(lost)


@pytest.mark.parametrize("variant", ["drop", "subset"])
def test_power_loss_full_keeps_every_accepted_message(tmp_path: Path, variant: str) -> None:
    rng = random.Random(7)
    rounds = 6 if QUICK else 60
    total = 0
    for r in range(rounds):
        keep = random.Random(r) if variant == "subset" else None
        n, lost = _power_loss_round(tmp_path, "FULL", rng.randint(5, 300), keep, r,
                                    checkpoint=rng.choice([2, 5, 1000]))
        assert lost == 0, f"round {r}: FULL lost {lost} of {n} accepted messages"
        total += n
    assert total > rounds


def test_power_loss_normal_loses_commits(tmp_path: Path) -> None:
    """The same workload at NORMAL: commits are not synced, so a power cut drops the last ones
    (here all since the last checkpoint). This is why the reference claims FULL."""
    n, lost = _power_loss_round(tmp_path, "NORMAL", 200, None, 0)
    assert n > 10 and lost > 0, (n, lost)


def test_application_id_is_p4s1() -> None:
    assert APPLICATION_ID.to_bytes(4, "big") == b"P4S1"


# ---------------------------------------------------------------------------------------------
# the store driving two real session machines, with crashes


class _Side:
    """One peer as the per-peer link will run it on the synchronous core: the machine's outbox
    and inbox live in a real ``session.db``; a crash drops the machine and the database object
    without committing and resumes both from the file."""

    def __init__(self, home: Path, seed: bytes, peer_pub: bytes, rng: random.Random) -> None:
        from p4ref.session import SessionMachine

        self.home, self.seed, self.peer, self.rng = home, seed, peer_pub, rng
        self.db = SessionDB(home / SESSION_DB)
        self.m = SessionMachine(seed, peer_pub, rng=rng.randbytes)
        self.db.create_session(peer_pub, self.m.persistent_state().inc)
        self.db.commit()
        self.sent: list[bytes] = []
        self.consumed: dict[tuple[bytes, int], bytes] = {}  # the application's record
        self.order: list[tuple[bytes, int]] = []

    def send(self, payload: bytes, now: int) -> None:
        seq = self.db.append_outbox(self.peer, payload)
        self.db.commit()  # durable first [SES-5]
        assert self.m.send(payload, now) == seq
        self.sent.append(payload)

    def events(self) -> None:
        from p4ref.session import Acked, ConnectionOpen, MessageReceived, SessionReset

        while (e := self.m.next_event()) is not None:
            if isinstance(e, MessageReceived):
                assert self.db.store_inbox(self.peer, e.inc, e.seq, e.payload) is not None
            elif isinstance(e, Acked):
                self.db.ack_outbox(self.peer, e.through)
            elif isinstance(e, ConnectionOpen | SessionReset):
                self.db.save_session(self.peer, self.m.persistent_state())

    def commit(self, now: int) -> None:
        self.db.commit()
        rx = self.db.watermarks(self.peer).rx
        if rx > self.m.s.rx:
            self.m.inbox_committed(rx, now)  # ACKs cover only what is durable [SES-6]

    def consume(self, n: int) -> None:
        """The application takes messages in order and records their ids with its effect
        (here: in memory, as if in its own transaction), then confirms them [SES-39]."""
        for msg in self.db.inbox(self.peer, n):
            if (msg.inc, msg.seq) not in self.consumed:
                self.consumed[(msg.inc, msg.seq)] = msg.payload
                self.order.append((msg.inc, msg.seq))
            self.db.confirm(self.peer, msg.inc, msg.seq)

    def crash(self) -> None:
        from p4ref.session import SessionMachine

        self.db._db.close()  # the open transaction is lost, like under SIGKILL
        self.db = SessionDB(self.home / SESSION_DB)
        self.m = SessionMachine(self.seed, self.peer, rng=self.rng.randbytes,
                                state=self.db.session_state(self.peer))

    def received(self) -> list[bytes]:
        return [self.consumed[k] for k in self.order] + [
            m.payload for m in self.db.inbox(self.peer) if (m.inc, m.seq) not in self.consumed]


@pytest.mark.parametrize("seed", range(3 if QUICK else 30))
def test_machines_on_the_store_exactly_once_across_crashes(tmp_path: Path, seed: int) -> None:
    """Two session machines, each with its own session.db, exchange messages over connections
    that die with frames in flight while either side crashes (losing its uncommitted
    transaction): every message accepted by ``send`` reaches the other application exactly once,
    in order (SES-5, SES-6, SES-7, SES-38, SES-39)."""
    from nacl.signing import SigningKey

    seeds = bytes(range(32)), bytes(range(100, 132))
    pubs = [bytes(SigningKey(s).verify_key) for s in seeds]
    r = random.Random(seed)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sides = [_Side(tmp_path / "a", seeds[0], pubs[1], random.Random(r.random())),
             _Side(tmp_path / "b", seeds[1], pubs[0], random.Random(r.random()))]
    now, gen, conn = 1000, 0, None
    queues: dict[int, list[bytes]] = {0: [], 1: []}

    def pump() -> None:
        for i, s in enumerate(sides):
            for c, data in s.m.data_to_send():
                if c == conn:
                    queues[1 - i].append(data)
            s.events()

    def kill() -> None:
        nonlocal conn
        if conn is None:
            return
        for s in sides:
            if conn in s.m._conns:
                s.m.receive_data(conn, b"", now)
        conn = None
        queues[0].clear()
        queues[1].clear()
        pump()

    n = crashes = 0
    for _ in range(600 if QUICK else 3000):
        now += r.randint(1, 30)
        op = r.random()
        if conn is None:
            gen = max(gen, *(s.m.s.generation for s in sides)) + 1
            conn = gen
            fa, fb = bytes([gen % 256]) * 32, bytes([(gen + 7) % 256]) * 32
            sides[0].m.open(conn, gen, "datachannel", fa, fb, now)
            sides[1].m.open(conn, gen, "datachannel", fb, fa, now)
        elif op < 0.35:
            i = r.randrange(2)
            if len(sides[i].m.s.outbox) < 200:
                n += 1
                sides[i].send(f"{i}:{n}".encode() * r.randint(1, 40), now)
        elif op < 0.75:
            i = r.randrange(2)
            for _ in range(r.randint(1, 4)):
                if queues[i] and conn is not None:
                    sides[i].m.receive_data(conn, queues[i].pop(0), now)
                    pump()
        elif op < 0.87:
            sides[r.randrange(2)].commit(now)
        elif op < 0.93:
            sides[r.randrange(2)].consume(r.randint(1, 5))
        elif op < 0.97:
            kill()
        else:
            kill()
            sides[r.randrange(2)].crash()
            crashes += 1
        for s in sides:
            s.m.handle_timer(now)
        pump()
    # settle: a clean connection, no faults, until both outboxes are empty
    kill()
    for _ in range(200):
        if conn is None:
            gen = max(gen, *(s.m.s.generation for s in sides)) + 1
            conn = gen
            fa, fb = bytes([gen % 256]) * 32, bytes([(gen + 7) % 256]) * 32
            sides[0].m.open(conn, gen, "datachannel", fa, fb, now)
            sides[1].m.open(conn, gen, "datachannel", fb, fa, now)
            pump()
        now += 25
        for i in (0, 1):
            while queues[i]:
                sides[i].m.receive_data(conn, queues[i].pop(0), now)
                pump()
            sides[i].commit(now)
            sides[i].m.handle_timer(now)
            pump()
        if all(s.m.s.acked == s.m.s.tx for s in sides) and not any(queues.values()):
            break
    for s in sides:
        s.consume(10_000)
    assert sides[1].received() == sides[0].sent
    assert sides[0].received() == sides[1].sent
    assert n > 50 and crashes > 3, (n, crashes)
