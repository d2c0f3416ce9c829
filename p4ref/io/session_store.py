"""Session storage: outbox, inbox, watermarks and generations per peer, on SQLite (p4-04 §4.2).

One database per profile, ``<home>/session.db`` (mode 0600), in WAL mode, holds for every paired
peer what the session machine must find again after a crash or a reboot [SES-7]:

    peer    one row per peer identity key: our incarnation, the peer's incarnation, tx, acked,
            rx (= rx_durable), the retired peer incarnations, and the highest generation, which is
            also the rendezvous high-water mark of p4-03 RDV-52 (:meth:`SessionDB.last_generation`
            / :meth:`SessionDB.advance` have the semantics of :class:`~p4ref.io.replay_store
            .ReplayStore`, so the signalling driver can switch to this file)
    outbox  (peer, seq) -> payload, or a reference to bulk data kept elsewhere, and its size:
            the messages accepted by ``send`` and not yet acknowledged by the peer [SES-5]; the
            link's channel layer stores every item carrying bytes of a file being sent as a
            reference to the file region (:mod:`p4ref.io.fileref`, p4-06 FIL-39), and gives
            ``session_state`` the ``resolve`` that reads it back
    inbox   (peer, inc, seq) -> payload, delivered flag, in arrival order: the peer's messages
            that are durable here (so they may be acknowledged, SES-6) and that the application
            has not confirmed yet [SES-38]; confirming deletes the row and releases its quota
    chanstate  peer -> the channel multiplexer's persistent state (p4-05), written in the same
            transaction as the outbox append or inbox confirm that changed it (CHN-30); a file
            created before this table existed gets it when opened for writing

Theory of operation
-------------------
*Plan, apply, commit.*  Every mutating call is split in two.  The *plan* step checks the call
against the in-memory model of each peer (quotas, sequence order) and updates that model; it
never touches SQLite, so it is cheap and raises typed errors at once (SES_OUTBOX_FULL,
UNEXPECTED_MESSAGE).  The *apply* step executes the SQL of the plan inside the open transaction,
carrying the peer counters as the plan saw them (the generation is the exception: it is only
ever raised, by its own statement).  :meth:`SessionDB.commit` then writes each touched peer row
once and commits: that is **group commit**, one transaction (one WAL sync at
``synchronous=FULL``) for any number of messages.  Nothing is durable, and so nothing may be
sent or acknowledged, before the commit that carries it returned [SES-5, SES-6].

*Sync core, thin asyncio batcher.*  :class:`SessionDB` is synchronous and single-threaded (tests,
benchmarks and tools use it directly).  :class:`SessionStore` wraps it for asyncio: each call
plans at once in the event-loop thread (OUTBOX_FULL is raised by the call, seqs follow the order
of calls) and returns a future that is done when the change is durable; a batch's statements run
in the event-loop thread, in the order of the calls (reads too, so a read sees exactly the calls
made before it), and its COMMIT in one dedicated writer thread (``SessionStore._commit_batch``
says why the statements do not run there too).  A commit at ``synchronous=FULL`` is an
``fsync`` (0.1 … 20 ms); in the event-loop thread it would stall every aiortc timer and socket for
that long, and a second connection in another thread could not see the first one's uncommitted
rows.  No statement runs while a COMMIT does: calls made meanwhile wait for the next batch.  The
writer never
waits for more work: a batch is whatever accumulated while the previous commit ran, so a lone
message costs one commit and a burst shares one (batch size follows the load).  Under a steady
load that alone commits almost every message on its own: the previous commit is over before the
next message arrives.  So when calls came while a commit ran (the writer has more work at once:
that is load), or when nobody waits for the calls at once (*lazy* ones: an inbox row, whose ACK
waits ACK_DELAY_MS anyway, and the release of ACKed outbox rows), the next commit starts no
earlier than ``COMMIT_INTERVAL`` (20 ms) after the last one started, with whatever else comes
meanwhile.  Any other call that finds the writer idle commits at once, so a sender that awaits
each call before the next is never slowed; otherwise a call waits ≤ 20 ms more.
An ``fsync`` costs CPU as well as time (about 0.1 ms of system time here), and so do the thread
hand-over and the wake-ups around it, and a small transaction rewrites the same b-tree and
freelist pages for each message: bench/bench_session.py (a) measured 0.40× → 0.67× of raw
aiortc and the receiver's added CPU 118 → 36 ms/MiB with a 4 ms interval; at 10 ms the writer
thread's CPU per MiB fell again by a third on the receiver (23.0/17.0 → 13.5/10.5 ms/MiB, two
runs of 7 pairs each) and the ratio rose 0.60/0.63× → 0.68/0.72× (2026-12-04); at 20 ms, two
more interleaved runs of 7 pairs against 10 ms: writer thread 4.0 → 3.0 ms/MiB on the sender,
2.0/1.7 → 0.7/1.0 on the receiver, (a) 0.85/0.85× → 0.88/0.86×, (b) 0.52/0.45× → 0.53/0.58×
(2026-12-04, after SES-76 had removed the receiver's inbox rows).

*Bulk pacing.*  Under a bulk load the interval is ``BULK_COMMIT_INTERVAL`` (50 ms): the messages
planned over the last ``BULK_SAMPLE`` (0.1 s) or more came at ``BULK_RATE`` (1 MiB/s) or faster
and were ``BULK_MESSAGE`` (4 KiB) or larger on average (inbox rows count as much as outbox
appends: a receiver's commits are the ones its ACKs and CREDITs wait for).  Until
``BULK_LINGER`` (0.5 s) after the last commit of such a load, a call that finds the writer idle
waits as well: a sender between two credit grants, or a receiver between two bursts, would
otherwise start a one-message commit each time.  Small messages (chat, clipboard, control) keep
the 20 ms, and an awaited call after a bulk load commits at once again.  Why: with both ends on
2 shared cores, each commit costs more than the writer thread's CPU: its fsync's journal work
in the kernel, the ACK and the CREDIT that follow it, the wake-ups of both processes.
bench_session (a), 9 interleaved pairs × 50 MiB against the same code at 20 ms: 3.5 → 1.7
commits per MiB on the sender and 3.6 → 1.3 on the receiver, CPU P⁴ adds +19 → +4 % (sender)
and +12 → −2 % (receiver), throughput 0.91× → 1.00× of raw aiortc (2026-12-05).  The cost: a
send under a bulk load waits ≤ 50 ms for its commit instead of ≤ 20 ms, and a channel's credit
comes back up to 50 ms later: bench/bench_link_cpu.py, whose stand-in transport has no limit of
its own, moves one channel at 31 MiB/s instead of 42 (aiortc's data channel carries 13–20 MiB/s
here).

*Confirmed before written.*  An inbox row is planned when the message arrives, and the link
hands the message to the application at once (``store_inbox(..., planned=...)``).  When the
application confirms it before the row was taken into a batch, the confirm cancels the planned
row: the batch writes neither the INSERT nor the DELETE, only the peer row with rx (and the
channel state), which is what the two would have left.  The ACK still waits for that commit, so
it covers a message that is durably consumed (p4-04 SES-6, SES-76).  bench_session (a), whose
application confirms at once, measured the receiver's writer thread at 1.7/2.0 ms of CPU per MiB
instead of 4.0/3.3 (2026-12-04).

*Durability levels.*  ``synchronous="FULL"`` (the default) syncs the WAL at every commit: a
committed row survives power loss.  ``"NORMAL"`` syncs only at checkpoints: a committed row
survives a process crash (SIGKILL) but the last commits may vanish on power loss.  ``OFF`` is not
offered.  ``tests/test_session_store.py`` proves both claims (a SIGKILL test, and a power-loss
simulation through a SQLite VFS that drops every write not followed by a sync); p4-04 §8.8 says
which level the reference claims.

*Strict opening; never rewritten.*  A database is created complete under a temporary name and
linked into place, so ``session.db`` is either absent or whole.  An existing file is checked
before it is opened for writing: a symlink or a group/other-readable file is PROFILE_INSECURE; not
a regular file, not SQLite, truncated, another application's database (``application_id``),
failing ``PRAGMA quick_check``, or not in WAL mode is PROFILE_CORRUPT; a newer schema
(``user_version``) is PROFILE_VERSION_UNSUPPORTED.  The checks run on a read-only connection, so a
refused file is never written (not even by a checkpoint on close); it is left for the user.  The
file is then held with ``locking_mode=EXCLUSIVE``: a second process gets PROFILE_LOCKED.  A write
that fails (disk full, I/O error) rolls back and breaks the store object (INTERNAL_ERROR on every
later call); reopening resumes from what was committed.

Limits.  Sequence numbers of stored rows must be below 2^62 (SQLite integers are signed 64-bit,
and renumbering parks rows above 2^62); counters in the peer row (tx, acked, rx, generation) are
stored as 8-byte big-endian blobs and take any uint64.  ``PRAGMA quick_check`` at every opening
reads the whole file (about a second per few hundred MiB).

Wiring (the per-peer link, not here): feed ``SessionMachine.send`` from ``append_outbox``'s
``then``; store every MESSAGE event with ``store_inbox`` and call ``inbox_committed`` with the rx
it returns; call ``ack_outbox`` on ACKED and ``save_session(peer, machine.persistent_state())``
after CONNECTION_OPEN and SESSION_RESET, in event order; resume machines from
``session_state``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from p4ref.errors import ErrorCode, LocalProtocolError, P4Error
from p4ref.io import _platform
from p4ref.io.store import ProfileError, _check_mode
from p4ref.session import SessionState

__all__ = [
    "APPLICATION_ID",
    "SCHEMA_VERSION",
    "SESSION_DB",
    "Durability",
    "InboxMessage",
    "OutboxEntry",
    "Quota",
    "ReplayMarks",
    "SessionDB",
    "SessionStore",
    "SessionStoreError",
    "StateSource",
    "Watermarks",
]

log = logging.getLogger(__name__)

SESSION_DB = "session.db"
APPLICATION_ID = 0x50345331  # "P4S1": PRAGMA application_id of a P4 session database
SCHEMA_VERSION = 1  # PRAGMA user_version
PAGE_SIZE = 16384
_MAGIC = b"SQLite format 3\x00"
_U64_MAX = (1 << 64) - 1
_ROW_SEQ_MAX = (1 << 62) - 1
_PARK = 1 << 62  # renumbering parks rows above every real seq first
_INC_LEN = 16
_NO_INC = bytes(_INC_LEN)
MAX_PAYLOAD = 16371  # p4-04 MAX_PAYLOAD
MAX_REF = 4096  # bytes of a bulk-data reference
#: seconds between the starts of two commits under load (see "Sync core" above)
COMMIT_INTERVAL = 0.020
#: the same under a bulk load: over the last BULK_SAMPLE seconds or more, messages of
#: BULK_MESSAGE bytes or more on average came at BULK_RATE bytes per second or faster; until
#: BULK_LINGER seconds after the last commit of such a load, a call that finds the writer idle
#: waits too ("Bulk pacing" above)
BULK_COMMIT_INTERVAL = 0.050
BULK_RATE = 1 << 20
BULK_MESSAGE = 4096
BULK_SAMPLE = 0.1
BULK_LINGER = 0.5

Durability = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE peer (
    id         INTEGER PRIMARY KEY,
    peer_pub   BLOB NOT NULL UNIQUE CHECK (length(peer_pub) = 32),
    inc        BLOB CHECK (inc IS NULL OR length(inc) = 16),  -- NULL: no session yet
    peer_inc   BLOB NOT NULL CHECK (length(peer_inc) = 16),   -- 16 zero bytes: none known
    tx         BLOB NOT NULL CHECK (length(tx) = 8),          -- uint64 big-endian
    acked      BLOB NOT NULL CHECK (length(acked) = 8),
    rx         BLOB NOT NULL CHECK (length(rx) = 8),          -- rx_durable
    generation BLOB NOT NULL CHECK (length(generation) = 8),  -- SES-11 and RDV-52
    retired    BLOB NOT NULL CHECK (length(retired) % 16 = 0) -- oldest first
) STRICT;
CREATE TABLE outbox (
    peer    INTEGER NOT NULL REFERENCES peer(id),
    seq     INTEGER NOT NULL CHECK (seq > 0),
    payload BLOB,                 -- the message, or NULL when ref names bulk data elsewhere
    ref     TEXT,
    size    INTEGER NOT NULL CHECK (size >= 0),
    PRIMARY KEY (peer, seq),
    CHECK ((payload IS NULL) <> (ref IS NULL))
) STRICT, WITHOUT ROWID;
CREATE TABLE inbox (
    id        INTEGER PRIMARY KEY,  -- arrival order = stream order
    peer      INTEGER NOT NULL REFERENCES peer(id),
    inc       BLOB NOT NULL CHECK (length(inc) = 16),
    seq       INTEGER NOT NULL CHECK (seq > 0),
    payload   BLOB NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    UNIQUE (peer, inc, seq)
) STRICT;
CREATE TABLE chanstate (
    peer  INTEGER PRIMARY KEY REFERENCES peer(id),
    state BLOB NOT NULL  -- p4-05 ChannelMux.persistent_state(), written with what changed it
) STRICT;
"""
#: Tables a database of schema version 1 may lack (added in a draft revision): created on open.
_ADDED = {"chanstate"}
_SET_CHANSTATE = ("INSERT INTO chanstate (peer, state) VALUES (?, ?)"
                  " ON CONFLICT (peer) DO UPDATE SET state = excluded.state")


