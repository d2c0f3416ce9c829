"""The session store's channel state (p4-05 CHN-30) as the link uses it: written in the same
transaction as the outbox append or inbox confirm that carries it, found again after reopening,
and added to a database created before the table existed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from p4ref.errors import ErrorCode, LocalProtocolError
from p4ref.io.session_store import SESSION_DB, Quota, SessionDB, SessionStore

PEER = bytes(range(32))
INC = bytes([1]) * 16
PINC = bytes([2]) * 16


def _new(tmp_path: Path, **kw: object) -> SessionDB:
    db = SessionDB(tmp_path / SESSION_DB, **kw)  # type: ignore[arg-type]
    db.create_session(PEER, INC)
    db.commit()
    return db


def test_channel_state_travels_with_append_and_confirm(tmp_path: Path) -> None:
    db = _new(tmp_path)
    assert db.channel_state(PEER) is None
    db.append_outbox(PEER, b"item", channel_state=b"state-1")
    db.commit()
    db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.channel_state(PEER) == b"state-1"
    assert [e.payload for e in db.outbox(PEER)] == [b"item"]
    from p4ref.session import SessionState
    db.save_session(PEER, SessionState(inc=INC, peer_inc=PINC))
    assert db.store_inbox(PEER, PINC, 1, b"x") == 1
    db.commit()
    assert db.confirm(PEER, PINC, 1, channel_state=b"state-2")
    assert not db.confirm(PEER, PINC, 1, channel_state=b"state-3")  # written all the same
    db.close()  # not committed: close commits what is pending
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.channel_state(PEER) == b"state-3"
    assert db.inbox(PEER) == []
    db.close()


def test_uncommitted_state_is_lost_with_its_append(tmp_path: Path) -> None:
    db = _new(tmp_path)
    db.append_outbox(PEER, b"a", channel_state=b"s1")
    db.commit()
    db.append_outbox(PEER, b"b", channel_state=b"s2")
    db._db.execute("ROLLBACK")  # the process dies before the commit
    db._txn = False
    db._db.close()
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.channel_state(PEER) == b"s1"
    assert [e.payload for e in db.outbox(PEER)] == [b"a"]
    db.close()


def test_database_without_the_table_gets_it(tmp_path: Path) -> None:
    _new(tmp_path).close()
    path = tmp_path / SESSION_DB
    con = sqlite3.connect(path)
    con.execute("DROP TABLE chanstate")
    con.commit()
    con.close()
    db = SessionDB(path)
    assert db.channel_state(PEER) is None
    db.append_outbox(PEER, b"a", channel_state=b"s")
    db.commit()
    db.close()
    assert SessionDB(path).channel_state(PEER) == b"s"


def test_outbox_room(tmp_path: Path) -> None:
    db = _new(tmp_path, quota=Quota(outbox_messages=3))
    assert db.outbox_room(PEER, 3, 100)
    db.append_outbox(PEER, b"a")
    assert db.outbox_room(PEER, 2, 100) and not db.outbox_room(PEER, 3, 100)
    with pytest.raises(LocalProtocolError) as e:
        db.append_outbox(PEER, b"b")
        db.append_outbox(PEER, b"c")
        db.append_outbox(PEER, b"d")
    assert e.value.code == ErrorCode.SES_OUTBOX_FULL
    db.close()


def test_links_of_one_profile_share_its_session_store(tmp_path: Path) -> None:
    """``p4 up`` runs one link per peer in one process: they share ``session.db`` (a second
    exclusive opener would get PROFILE_LOCKED); it closes with the last link."""
    import asyncio

    from p4ref.link._link import _STORES, _acquire_store, _release_store

    path = tmp_path / SESSION_DB

    async def run() -> None:
        a, b = await asyncio.gather(_acquire_store(path, "FULL", None),
                                    _acquire_store(path, "FULL", None))
        assert a is b
        await a.create_session(PEER, INC)
        await _release_store(path, a)
        await b.create_session(bytes(range(1, 33)), PINC)  # still open for the other link
        await _release_store(path, b)
        assert not _STORES
        c = await _acquire_store(path, "FULL", None)  # reopened: both sessions are there
        assert sorted(c.db.peers()) == [PEER, bytes(range(1, 33))]
        await _release_store(path, c)

    asyncio.run(run())


def test_a_state_source_is_read_once_per_commit_with_what_it_describes(tmp_path: Path) -> None:
    """SessionStore with a StateSource: the state is read once when the batch is formed, after
    every call accepted so far, and lands in the same transaction as those calls; a later call's
    source is read for the next commit."""
    _new(tmp_path).close()

    async def main() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB, commit_interval=0.05)
        counter = {"sent": 0}
        reads: list[int] = []

        def source() -> bytes:
            reads.append(counter["sent"])
            return b"sent=%d" % counter["sent"]

        futs = []
        for i in range(5):  # one batch: five appends, one read of the state, after all five
            counter["sent"] += 1
            futs.append(store.append_outbox(PEER, b"m%d" % i, channel_state=source))
        await asyncio.gather(*futs)
        assert reads == [5]
        assert store.channel_state(PEER) == b"sent=5"
        counter["sent"] += 1
        await store.append_outbox(PEER, b"m5", channel_state=source)
        assert reads == [5, 6]
        await store.append_outbox(PEER, b"m6")  # no source given: the state is not read again
        assert reads == [5, 6]
        await store.close()

    asyncio.run(main())
    db = SessionDB(tmp_path / SESSION_DB)
    assert db.channel_state(PEER) == b"sent=6"
    assert [e.payload for e in db.outbox(PEER)] == [b"m%d" % i for i in range(7)]
    db.close()
