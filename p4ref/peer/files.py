"""Files between paired peers in ``p4 up``: the p4-06 transfers of ``p4 send`` and the inbox.

Outgoing (:meth:`FileService.send`): a transfer is a record in ``<home>/peer/outgoing.json``
(peer, path, name, size, state) and a task that opens a fresh channel ``p4files/<id>.<attempt>``
on the peer's link and runs :func:`p4ref.io.files.send_file` on it: the file is read from where
it is, one block at a time, and never copied into the session's outbox (p4-06 FIL-39): every
channel item carrying file bytes is stored there as a reference to the file region (the
outbox's ``ref`` column, :meth:`p4ref.link.Channel.send_file_regions`), while the session keeps
the unacknowledged items in memory (up to the channel's credit window).  After a restart the
link reads those items back from the file; if the file changed meanwhile, the old channel is
reset with FILE_SOURCE_CHANGED instead (the receiver keeps its verified prefix) and the next
attempt offers the file as it is now.  An attempt that fails (the channel was reset because
the receiver restarted, a broken stream) is retried on a new channel after a short backoff; the
receiver then resumes from its verified prefix (p4-06 FIL-36), so only the blocks it
does not have travel again.  A refusal (FILE_REFUSED, FILE_TOO_LARGE) ends it; so does a full disk
at the receiver (FILE_DISK_FULL, state ``failed``): the receiver keeps the verified part, and the
same file sent again once there is space resumes from it.
Unfinished transfers start again when ``p4 up`` starts.

Incoming: every channel the peer opens under ``p4files/`` runs
:func:`p4ref.io.files.receive_file` into the inbox directory (collision-safe names, partial file
and sidecar kept for a resume); a finished file is appended to ``<home>/peer/received.json``,
which ``p4 recv`` reads.  A channel offered again after a restart (the link redelivers every live
channel) has lost its transfer machine, so it is reset: the sender's next attempt resumes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ErrorCode, P4Error
from ..files import OfferReceived
from ..io.fileref import FileRegions
from ..io.files import DEFAULT_BLOCK_SIZE, file_leaves, receive_file, send_file
from ..io.store import atomic_write

__all__ = ["FileService", "Incoming", "Outgoing"]

log = logging.getLogger("p4.peer")

PREFIX = "p4files/"
_FINAL = ("done", "refused", "cancelled", "failed")
_NO_RETRY = {int(ErrorCode.FILE_REFUSED), int(ErrorCode.FILE_TOO_LARGE),
             int(ErrorCode.FILE_DISK_FULL), int(ErrorCode.FILE_NAME_INVALID),
             int(ErrorCode.FILE_SOURCE_CHANGED)}
MAX_ATTEMPTS = 50


class _Msg(Protocol):
    @property
    def data(self) -> bytes: ...
    def confirm(self) -> Awaitable[None]: ...


def _link_channel(wrapped: Any) -> Any:
    """The link channel under the API's channel wrapper (or ``wrapped`` itself)."""
    from ..api.linkbackend import LinkChannel

    return wrapped.link_channel if isinstance(wrapped, LinkChannel) else wrapped


class _Chan(Protocol):
    @property
    def name(self) -> str: ...
    def send(self, message: bytes) -> Awaitable[None]: ...
    async def recv(self) -> Any: ...
    def close(self) -> Awaitable[None]: ...
    async def reset(self, code: int = 0) -> None: ...


class _FileMsg:
    def __init__(self, data: bytes, msg: _Msg | None, owner: _FileChannel) -> None:
        self.data = data
        self._msg = msg
        self._owner = owner

    def confirm(self) -> None:
        if self._msg is not None:
            self._owner.confirm_later(self._msg)


class _FileChannel:
    """A link channel as :mod:`p4ref.io.files` wants it (``b""`` at the half-close, a
    synchronous confirm)."""

    def __init__(self, ch: _Chan) -> None:
        self.ch = ch
        self._confirms: set[asyncio.Future[None]] = set()

    async def send(self, data: bytes) -> None:
        await self.ch.send(data)

    async def send_file_regions(self, data: bytes, regions: FileRegions) -> None:
        """By reference to the file when the link channel can (FIL-39), else a plain send."""
        by_ref = getattr(self.ch, "send_file_regions", None)
        if by_ref is None:
            await self.ch.send(data)
        else:
            await by_ref(data, regions)

    async def recv(self) -> _FileMsg:
        m = await self.ch.recv()
        return _FileMsg(b"", None, self) if m is None else _FileMsg(m.data, m, self)

    def confirm_later(self, m: _Msg) -> None:
        fut = asyncio.ensure_future(m.confirm())
        self._confirms.add(fut)
        fut.add_done_callback(self._confirms.discard)

    async def close(self) -> None:
        if self._confirms:
            await asyncio.gather(*self._confirms, return_exceptions=True)
        with contextlib.suppress(P4Error):
            await self.ch.close()