class SessionStoreError(P4Error):
    """The session database is unusable: PROFILE_CORRUPT, PROFILE_VERSION_UNSUPPORTED,
    PROFILE_INSECURE, PROFILE_LOCKED, or INTERNAL_ERROR after a failed write."""


@dataclass(frozen=True, slots=True)
class Quota:
    """Per-peer bounds [SES-36]. Bytes are the bytes stored in the database (a reference to bulk
    data counts its own length, not the data's)."""

    outbox_messages: int = 100_000  # the machine's default max_outbox
    outbox_bytes: int = 256 << 20
    inbox_messages: int = 100_000
    inbox_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        if min(self.outbox_messages, self.inbox_messages) < 1 or min(
                self.outbox_bytes, self.inbox_bytes) < MAX_PAYLOAD:
            raise ValueError("a quota admits at least one message of MAX_PAYLOAD bytes")


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    seq: int
    payload: bytes | None
    ref: str | None
    size: int


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """A stored message of the peer's stream; ``(inc, seq)`` is its message id [SES-39]."""

    inc: bytes
    seq: int
    payload: bytes
    delivered: bool


@dataclass(frozen=True, slots=True)
class Watermarks:
    """The positions of one peer's streams, as accepted (durable after the next commit)."""

    tx_next: int  # the seq the next append gets
    acked: int  # the peer acknowledged our stream up to here
    rx: int  # rx_durable: the peer's stream is stored up to here (current peer incarnation)
    confirmed: int  # ... and confirmed by the application up to here


class DBConnection(Protocol):
    """The part of a DB-API connection the store uses (``sqlite3`` in autocommit mode, or an
    ``apsw`` connection in the power-loss test): SQL in, rows out, explicit BEGIN/COMMIT."""

    def execute(self, sql: str, parameters: Any = ..., /) -> Any: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any: ...
    def close(self) -> None: ...


Connect = Callable[[Path, bool], DBConnection]


def _sqlite_connect(path: Path, read_only: bool) -> DBConnection:
    uri = path.resolve().as_uri() + ("?mode=ro" if read_only else "?mode=rw")
    return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False,
                           timeout=0.0)


def _u64(b: bytes) -> int:
    return int.from_bytes(b, "big")


def _b64(n: int) -> bytes:
    return n.to_bytes(8, "big")


def _check_pub(peer_pub: bytes) -> bytes:
    if type(peer_pub) is bytes and len(peer_pub) == 32:  # on every call: the common case first
        return peer_pub
    if not isinstance(peer_pub, bytes | bytearray) or len(peer_pub) != 32:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "a peer identity key is 32 bytes")
    return bytes(peer_pub)


def _check_u64(n: int, what: str, top: int = _U64_MAX) -> int:
    if type(n) is not int or not 0 <= n <= top:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{what} is 0 … {top}")
    return n


@dataclass
class _Peer:
    """The in-memory model of one peer: what has been *accepted* (planned); the database holds
    the same after the next commit."""

    id: int
    pub: bytes
    inc: bytes | None = None
    peer_inc: bytes = _NO_INC
    tx: int = 0
    acked: int = 0
    rx: int = 0
    generation: int = 0
    retired: tuple[bytes, ...] = ()
    out_sizes: collections.deque[int] = field(default_factory=collections.deque)  # acked+1 …
    out_bytes: int = 0
    inbox: dict[tuple[bytes, int], int] = field(default_factory=dict)  # id -> stored bytes
    in_bytes: int = 0
    stored: bool = False  # the row exists in the database (after apply)
    chan_state: bytes | None = None  # p4-05 ChannelMux.persistent_state(), as accepted

    def row(self) -> tuple[Any, ...]:
        """A snapshot of the peer row (:func:`_peer_params` makes the upsert's parameters of
        it), without ``generation``: that one is only ever raised, by its own statement
        (:data:`_RAISE_GENERATION`), so a snapshot planned earlier can never lower it."""
        return (self.id, self.pub, self.inc, self.peer_inc, self.tx, self.acked, self.rx,
                self.retired)  # encoded by _peer_params, once per commit


def _peer_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A :meth:`_Peer.row` snapshot as :data:`_UPSERT_PEER`'s parameters."""
    pid, pub, inc, peer_inc, tx, acked, rx, retired = row
    return (pid, pub, inc, peer_inc, _b64(tx), _b64(acked), _b64(rx), b"".join(retired))


_UPSERT_PEER = (
    "INSERT INTO peer (id, peer_pub, inc, peer_inc, tx, acked, rx, retired, generation)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, X'0000000000000000') ON CONFLICT (id) DO UPDATE SET"
    " inc = excluded.inc, peer_inc = excluded.peer_inc, tx = excluded.tx,"
    " acked = excluded.acked, rx = excluded.rx, retired = excluded.retired")
# 8-byte big-endian blobs compare like the numbers they hold
_RAISE_GENERATION = (
    "INSERT INTO peer (id, peer_pub, inc, peer_inc, tx, acked, rx, retired, generation)"
    " VALUES (?, ?, NULL, X'00000000000000000000000000000000', X'0000000000000000',"
    " X'0000000000000000', X'0000000000000000', X'', ?) ON CONFLICT (id) DO UPDATE SET"
    " generation = excluded.generation WHERE excluded.generation > peer.generation")


#: An applied plan: SQL against the connection; ``flush`` collects the peer rows to write.
_Apply = Callable[[DBConnection, dict[int, tuple[Any, ...]]], None]
#: Gives the channel state now (``ChannelMux.persistent_state``), in the event-loop thread.
StateSource = Callable[[], bytes]


class _Mark:
    """Write the peer row as planned at this point (``SessionDB._touch``).  This and the row
    classes below are small objects rather than closures: a plan lives until its commit, and a
    closure with its cells is several objects for the cyclic GC's older generations to walk
    (docs/performance.md)."""

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row

    def __call__(self, flush: dict[int, tuple[Any, ...]]) -> None:
        flush[self.row[0]] = self.row