@dataclass
class Outgoing:
    """One ``p4 send``: ``state`` is queued, sending, done, refused, cancelled or failed."""

    id: str
    peer: str  # device ID
    path: str
    name: str
    size: int
    state: str = "queued"
    sent: int = 0  # file bytes the receiver has or was sent (resume offset included)
    offset: int = 0  # where the receiver asked this attempt to start
    attempts: int = 0
    code: str | None = None
    error: str = ""
    created: float = field(default_factory=time.time)
    finished: float | None = None
    spool: bool = False  # the file is our copy of stdin: delete it when finished


@dataclass
class Incoming:
    """One file received into the inbox."""

    id: str
    peer: str
    name: str
    path: str
    size: int
    resumed_from: int
    at: float


def _code_name(code: int | None) -> str | None:
    if code is None:
        return None
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04X}"


class FileService:
    """Outgoing transfers and the inbox of one running peer (module docstring).

    ``links``: device ID -> started :class:`p4ref.link.Link` (channels on); ``accept``: a
    coroutine function ``(peer, prefix)`` giving the peer's next channel under ``prefix``
    (the API backend routes incoming channels by prefix, so the files get theirs through it).
    """

    def __init__(self, home: Path, links: dict[str, Any], accept: Any, *,
                 inbox: Path | None = None, max_size: int = (1 << 63) - 1,
                 persist_every: int = 1 << 20, names: dict[str, str] | None = None) -> None:
        self.home = home
        self.dir = home / "peer"
        self.inbox = inbox or home / "inbox"
        self._links = links
        self._accept = accept
        self.max_size = max_size
        self.persist_every = persist_every  # a resume loses at most this much
        self.names = names if names is not None else {}
        self.outgoing: dict[str, Outgoing] = {}
        self.received: list[Incoming] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._bg: list[asyncio.Task[None]] = []
        self._leaves: dict[tuple[str, int, int], list[bytes]] = {}
        self.changed = asyncio.Event()

    # --- persistence ---

    def _load(self) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.inbox.mkdir(mode=0o700, exist_ok=True)
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
            for rec in json.loads((self.dir / "outgoing.json").read_text())["transfers"]:
                o = Outgoing(**rec)
                self.outgoing[o.id] = o
        with contextlib.suppress(FileNotFoundError, ValueError, TypeError, KeyError):
            self.received = [Incoming(**r) for r in
                             json.loads((self.dir / "received.json").read_text())["files"]]

    def _save_out(self) -> None:
        doc = {"format": "p4-outgoing", "version": 1,
               "transfers": [asdict(o) for o in self.outgoing.values()]}
        atomic_write(self.dir / "outgoing.json", (json.dumps(doc, indent=1) + "\n").encode())

    def _save_in(self) -> None:
        doc = {"format": "p4-received", "version": 1,
               "files": [asdict(i) for i in self.received[-1000:]]}
        atomic_write(self.dir / "received.json", (json.dumps(doc, indent=1) + "\n").encode())

    # --- life cycle ---

    async def start(self) -> None:
        self._load()
        for o in self.outgoing.values():
            if o.state not in _FINAL and o.peer in self._links:
                self._spawn(o)
        for peer in self._links:
            self._bg.append(asyncio.create_task(self._acceptor(peer)))

    async def stop(self) -> None:
        tasks = [*self._tasks.values(), *self._bg]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        if self.outgoing:
            self._save_out()

    def add_peer(self, peer: str) -> None:
        """A peer paired while we run: take its incoming files too."""
        self._bg.append(asyncio.create_task(self._acceptor(peer)))

    def forget_peer(self, peer: str) -> None:
        """Stop and drop every transfer with ``peer`` (``p4 peers forget``)."""
        for o in list(self.outgoing.values()):
            if o.peer == peer:
                t = self._tasks.pop(o.id, None)
                if t is not None:
                    t.cancel()
                del self.outgoing[o.id]
        self._save_out()

    # --- outgoing ---

    def send(self, peer: str, path: Path, name: str | None = None, *,
             spool: bool = False) -> Outgoing:
        if peer not in self._links:
            raise P4Error(ErrorCode.PEER_UNKNOWN, "no link to that peer")
        st = path.stat()
        o = Outgoing(secrets.token_hex(8), peer, str(path), name or path.name, st.st_size,
                     spool=spool)
        self.outgoing[o.id] = o
        self._save_out()
        self._spawn(o)
        return o

    def _who(self, peer: str) -> str:
        return self.names.get(peer) or peer[:8]

    def _spawn(self, o: Outgoing) -> None:
        self._tasks[o.id] = asyncio.create_task(self._run_out(o))

    def _finish(self, o: Outgoing, state: str, code: int | None = None, error: str = "") -> None:
        o.state, o.code, o.error, o.finished = state, _code_name(code), error, time.time()
        if o.spool:
            with contextlib.suppress(OSError):
                os.unlink(o.path)
        self._save_out()
        self.changed.set()
        log.info("send %s of %s to %s: %s%s", o.id, o.name, self._who(o.peer), state,
                 f" ({o.code})" if o.code else "")

    async def _leaves_of(self, path: Path) -> list[bytes]:
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key not in self._leaves:
            _, leaves = await asyncio.to_thread(file_leaves, path, DEFAULT_BLOCK_SIZE)
            self._leaves[key] = leaves
        return self._leaves[key]

    async def _run_out(self, o: Outgoing) -> None:
        link = self._links[o.peer]
        path = Path(o.path)
        while o.state not in _FINAL:
            o.attempts += 1
            if o.attempts > MAX_ATTEMPTS:
                self._finish(o, "failed", None, "gave up after too many attempts")
                return
            self._save_out()
            try:
                leaves = await self._leaves_of(path)
                ch = await link.open_channel(f"{PREFIX}{o.id}.{o.attempts}")
                o.state = "sending"

                def progress(done: int, size: int) -> None:
                    o.sent = done

                res = await send_file(_FileChannel(ch), path, name=o.name, leaves=leaves,
                                      progress=progress)
            except FileNotFoundError:
                self._finish(o, "failed", ErrorCode.FILE_IO_ERROR, f"{path} is gone")
                return
            except (P4Error, OSError) as exc:
                log.info("send %s: attempt %d ended (%s); trying again", o.id, o.attempts, exc)
                await asyncio.sleep(min(2.0 * o.attempts, 15.0))
                continue
            o.offset = res.offset
            if res.state == "DONE":
                o.sent = o.size
                self._finish(o, "done")
            elif res.code == ErrorCode.FILE_DISK_FULL:  # the receiver keeps what it has
                self._finish(o, "failed", res.code, f"{self._who(o.peer)}'s disk is full")
            elif res.state == "REFUSED" or (res.code is not None and res.code in _NO_RETRY):
                self._finish(o, "refused", res.code)
            elif res.state == "CANCELLED":
                self._finish(o, "cancelled", res.code)
            else:
                log.info("send %s: attempt %d failed (%s); trying again", o.id, o.attempts,
                         _code_name(res.code))
                await asyncio.sleep(min(1.0 * o.attempts, 15.0))

    # --- incoming ---

    async def _acceptor(self, peer: str) -> None:
        receivers: set[asyncio.Task[None]] = set()
        while True:
            try:
                wrapped = await self._accept(peer, PREFIX)
            except P4Error:  # the peer was forgotten
                return
            ch: _Chan = _link_channel(wrapped)  # the link channel under the API's
            if getattr(ch, "local", False) or getattr(ch, "_p4_seen", False):
                # our own outgoing channel of an earlier run: its attempt is over
                with contextlib.suppress(P4Error):
                    await ch.reset(0)
                continue
            t = asyncio.create_task(self._receive(peer, ch))
            receivers.add(t)
            t.add_done_callback(receivers.discard)

    async def _receive(self, peer: str, ch: _Chan) -> None:
        marks = self.dir / "incoming-channels"
        seen = set(marks.read_text().split()) if marks.exists() else set()
        if ch.name in seen:  # began before a restart: its machine is gone; the sender resumes
            log.info("incoming %s from %s: interrupted earlier; reset, the sender resumes",
                     ch.name, self._who(peer))
            with contextlib.suppress(P4Error):
                await ch.reset(0)
            return
        with open(marks, "a") as f:
            f.write(ch.name + "\n")
            f.flush()
            os.fsync(f.fileno())

        async def decide(ev: OfferReceived) -> bool:
            log.info("incoming file %r (%d bytes) from %s", ev.file_name, ev.size,
                     self._who(peer))
            return ev.size <= self.max_size

        try:
            res = await receive_file(_FileChannel(ch), self.inbox, decide=decide,
                                     persist_every=self.persist_every)
        except P4Error as exc:
            log.info("incoming %s from %s ended: %s", ch.name, self._who(peer), exc)
            return
        if res.state == "DONE" and res.path is not None:
            inc = Incoming(ch.name.removeprefix(PREFIX), peer, res.path.name, str(res.path),
                           res.path.stat().st_size, res.resumed_from, time.time())
            self.received.append(inc)
            self._save_in()
            self.changed.set()
            log.info("received %s (%d bytes%s) from %s", res.path, inc.size,
                     f", resumed at {res.resumed_from}" if res.resumed_from else "",
                     self._who(peer))
        elif res.code == ErrorCode.FILE_DISK_FULL:
            kept = f"; {res.verified} bytes kept in {res.path}" if res.path else ""
            log.warning("incoming file from %s: the disk of %s is full%s. Free space there:"
                        " the sender's next `p4 send` of the file resumes it", self._who(peer),
                        self.inbox, kept)
        else:
            log.info("incoming %s from %s: %s %s", ch.name, self._who(peer), res.state,
                     _code_name(res.code) or "")