class _OutboxRow:
    """The apply step of one planned outbox row, with the channel state it carries."""

    __slots__ = ("chan", "mark", "row")

    def __init__(self, row: tuple[Any, ...], chan: tuple[int, bytes] | None,
                 mark: _Mark) -> None:
        self.row = row
        self.chan = chan
        self.mark = mark

    def __call__(self, db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
        db.execute("INSERT INTO outbox (peer, seq, payload, ref, size) VALUES (?, ?, ?, ?, ?)",
                   self.row)
        if self.chan is not None:
            db.execute(_SET_CHANSTATE, self.chan)
        self.mark(flush)


class _InboxRow:
    """The apply step of one planned inbox row.  :meth:`cancel` (the application confirmed the
    message before the row was applied) leaves only the peer row, which carries rx."""

    __slots__ = ("key", "mark", "row")

    def __init__(self, row: tuple[int, bytes, int, bytes],
                 mark: _Mark) -> None:
        self.row: tuple[int, bytes, int, bytes] | None = row
        self.mark = mark
        self.key: tuple[bytes, bytes, int] | None = None  # (peer, inc, seq), SessionStore's

    def cancel(self) -> None:
        self.row = None

    def __call__(self, db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
        if self.row is not None:
            db.execute("INSERT INTO inbox (peer, inc, seq, payload) VALUES (?, ?, ?, ?)",
                       self.row)
        self.mark(flush)


class _Confirm:
    """The apply step of a confirmation: the row's DELETE (``key``; None when the row was never
    written or is gone) and the channel state."""

    __slots__ = ("chan", "key")

    def __init__(self, key: tuple[int, bytes, int] | None,
                 chan: tuple[int, bytes] | None) -> None:
        self.key = key
        self.chan = chan

    def __call__(self, db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
        if self.key is not None:
            db.execute("DELETE FROM inbox WHERE peer = ? AND inc = ? AND seq = ?", self.key)
        if self.chan is not None:
            db.execute(_SET_CHANSTATE, self.chan)


def _corrupt(path: Path, why: str) -> SessionStoreError:
    return SessionStoreError(
        ErrorCode.PROFILE_CORRUPT,
        f"{path} is not a usable P4 session database ({why}); it was left untouched — restore it"
        " from a backup or move it away (the sessions then start anew, SESSION_RESET)")


class SessionDB:
    """The synchronous store (see the module docstring). Not thread-safe: one thread at a time
    (:class:`SessionStore` plans in the loop thread and applies in its writer thread, never at
    the same time on the same data)."""

    def __init__(self, path: Path | str, *, synchronous: Durability = "FULL",
                 quota: Quota | None = None, create: bool = True,
                 connect: Connect | None = None) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous is FULL or NORMAL")
        self.path = Path(path)
        self.synchronous: Durability = synchronous
        self.quota = quota or Quota()
        self.commits = 0  # transactions committed (for benchmarks and tests)
        self._connect = connect or _sqlite_connect
        self._broken: BaseException | None = None
        self._txn = False
        self._flush: dict[int, tuple[Any, ...]] = {}
        self._peers: dict[bytes, _Peer] = {}
        if not self._exists():
            if not create:
                raise SessionStoreError(ErrorCode.PROFILE_NOT_FOUND, f"no {self.path}")
            self._create()
        self._validate()
        self._db = self._open_rw()

    # ------------------------------------------------------------------ opening

    def _exists(self) -> bool:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return False
        try:
            _check_mode(self.path, st, is_dir=False)
        except ProfileError as e:
            raise SessionStoreError(e.code, e.message) from None
        return True

    def _create(self) -> None:
        """Build the schema under a temporary name, then link it into place (never replacing a
        file that appeared meanwhile): ``session.db`` is absent or complete."""
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-" + self.path.name + ".", dir=directory)
        tmp = Path(tmp_name)
        try:
            _platform.make_private(fd)
            os.close(fd)
            db = sqlite3.connect(tmp, isolation_level=None)
            try:
                # 16 KiB pages: a full-size message spans 2 pages instead of 5, which takes the
                # CPU per MiB of insert + delete from about 6.4 to 4.1 ms (bench/bench_store.py)
                db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                db.execute("PRAGMA journal_mode = WAL")
                db.execute("BEGIN")
                for statement in _statements():
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                db.execute("COMMIT")
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                db.close()  # the last connection: checkpoints and removes -wal / -shm
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use it
                os.link(tmp, self.path)
            _platform.fsync_dir(directory)
        finally:
            for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def _validate(self) -> None:
        """Strict checks on a read-only connection: nothing is written to a refused file."""
        try:
            with open(self.path, "rb") as f:
                header = f.read(100)
        except OSError as e:
            raise _corrupt(self.path, f"unreadable: {e.strerror}") from None
        if len(header) < 100 or not header.startswith(_MAGIC):
            raise _corrupt(self.path, "not an SQLite database, or truncated")
        app_id = int.from_bytes(header[68:72], "big")
        version = int.from_bytes(header[60:64], "big")
        if app_id != APPLICATION_ID:
            raise _corrupt(self.path, f"application_id 0x{app_id:08x}: another program's database")
        if version > SCHEMA_VERSION:
            raise SessionStoreError(
                ErrorCode.PROFILE_VERSION_UNSUPPORTED,
                f"{self.path} has schema version {version}; this p4 reads up to"
                f" {SCHEMA_VERSION} (a newer p4 wrote it); it was left untouched")
        if version != SCHEMA_VERSION or header[18:20] != b"\x02\x02":
            raise _corrupt(self.path, f"schema version {version}, WAL {header[18:20].hex()}")
        # a read-only connection may create an empty -wal and a -shm (the WAL index, unused by
        # the exclusive connection that follows): removed again, so a refused file is left as
        # it was found and an accepted one does not keep a stale index beside it
        sidecars = [Path(f"{self.path}{x}") for x in ("-wal", "-shm")]
        created = [p for p in sidecars if not p.exists()]
        try:
            db = self._connect(self.path, True)
        except sqlite3.Error as e:
            raise self._sql_error(e) from None
        try:
            ((app_id,),) = db.execute("PRAGMA application_id").fetchall()
            ((version,),) = db.execute("PRAGMA user_version").fetchall()
            if (app_id, version) != (APPLICATION_ID, SCHEMA_VERSION):
                raise _corrupt(self.path, f"application_id 0x{app_id:08x}, version {version}")
            check = [r[0] for r in db.execute("PRAGMA quick_check").fetchall()]
            if check != ["ok"]:
                raise _corrupt(self.path, "quick_check: " + "; ".join(map(str, check[:3])))
            tables = {r[0]: r[1] for r in db.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'table'").fetchall()}
            want = {s.split()[2]: s for s in _statements()}
            if not set(want) - _ADDED <= set(tables) <= set(want):
                raise _corrupt(self.path, f"tables {sorted(tables)}")
            self._load(db)
        except sqlite3.Error as e:
            raise self._sql_error(e) from None
        finally:
            db.close()
            for p in created:
                with contextlib.suppress(OSError):
                    if p.name.endswith("-shm") or p.stat().st_size == 0:
                        p.unlink()

    def _sql_error(self, e: sqlite3.Error) -> SessionStoreError:
        code = getattr(e, "sqlite_errorcode", None)
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(e):
            return SessionStoreError(ErrorCode.PROFILE_LOCKED,
                                     f"{self.path} is in use by another p4 process")
        return _corrupt(self.path, str(e))

    def _open_rw(self) -> DBConnection:
        try:
            db = self._connect(self.path, False)
        except sqlite3.Error as e:
            raise self._sql_error(e) from None
        try:
            # EXCLUSIVE: one process owns the file for the lifetime of this object, and the
            # WAL index lives in heap memory (no -shm file)
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute(f"PRAGMA synchronous = {self.synchronous}")
            db.execute("BEGIN IMMEDIATE")
            for statement in _statements():  # a table added since the file was created
                if statement.split()[2] in _ADDED:
                    db.execute(statement.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS", 1))
            db.execute("COMMIT")
            (mode,) = db.execute("PRAGMA journal_mode").fetchone()
            if str(mode).lower() != "wal":
                raise _corrupt(self.path, f"journal_mode {mode}")
        except sqlite3.Error as e:
            db.close()
            raise self._sql_error(e) from None
        except BaseException:
            db.close()
            raise
        return db

    def _load(self, db: DBConnection) -> None:
        """The in-memory model, read on the validating read-only connection; an inconsistency
        is PROFILE_CORRUPT before anything is opened for writing."""
        for pid, pub, inc, peer_inc, tx, acked, rx, gen, retired in db.execute(
                "SELECT id, peer_pub, inc, peer_inc, tx, acked, rx, generation, retired"
                " FROM peer").fetchall():
            p = _Peer(pid, bytes(pub), None if inc is None else bytes(inc), bytes(peer_inc),
                      _u64(tx), _u64(acked), _u64(rx), _u64(gen),
                      tuple(retired[i:i + 16] for i in range(0, len(retired), 16)), stored=True)
            self._peers[p.pub] = p
        by_id = {p.id: p for p in self._peers.values()}
        for pid, seq, stored in db.execute(
                "SELECT peer, seq, coalesce(length(payload), length(CAST(ref AS BLOB)))"
                " FROM outbox ORDER BY peer, seq").fetchall():
            q = by_id.get(pid)
            if q is None or seq != q.acked + len(q.out_sizes) + 1:
                raise _corrupt(self.path, "the outbox is not contiguous")
            q.out_sizes.append(stored)
            q.out_bytes += stored
        for p in self._peers.values():
            if p.out_sizes and p.acked + len(p.out_sizes) != p.tx:
                raise _corrupt(self.path, "the outbox does not end at tx")
        for pid, inc, seq, n in db.execute(
                "SELECT peer, inc, seq, length(payload) FROM inbox").fetchall():
            r = by_id.get(pid)
            if r is None:
                raise _corrupt(self.path, "an inbox row of no peer")
            r.inbox[(bytes(inc), seq)] = n
            r.in_bytes += n
        if db.execute("SELECT 1 FROM sqlite_schema WHERE name = 'chanstate'").fetchall():
            for pid, state in db.execute("SELECT peer, state FROM chanstate").fetchall():
                c = by_id.get(pid)
                if c is None:
                    raise _corrupt(self.path, "channel state of no peer")
                c.chan_state = bytes(state)

    def close(self) -> None:
        """Commit what is pending (if the store is healthy) and close."""
        if self._broken is None and self._txn:
            self.commit()
        self._db.close()

    def __enter__(self) -> SessionDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ transactions

    def _check(self) -> None:
        if self._broken is not None:
            raise SessionStoreError(ErrorCode.INTERNAL_ERROR,
                                    f"{self.path}: an earlier write failed ({self._broken});"
                                    " reopen the store")

    def _apply(self, op: _Apply) -> None:
        self._check()
        try:
            if not self._txn:
                self._db.execute("BEGIN")
                self._txn = True
            op(self._db, self._flush)
        except Exception as e:
            self._fail(e)
            raise self._wrap(e) from None

    def commit(self) -> None:
        """Write the touched peer rows and commit: everything applied so far is durable at the
        configured level when this returns."""
        self.stage_commit()
        if not self._txn:
            return
        try:
            self._db.execute("COMMIT")
        except Exception as e:
            self._fail(e)
            raise self._wrap(e) from None
        self._txn = False
        self.commits += 1

    def stage_commit(self) -> None:
        """The CPU part of :meth:`commit`: write the touched peer rows into the open
        transaction (no I/O: the pages stay in SQLite's cache until the COMMIT); :meth:`commit`
        after it only writes the WAL and syncs."""
        self._check()
        if not self._txn or not self._flush:
            return
        try:
            self._db.executemany(_UPSERT_PEER, [_peer_params(r) for r in self._flush.values()])
        except Exception as e:
            self._fail(e)
            raise self._wrap(e) from None
        self._flush.clear()

    def _fail(self, e: BaseException) -> None:
        self._broken = e
        self._flush.clear()
        if self._txn:
            with contextlib.suppress(Exception):
                self._db.execute("ROLLBACK")
            self._txn = False

    def _wrap(self, e: BaseException) -> P4Error:
        if isinstance(e, P4Error):
            return e
        return SessionStoreError(ErrorCode.INTERNAL_ERROR,
                                 f"{self.path}: write failed ({e}); nothing of this transaction"
                                 " was stored; reopen the store")

    # ------------------------------------------------------------------ plans (no SQL)

    def _peer(self, peer_pub: bytes, *, create: bool = False) -> _Peer:
        p = self._peers.get(peer_pub) if type(peer_pub) is bytes else None
        if p is not None:
            return p
        pub = _check_pub(peer_pub)
        p = self._peers.get(pub)
        if p is None:
            if not create:
                raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                         f"no session with peer {pub.hex()[:16]}…")
            p = _Peer(max((q.id for q in self._peers.values()), default=0) + 1, pub)
            self._peers[pub] = p
        return p

    @staticmethod
    def _touch(p: _Peer) -> _Mark:
        """Capture the peer row as planned now, for the commit that carries this plan (plans
        are applied in the order they were made, so the last one applied is the newest)."""
        p.stored = True
        return _Mark(p.row())

    def _session(self, peer_pub: bytes) -> _Peer:
        p = self._peer(peer_pub)
        if p.inc is None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "no session state yet")
        return p

    def plan_create_session(self, peer_pub: bytes, inc: bytes) -> _Apply:
        if len(inc) != _INC_LEN or inc == _NO_INC:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "an incarnation is 16 bytes, not 0")
        p = self._peer(peer_pub, create=True)
        if p.inc is not None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "the session exists")
        p.inc = bytes(inc)
        mark = self._touch(p)
        return lambda db, flush: mark(flush)

    def plan_save_session(self, peer_pub: bytes, state: SessionState) -> _Apply:
        """Take the machine's persistent state (after CONNECTION_OPEN or SESSION_RESET) [SES-7]:
        incarnations, retired ones, generation (only grows), ``acked`` (only grows within an
        incarnation) and ``rx`` (only grows within a peer incarnation; set anew when the peer's
        incarnation changed). When our incarnation changed (re-incarnation, p4-04 §9 rule 2)
        the outbox is renumbered from 1, as the machine did."""
        p = self._session(peer_pub)
        if len(state.inc) != _INC_LEN or len(state.peer_inc) != _INC_LEN or any(
                len(r) != _INC_LEN for r in state.retired):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "incarnations are 16 bytes")
        for n in (state.tx, state.acked, state.rx, state.generation):
            _check_u64(n, "a counter")
        shift = 0
        if state.inc != p.inc:
            # the machine renumbered its outbox from 1; rows appended since (not yet handed to
            # the machine) follow in the new numbering too
            if state.tx > len(p.out_sizes) or state.acked != 0:
                raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                         "a new incarnation renumbers the whole outbox from 1")
            shift = p.acked
            p.inc, p.tx, p.acked = bytes(state.inc), len(p.out_sizes), 0
        else:
            if state.tx > p.tx:  # the machine may lag (rows durable, not yet sent), never lead
                raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                         f"tx {state.tx} above the stored {p.tx} (SES-5)")
            if state.acked > p.acked:
                self._release_out(p, state.acked)
        if state.peer_inc != p.peer_inc:
            p.peer_inc, p.rx = bytes(state.peer_inc), state.rx
        else:
            p.rx = max(p.rx, state.rx)
        p.retired = tuple(bytes(r) for r in state.retired)
        p.generation = max(p.generation, state.generation)
        mark = self._touch(p)
        pid, through = p.id, p.acked
        raise_gen = (p.id, p.pub, _b64(p.generation))

        def apply(db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
            if shift:  # two steps: a one-step shift could collide with the primary key
                db.execute("UPDATE outbox SET seq = seq + ? WHERE peer = ?", (_PARK, pid))
                db.execute("UPDATE outbox SET seq = seq - ? WHERE peer = ?", (_PARK + shift, pid))
            db.execute("DELETE FROM outbox WHERE peer = ? AND seq <= ?", (pid, through))
            db.execute(_RAISE_GENERATION, raise_gen)
            mark(flush)
        return apply

    def plan_append_outbox(self, peer_pub: bytes, payload: bytes | None = b"", *,
                           ref: str | None = None, size: int | None = None,
                           channel_state: bytes | None = None) -> tuple[int, _Apply]:
        """Accept one message (or a reference to bulk data) under the next seq; SES_OUTBOX_FULL
        when the quota is reached [SES-36].  ``channel_state`` (p4-05 CHN-30), when given, is
        written in the same transaction."""
        p = self._session(peer_pub)
        if (payload is None) == (ref is None):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "a payload or a ref, not both")
        if payload is not None:
            payload = bytes(payload)
            if len(payload) > MAX_PAYLOAD:
                raise LocalProtocolError(ErrorCode.FRAME_TOO_LARGE, f"{len(payload)} bytes")
            stored = len(payload)
            size = stored if size is None else size
        else:
            assert ref is not None
            stored = len(ref.encode())
            if stored > MAX_REF or size is None:
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID,
                                         f"a ref has at most {MAX_REF} bytes and a size")
        _check_u64(size, "size", _ROW_SEQ_MAX)
        q = self.quota
        if len(p.out_sizes) >= q.outbox_messages or (
                p.out_bytes + stored > q.outbox_bytes and p.out_sizes):
            raise LocalProtocolError(
                ErrorCode.SES_OUTBOX_FULL,
                f"outbox full: {len(p.out_sizes)} messages, {p.out_bytes} bytes stored"
                f" (quota {q.outbox_messages}, {q.outbox_bytes}); wait for the peer's ACKs")
        seq = _check_u64(p.tx + 1, "seq", _ROW_SEQ_MAX)
        chan = self._plan_chan_state(p, channel_state)
        p.tx = seq
        p.out_sizes.append(stored)
        p.out_bytes += stored
        return seq, _OutboxRow((p.id, seq, payload, ref, size), chan, self._touch(p))

    def plan_channel_state(self, peer_pub: bytes, state: bytes) -> _Apply:
        """Write the channel state (p4-05 CHN-30) alone, in whatever transaction carries the
        changes it describes (:class:`SessionStore` adds it to the end of a batch)."""
        chan = self._plan_chan_state(self._session(peer_pub), state)
        assert chan is not None
        return lambda db, flush: db.execute(_SET_CHANSTATE, chan)

    @staticmethod
    def _plan_chan_state(p: _Peer, state: bytes | None) -> tuple[int, bytes] | None:
        if state is None:
            return None
        if not isinstance(state, bytes | bytearray):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "channel state is bytes")
        p.chan_state = bytes(state)
        return (p.id, p.chan_state)

    def _release_out(self, p: _Peer, through: int) -> None:
        while p.acked < through:
            p.out_bytes -= p.out_sizes.popleft()
            p.acked += 1

    def plan_ack_outbox(self, peer_pub: bytes, through: int) -> _Apply:
        """The peer acknowledged up to ``through`` (event ACKED): drop those rows [SES-30]."""
        p = self._session(peer_pub)
        _check_u64(through, "through")
        if through > p.tx:
            raise LocalProtocolError(ErrorCode.SES_ACK_INVALID, f"ACK {through} > tx {p.tx}")
        if through <= p.acked:
            return lambda db, flush: None
        self._release_out(p, through)
        mark = self._touch(p)
        pid = p.id

        def apply(db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
            db.execute("DELETE FROM outbox WHERE peer = ? AND seq <= ?", (pid, through))
            mark(flush)
        return apply

    def outbox_room(self, peer_pub: bytes, messages: int, nbytes: int) -> bool:
        """Whether ``messages`` more messages of ``nbytes`` in all fit the outbox quota now
        (a caller that must not fail half-way, such as the channel layer, asks first)."""
        p = self._session(peer_pub)
        q = self.quota
        return len(p.out_sizes) + messages <= q.outbox_messages and (
            p.out_bytes + nbytes <= q.outbox_bytes or not p.out_sizes)

    def inbox_room(self, peer_pub: bytes, nbytes: int) -> bool:
        """Whether a message of ``nbytes`` fits the inbox quota now (an empty inbox always
        admits one message)."""
        return self._inbox_room(self._peer(peer_pub), nbytes)

    def _inbox_room(self, p: _Peer, nbytes: int) -> bool:
        q = self.quota
        return not p.inbox or (len(p.inbox) < q.inbox_messages
                               and p.in_bytes + nbytes <= q.inbox_bytes)

    def plan_store_inbox(self, peer_pub: bytes, inc: bytes, seq: int, payload: bytes
                         ) -> tuple[int, _Apply] | None:
        """Store a delivered message (event MESSAGE) under its id ``(inc, seq)``; returns the
        new rx (rx_durable after the commit) and the apply step, or None when the inbox quota
        is full (nothing changed: keep the message and retry after a :meth:`confirm`).

        In the stored peer incarnation ``seq`` must be ``rx + 1`` (a lower one is a duplicate
        and changes nothing) and rx moves with the row, atomically [SES-7]; a message of
        another incarnation (delivered before a SESSION_RESET, SES-57) is stored, rx unchanged.
        """
        p = self._session(peer_pub)
        inc = bytes(inc)
        if len(inc) != _INC_LEN:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "an incarnation is 16 bytes")
        _check_u64(seq, "seq", _ROW_SEQ_MAX)
        if seq == 0 or len(payload) > MAX_PAYLOAD:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "seq 0 or payload too large")
        current = inc == p.peer_inc
        if (inc, seq) in p.inbox or (current and seq <= p.rx):
            return p.rx, lambda db, flush: None  # a duplicate
        if current and seq != p.rx + 1:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                     f"seq {seq} stored after {p.rx}: out of order")
        if not self._inbox_room(p, len(payload)):
            return None
        if current:
            p.rx = seq
        p.inbox[(inc, seq)] = len(payload)
        p.in_bytes += len(payload)
        return p.rx, _InboxRow((p.id, inc, seq, bytes(payload)), self._touch(p))

    def plan_mark_delivered(self, peer_pub: bytes, inc: bytes, seq: int) -> _Apply:
        p = self._session(peer_pub)
        if (bytes(inc), seq) not in p.inbox:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "no such inbox message")
        key = (p.id, bytes(inc), seq)
        return lambda db, flush: db.execute(
            "UPDATE inbox SET delivered = 1 WHERE peer = ? AND inc = ? AND seq = ?", key)

    def plan_confirm(self, peer_pub: bytes, inc: bytes, seq: int, *,
                     channel_state: bytes | None = None, unwritten: _InboxRow | None = None
                     ) -> tuple[bool, _Apply]:
        """The application consumed message ``(inc, seq)``: delete it, release its quota;
        ``channel_state`` (p4-05 CHN-30), when given, is written in the same transaction (also
        when the message was not there).  ``unwritten``: the message's own planned row, not
        applied yet; it is cancelled instead of deleted (neither the INSERT nor the DELETE
        runs, and its commit still carries rx: see :class:`SessionStore`)."""
        p = self._session(peer_pub)
        chan = self._plan_chan_state(p, channel_state)
        n = p.inbox.pop((bytes(inc), seq), None)
        if n is not None:
            p.in_bytes -= n
            if unwritten is not None:
                unwritten.cancel()
        key = (p.id, bytes(inc), seq) if n is not None and unwritten is None else None
        return n is not None, _Confirm(key, chan)

    def plan_advance(self, peer_pub: bytes, generation: int) -> tuple[int, _Apply]:
        _check_u64(generation, "generation")
        p = self._peer(peer_pub, create=True)
        if generation <= p.generation and p.stored:
            return p.generation, lambda db, flush: None
        p.generation = max(p.generation, generation)
        p.stored = True
        params = (p.id, p.pub, _b64(p.generation))
        return p.generation, lambda db, flush: db.execute(_RAISE_GENERATION, params)

    def plan_forget_peer(self, peer_pub: bytes) -> tuple[bool, _Apply]:
        """Delete everything stored for ``peer_pub`` (outbox, inbox, channel state, watermarks,
        incarnations and its rendezvous mark): the user forgot the peer.  True if it existed.
        A later session with the same key starts anew (a new incarnation, SESSION_RESET)."""
        pub = _check_pub(peer_pub)
        p = self._peers.pop(pub, None)
        if p is None:
            return False, lambda db, flush: None
        pid = p.id

        def apply(db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
            flush.pop(pid, None)  # a row planned earlier in this transaction is not re-written
            for table in ("outbox", "inbox", "chanstate"):
                db.execute(f"DELETE FROM {table} WHERE peer = ?", (pid,))
            db.execute("DELETE FROM peer WHERE id = ?", (pid,))
        return True, apply

    # ------------------------------------------------------------------ the synchronous API

    def forget_peer(self, peer_pub: bytes) -> bool:
        """See :meth:`plan_forget_peer`; durable after :meth:`commit`."""
        found, op = self.plan_forget_peer(peer_pub)
        self._apply(op)
        return found

    def create_session(self, peer_pub: bytes, inc: bytes) -> None:
        """Start the session state of a peer under our new incarnation ``inc``."""
        self._apply(self.plan_create_session(peer_pub, inc))

    def save_session(self, peer_pub: bytes, state: SessionState) -> None:
        self._apply(self.plan_save_session(peer_pub, state))

    def append_outbox(self, peer_pub: bytes, payload: bytes | None = b"", *,
                      ref: str | None = None, size: int | None = None,
                      channel_state: bytes | None = None) -> int:
        """The seq of the new message; durable after :meth:`commit`."""
        seq, op = self.plan_append_outbox(peer_pub, payload, ref=ref, size=size,
                                          channel_state=channel_state)
        self._apply(op)
        return seq

    def ack_outbox(self, peer_pub: bytes, through: int) -> None:
        self._apply(self.plan_ack_outbox(peer_pub, through))

    def store_inbox(self, peer_pub: bytes, inc: bytes, seq: int, payload: bytes) -> int | None:
        """rx after storing (durable after :meth:`commit`), None if the inbox is full."""
        planned = self.plan_store_inbox(peer_pub, inc, seq, payload)
        if planned is None:
            return None
        self._apply(planned[1])
        return planned[0]

    def mark_delivered(self, peer_pub: bytes, inc: bytes, seq: int) -> None:
        self._apply(self.plan_mark_delivered(peer_pub, inc, seq))

    def confirm(self, peer_pub: bytes, inc: bytes, seq: int, *,
                channel_state: bytes | None = None) -> bool:
        found, op = self.plan_confirm(peer_pub, inc, seq, channel_state=channel_state)
        self._apply(op)
        return found

    def channel_state(self, peer_pub: bytes) -> bytes | None:
        """The last channel state given with an append or a confirm (as accepted)."""
        p = self._peers.get(_check_pub(peer_pub))
        return None if p is None else p.chan_state

    def last_generation(self, peer_pub: bytes) -> int:
        """The rendezvous high-water mark of ``peer_pub`` (0 for a peer never seen) [RDV-52]."""
        p = self._peers.get(_check_pub(peer_pub))
        return 0 if p is None else p.generation

    def advance(self, peer_pub: bytes, generation: int) -> int:
        """Raise the mark to ``generation`` if higher; return the mark. Durable when it returns
        (it commits whatever else is pending), like :meth:`ReplayStore.advance`."""
        mark, op = self.plan_advance(peer_pub, generation)
        self._apply(op)
        self.commit()
        return mark

    # ------------------------------------------------------------------ reading

    def peers(self) -> list[bytes]:
        return sorted(self._peers)

    def watermarks(self, peer_pub: bytes) -> Watermarks:
        p = self._session(peer_pub)
        pending = [s for (i, s) in p.inbox if i == p.peer_inc and s <= p.rx]
        confirmed = min(pending) - 1 if pending else p.rx
        return Watermarks(p.tx + 1, p.acked, p.rx, confirmed)

    def session_state(self, peer_pub: bytes,
                      resolve: Callable[[OutboxEntry], bytes] | None = None
                      ) -> SessionState | None:
        """What a :class:`~p4ref.session.SessionMachine` resumes from (None: no session yet).
        A bulk-data reference in the outbox needs ``resolve`` to produce its payload (the
        link's is :class:`p4ref.link._channels.OutboxRefs`); ``resolve`` must return the bytes
        to replay in the message's place, and raise only when the store itself is wrong (the
        row is never changed here, so a later call resolves it again)."""
        result, op = self.plan_session_state(peer_pub, resolve)
        op(self._db, self._flush)
        state: SessionState | None = result()
        return state

    def plan_session_state(self, peer_pub: bytes,
                           resolve: Callable[[OutboxEntry], bytes] | None = None
                           ) -> tuple[Callable[[], Any], _Apply]:
        """A read as a plan: the counters as accepted now, the outbox rows as applied by then
        (all earlier plans); the result (or the error) comes from the returned callable."""
        p = self._peers.get(_check_pub(peer_pub))
        if p is None or p.inc is None:
            return lambda: None, lambda db, flush: None
        inc, tx, acked, peer_inc, rx = p.inc, p.tx, p.acked, p.peer_inc, p.rx
        retired, generation, pid = p.retired, p.generation, p.id
        box: list[Any] = []

        def apply(db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
            try:
                outbox: dict[int, bytes] = {}
                for e in _outbox_rows(db, pid, acked, tx):
                    if e.payload is None:
                        if resolve is None:
                            raise LocalProtocolError(
                                ErrorCode.UNEXPECTED_MESSAGE,
                                f"outbox seq {e.seq} is a reference: resolve it")
                        outbox[e.seq] = resolve(e)
                    else:
                        outbox[e.seq] = e.payload
                if len(outbox) != tx - acked:
                    raise _corrupt(self.path, "the outbox rows do not match tx and acked")
                box.append(SessionState(inc=inc, tx=tx, acked=acked, outbox=outbox,
                                        peer_inc=peer_inc, rx=rx, retired=retired,
                                        generation=generation))
            except Exception as e:  # a read never breaks the store
                box.append(e)

        def result() -> Any:
            if isinstance(box[0], Exception):
                raise box[0]
            return box[0]
        return result, apply

    def outbox(self, peer_pub: bytes, after: int = 0, until: int = _ROW_SEQ_MAX
               ) -> list[OutboxEntry]:
        """The outbox rows with ``after < seq <= until``, in order."""
        return _outbox_rows(self._db, self._session(peer_pub).id, after, until)

    def inbox(self, peer_pub: bytes, limit: int = -1) -> list[InboxMessage]:
        """Stored messages not yet confirmed, in stream order (handed to the application in
        this order, each with its message id, until confirmed) [SES-39]."""
        return _inbox_rows(self._db, self._session(peer_pub).id, limit)


def _outbox_rows(db: DBConnection, pid: int, after: int, until: int) -> list[OutboxEntry]:
    after, until = min(after, _ROW_SEQ_MAX), min(until, _ROW_SEQ_MAX)
    return [OutboxEntry(seq, None if pl is None else bytes(pl), ref, size)
            for seq, pl, ref, size in db.execute(
                "SELECT seq, payload, ref, size FROM outbox WHERE peer = ? AND seq > ?"
                " AND seq <= ? ORDER BY seq", (pid, after, until)).fetchall()]


def _inbox_rows(db: DBConnection, pid: int, limit: int) -> list[InboxMessage]:
    return [InboxMessage(bytes(inc), seq, bytes(pl), bool(d))
            for inc, seq, pl, d in db.execute(
                "SELECT inc, seq, payload, delivered FROM inbox WHERE peer = ?"
                " ORDER BY id LIMIT ?", (pid, limit)).fetchall()]


def _statements() -> list[str]:
    return [s.strip() + ";" for s in _SCHEMA.split(";") if s.strip()]


# ---------------------------------------------------------------------------------------------
# asyncio


def _chain(src: asyncio.Future[Any], dst: asyncio.Future[Any]) -> None:
    def done(f: asyncio.Future[Any]) -> None:
        if dst.done():
            return
        if f.cancelled():
            dst.cancel()
        elif (e := f.exception()) is not None:
            dst.set_exception(e)
        else:
            dst.set_result(f.result())
    src.add_done_callback(done)


@dataclass(eq=False)
class _Held:
    """A delivered message waiting for inbox room, in stream order per peer."""

    inc: bytes
    seq: int
    payload: bytes
    out: asyncio.Future[int]
    planned: Callable[[], None] | None
    then: Callable[[int], None] | None = None


@dataclass(eq=False, slots=True)
class _Job:
    apply: _Apply
    #: the future's value, or (``computed``) a callable evaluated in the loop once the batch
    #: committed; a plain value costs no closure per job, which would live until the commit
    #: and go through the cyclic GC's older generations (docs/performance.md)
    result: Any
    future: asyncio.Future[Any]
    then: Callable[[Any], None] | None = None
    lazy: bool = False  # nobody awaits it at once (an inbox row, an ACK's release)
    heavy: bool = False  # a read that may take long (files, many rows): in the writer thread
    silent: bool = False  # nobody looks at the future (``then`` does the work): a failure is
    #                       the store's, reported to every other caller, not a lost exception
    computed: bool = False


class SessionStore:
    """The asyncio face of :class:`SessionDB`: every mutating call returns when its change is
    durable; concurrent calls share commits (see the module docstring). Use :meth:`open`."""

    def __init__(self, db: SessionDB, executor: ThreadPoolExecutor, max_batch: int,
                 commit_interval: float = 0.0, bulk_interval: float | None = None) -> None:
        self.db = db
        self._executor = executor
        self._max_batch = max_batch
        self._commit_interval = commit_interval
        self._bulk_interval = commit_interval if bulk_interval is None else bulk_interval
        self._bulk = False  # a bulk load: commits are paced at _bulk_interval
        self._sample_start = 0.0  # (loop time) when the current sample began; the message
        self._msg_bytes = 0  # payload bytes and the messages planned since
        self._msgs = 0
        self._last_start = -1e9  # of the last commit (loop time)
        self._jobs: list[_Job] = []
        self._flusher: asyncio.Task[None] | None = None
        self._held: dict[bytes, collections.deque[_Held]] = {}
        self._state_src: dict[bytes, StateSource] = {}  # channel states to write, per peer
        # inbox rows planned and not taken into a batch yet: (peer, inc, seq) -> row
        self._unwritten: dict[tuple[bytes, bytes, int], _InboxRow] = {}
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str, *, synchronous: Durability = "FULL",
                   quota: Quota | None = None, max_batch: int = 4096,
                   commit_interval: float = COMMIT_INTERVAL,
                   bulk_interval: float = BULK_COMMIT_INTERVAL) -> SessionStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="p4-session-db",
                                      initializer=_platform.name_os_thread,
                                      initargs=("p4-session-db",))
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(
                executor, lambda: SessionDB(path, synchronous=synchronous, quota=quota))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(db, executor, max_batch, commit_interval, bulk_interval)

    # ------------------------------------------------------------------ the batcher

    def _submit(self, apply: _Apply, result: object,
                then: Callable[[Any], None] | None = None, *, lazy: bool = False,
                silent: bool = False) -> asyncio.Future[Any]:
        return self._add(_Job(apply, result, self._new_future(), then, lazy, False, silent))

    def _submit_fn(self, apply: _Apply, result: Callable[[], Any], *,
                   heavy: bool = False) -> asyncio.Future[Any]:
        return self._add(_Job(apply, result, self._new_future(), heavy=heavy, computed=True))

    def _new_future(self) -> asyncio.Future[Any]:
        if self._closed:
            raise SessionStoreError(ErrorCode.INTERNAL_ERROR, "the session store is closed")
        return asyncio.get_running_loop().create_future()

    def _add(self, job: _Job) -> asyncio.Future[Any]:
        self._jobs.append(job)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return job.future

    def _run_batch(self, jobs: Sequence[_Job]) -> None:
        """In the writer thread: apply every job, then one commit."""
        for job in jobs:
            self.db._apply(job.apply)
        self.db.commit()

    async def _commit_batch(self, loop: asyncio.AbstractEventLoop, jobs: Sequence[_Job]
                            ) -> None:
        """Apply ``jobs`` and commit them.  The statements run here, in the event loop's
        thread (they only touch SQLite's page cache: tens of µs), and only the COMMIT (WAL
        write and fsync, which release the GIL throughout) in the writer thread.  Statements in
        the writer thread take and release the GIL around every step, and each time the loop
        thread, which releases it around every socket and OpenSSL call of aiortc, has to win
        it back: bench_session (a) measured the CPU P⁴ adds per MiB at +36/+42 % and +51/+36 %
        of raw aiortc that way, +24/+31 % and +25/+14 % this way, and 0.67/0.66× → 0.75/0.81×
        of its throughput (two runs of 7 pairs each, 2026-12-04).  A batch with a heavy read
        (:meth:`session_state` resolving file references, :meth:`inbox`) runs whole in the
        writer thread, as it may take long."""
        if any(job.heavy for job in jobs):
            await loop.run_in_executor(self._executor, self._run_batch, jobs)
            return
        for job in jobs:
            self.db._apply(job.apply)
        self.db.stage_commit()
        await loop.run_in_executor(self._executor, self.db.commit)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        # calls came while the last commit ran; a bulk load goes on across a short gap (a
        # sender waiting for credit, a receiver for the next burst)
        busy = self._bulk and loop.time() - self._last_start < BULK_LINGER
        while self._jobs:
            if busy or all(job.lazy for job in self._jobs):  # load, or nobody waits: let
                interval = self._bulk_interval if self._bulk else self._commit_interval
                wait = self._last_start + interval - loop.time()  # the batch grow
                if wait > 0:
                    await asyncio.sleep(wait)
            busy = True
            self._last_start = loop.time()
            jobs: list[_Job] = []
            try:
                jobs = self._take_batch(loop)
                self._sample(self._last_start)
                await self._commit_batch(loop, jobs)
            except BaseException as e:  # the store is broken now: fail this batch and the rest
                err = self.db._wrap(e)
                for job in [*jobs, *self._jobs]:
                    if not job.future.done():
                        job.future.set_exception(err)
                        if job.silent:
                            job.future.exception()  # retrieved: see _Job.silent
                self._jobs.clear()
                if not isinstance(e, Exception):
                    raise
                return
            for job in jobs:  # in order: seqs reach the machine in the order they were given
                if job.future.done():
                    continue
                try:
                    value = job.result() if job.computed else job.result
                    if job.then is not None:
                        job.then(value)
                except Exception as e:
                    job.future.set_exception(e)
                else:
                    job.future.set_result(value)

    def _sample(self, now: float) -> None:
        """Whether a bulk load goes on, from the messages planned over the last BULK_SAMPLE
        seconds or more (the module docstring, "Bulk pacing")."""
        elapsed = now - self._sample_start
        if elapsed >= BULK_SAMPLE:
            n = self._msg_bytes
            self._bulk = n >= BULK_RATE * elapsed and n >= BULK_MESSAGE * self._msgs
            self._sample_start, self._msg_bytes, self._msgs = now, 0, 0

    def _take_batch(self, loop: asyncio.AbstractEventLoop) -> list[_Job]:
        """The next batch.  With channel states to write (a :data:`StateSource` given to
        :meth:`append_outbox` or :meth:`confirm`) it is every call accepted so far, and each
        source is read once, now, and written at the end of it: the state then describes
        exactly what this transaction makes durable (the items its sends appended, the
        messages its confirms deleted), which is what p4-05 CHN-30 asks, at one state per
        commit instead of one per message."""
        whole = bool(self._state_src)
        if whole:
            jobs, self._jobs = self._jobs, []
        else:
            jobs, self._jobs = self._jobs[:self._max_batch], self._jobs[self._max_batch:]
        if self._unwritten:  # from now on a confirm must DELETE these rows
            for job in jobs:
                if isinstance(job.apply, _InboxRow) and job.apply.key is not None:
                    self._unwritten.pop(job.apply.key, None)
        if not whole:
            return jobs
        sources, self._state_src = self._state_src, {}
        try:
            for pub, src in sources.items():
                jobs.append(_Job(self.db.plan_channel_state(pub, src()), None,
                                 loop.create_future(), lazy=True))
        except BaseException:
            self._jobs = jobs  # failed with them, below
            raise
        return jobs

    async def flush(self) -> None:
        """Wait until everything submitted so far is durable."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    # ------------------------------------------------------------------ writes
    # Each call plans at once (errors are raised by the call itself, and the order of calls is
    # the order of seqs and of the SQL) and returns a future that completes when durable.

    def create_session(self, peer_pub: bytes, inc: bytes) -> asyncio.Future[None]:
        return self._submit(self.db.plan_create_session(peer_pub, inc), None)

    def save_session(self, peer_pub: bytes, state: SessionState) -> asyncio.Future[None]:
        """See :meth:`SessionDB.plan_save_session`: after CONNECTION_OPEN and SESSION_RESET."""
        return self._submit(self.db.plan_save_session(peer_pub, state), None)

    def append_outbox(self, peer_pub: bytes, payload: bytes | None = b"", *,
                      ref: str | None = None, size: int | None = None,
                      then: Callable[[int], None] | None = None,
                      channel_state: bytes | StateSource | None = None
                      ) -> asyncio.Future[int]:
        """A future of the message's seq, done once the row is durable [SES-5];
        SES_OUTBOX_FULL is raised by the call. ``then(seq)`` runs in the loop, in seq order,
        as soon as the row is durable: the place to call ``SessionMachine.send``, so that the
        machine numbers messages as they were stored.  ``channel_state`` goes into the same
        transaction: bytes as given, or a :data:`StateSource` read when the batch is formed."""
        seq, op = self.db.plan_append_outbox(peer_pub, payload, ref=ref, size=size,
                                             channel_state=self._state(peer_pub, channel_state))
        self._msg_bytes += len(payload) if payload is not None else size or 0
        self._msgs += 1
        return self._submit(op, seq, then)

    def _state(self, peer_pub: bytes, state: bytes | StateSource | None) -> bytes | None:
        if callable(state):
            self._state_src[_check_pub(peer_pub)] = state
            return None
        return state

    def ack_outbox(self, peer_pub: bytes, through: int) -> asyncio.Future[None]:
        return self._submit(self.db.plan_ack_outbox(peer_pub, through), None, lazy=True)

    def store_inbox(self, peer_pub: bytes, inc: bytes, seq: int, payload: bytes, *,
                    planned: Callable[[], None] | None = None,
                    then: Callable[[int], None] | None = None) -> asyncio.Future[int]:
        """Store a delivered message; a future of rx once it is durable: the highest seq an
        ACK may cover (``SessionMachine.inbox_committed``) [SES-6]. While the inbox quota is
        full the message is held, in order, until the application confirms earlier ones.
        ``then(rx)``, if given, runs in the loop as the commit completes, instead of a
        callback on the future (which nobody needs to look at then: one loop turn less per
        message on the receiving side).

        ``planned()`` runs as soon as the row is planned (at once, or when a held message gets
        room), before it is durable: from then on :meth:`confirm` may name the message, so the
        link may hand it to the application there.  A confirm that comes before the row was
        taken into a commit cancels it: that commit writes neither the row nor its DELETE,
        only rx (and the confirm's channel state), which is the state the two would leave."""
        pub = _check_pub(peer_pub)
        self._msg_bytes += len(payload)
        self._msgs += 1
        if not self._held.get(pub):
            got = self.db.plan_store_inbox(pub, inc, seq, payload)
            if got is not None:
                return self._submit_row(pub, got, planned, then)
        out: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._held.setdefault(pub, collections.deque()).append(
            _Held(bytes(inc), seq, bytes(payload), out, planned, then))
        return out

    def _submit_row(self, pub: bytes, got: tuple[int, _Apply],
                    planned: Callable[[], None] | None,
                    then: Callable[[int], None] | None = None) -> asyncio.Future[int]:
        rx, apply = got
        if isinstance(apply, _InboxRow) and apply.row is not None:
            apply.key = (pub, apply.row[1], apply.row[2])
            self._unwritten[apply.key] = apply
        fut = self._submit(apply, rx, then, lazy=True, silent=then is not None)
        if planned is not None:
            planned()
        return fut

    def _release_held(self, pub: bytes) -> None:
        """Store held messages, in order, while the inbox has room."""
        held = self._held.get(pub)
        while held:
            h = held[0]
            if h.out.done():  # the caller gave up (cancelled)
                held.popleft()
                continue
            try:
                got = self.db.plan_store_inbox(pub, h.inc, h.seq, h.payload)
            except P4Error as e:
                held.popleft()
                h.out.set_exception(e)
                if h.then is not None:  # nobody looks at the future: see _Job.silent
                    h.out.exception()
                    log.error("held inbox message %d not stored: %s", h.seq, e)
                continue
            if got is None:
                return
            held.popleft()
            _chain(self._submit_row(pub, got, h.planned, h.then), h.out)

    def mark_delivered(self, peer_pub: bytes, inc: bytes, seq: int) -> asyncio.Future[None]:
        return self._submit(self.db.plan_mark_delivered(peer_pub, inc, seq), None)

    def confirm(self, peer_pub: bytes, inc: bytes, seq: int, *,
                channel_state: bytes | StateSource | None = None, report: bool = True
                ) -> asyncio.Future[Any]:
        """The application consumed ``(inc, seq)``: its quota is released at once (held
        messages move in), the row is deleted durably (with ``channel_state`` in the same
        transaction, p4-05 CHN-30, as in :meth:`append_outbox`); the future says whether it
        existed (``report`` false: its value is None, for a caller that waits only for the
        confirmation to be durable)."""
        pub = _check_pub(peer_pub)
        unwritten = self._unwritten.pop((pub, bytes(inc), seq), None)
        found, op = self.db.plan_confirm(pub, inc, seq, unwritten=unwritten,
                                         channel_state=self._state(pub, channel_state))
        fut = self._submit(op, found if report else None)
        self._release_held(pub)
        return fut

    def advance(self, peer_pub: bytes, generation: int) -> asyncio.Future[int]:
        """The rendezvous mark (RDV-52): the future's value is the mark, once durable."""
        mark, op = self.db.plan_advance(peer_pub, generation)
        return self._submit(op, mark)

    def forget_peer(self, peer_pub: bytes) -> asyncio.Future[bool]:
        """Delete everything stored for ``peer_pub`` (:meth:`SessionDB.plan_forget_peer`); held
        inbox messages are dropped.  The future says whether the peer was there, once durable."""
        pub = _check_pub(peer_pub)
        for h in self._held.pop(pub, ()):
            if not h.out.done():
                h.out.cancel()
        found, op = self.db.plan_forget_peer(pub)
        return self._submit(op, found)

    def replay_marks(self) -> ReplayMarks:
        """A drop-in for :class:`~p4ref.io.replay_store.ReplayStore` (``last_generation``,
        ``advance``) for synchronous callers such as ``signal.PeerReplay``."""
        return ReplayMarks(self)

    # ------------------------------------------------------------------ reads

    def last_generation(self, peer_pub: bytes) -> int:
        return self.db.last_generation(peer_pub)

    def channel_state(self, peer_pub: bytes) -> bytes | None:
        """The channel state as accepted (durable once the call that gave it completed)."""
        return self.db.channel_state(peer_pub)

    def watermarks(self, peer_pub: bytes) -> Watermarks:
        """As accepted (including what is not durable yet)."""
        return self.db.watermarks(peer_pub)

    def session_state(self, peer_pub: bytes,
                      resolve: Callable[[OutboxEntry], bytes] | None = None
                      ) -> asyncio.Future[SessionState | None]:
        """What a machine resumes from, as of this call (ordered after every earlier call)."""
        result, op = self.db.plan_session_state(peer_pub, resolve)
        return self._submit_fn(op, result, heavy=True)

    def inbox(self, peer_pub: bytes, limit: int = -1) -> asyncio.Future[list[InboxMessage]]:
        """Stored, unconfirmed messages in stream order, as of this call."""
        pid = self.db._session(peer_pub).id
        box: list[list[InboxMessage]] = []

        def apply(db: DBConnection, flush: dict[int, tuple[Any, ...]]) -> None:
            box.append(_inbox_rows(db, pid, limit))
        return self._submit_fn(apply, lambda: box[0], heavy=True)

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.db.close)
        finally:
            self._executor.shutdown(wait=True)


class ReplayMarks:
    """The RDV-52 high-water marks of a :class:`SessionStore` behind the synchronous interface
    of :class:`~p4ref.io.replay_store.ReplayStore`: :meth:`advance` is durable when it returns.
    It waits for the writer thread (behind any batch in progress) and so blocks the event loop
    for about one commit, as ``ReplayStore.advance`` does with its fsync; it happens once per
    generation."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def last_generation(self, peer_pub: bytes) -> int:
        return self._store.db.last_generation(peer_pub)

    def advance(self, peer_pub: bytes, generation: int) -> int:
        db = self._store.db
        mark, op = db.plan_advance(peer_pub, generation)

        def run() -> None:
            db._apply(op)
            db.commit()
        self._store._executor.submit(run).result()
        return mark
