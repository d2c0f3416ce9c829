"""Drive the p4-06 file-transfer machines against real files (spec/p4-06-files-v1.md §8).

The machines (:mod:`p4ref.files`) never touch a disk; this module does their I/O over any
channel object with

- ``async send(data: bytes)``: returns once the channel accepted the bytes (it waits for credit,
  p4-05, so a slow receiver slows the sender instead of filling memory);
- ``async recv()``: the next message of the peer's direction, with ``.data`` and ``.confirm()``
  (consumed: releases credit; it may be a coroutine); the peer's half-close is a message whose
  ``.data`` is ``b""``, or ``None`` (as :class:`p4ref.link.Channel` answers);
- optionally ``async close()``: half-close our direction (FIL-4).  A reset channel raises from
  ``recv``/``send``; the driver lets that propagate after keeping the receiver's partial file;
- optionally ``async send_file_regions(data, regions)``: ``send`` of a message whose bytes at
  ``regions`` (:class:`~p4ref.io.fileref.FileRegions`) were read from the file being sent, so
  that the channel may keep a reference to the file instead of a copy of them
  (:meth:`p4ref.link.Channel.send_file_regions` stores them in the session outbox so, FIL-39).
  The sender uses it for every message carrying FILE_DATA bytes when the channel has it, else
  ``send``.  A channel with it must carry concurrent calls of ``send`` and
  ``send_file_regions`` in the order they were made (:class:`p4ref.link.Channel` does): the
  sender then keeps up to :data:`INFLIGHT` bulk messages of a block under way instead of
  awaiting each, and awaits them all before it reads the next block.

The sender (:func:`send_file`) hashes the file once to get its leaves and root (one block in
memory at a time), offers it, then reads each block only when the machine asks for it and sends
it before reading the next (FIL-39): memory stays about one block plus the channel's window,
whatever the file's size.  The receiver (:func:`receive_file`) writes each FILE_DATA at its
offset into ``<name>.p4part``, keeps ``(size, block_size, root, verified, chain)`` in the sidecar
``<name>.p4part.json`` after syncing the data (FIL-37), resumes from it on a later offer of the
same file (FIL-36), and on FILE_VERIFIED syncs and moves the file to a name no other file has
(§8.9).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import hashlib
import inspect
import json
import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..channels import MAX_DATA as CHANNEL_MAX_DATA
from ..errors import ErrorCode, LocalProtocolError
from ..files import HEADER_LEN as RECORD_HEADER_LEN
from ..files import (
    Accepted,
    BlockVerified,
    Cancelled,
    Completed,
    FileFailed,
    FileReceiver,
    FileSender,
    FileVerified,
    OfferReceived,
    ReadBlock,
    Refused,
    State,
    Write,
    block_count,
    root_of,
)
from .fileref import FileRegions

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "ChannelLike",
    "LeafCache",
    "MessageLike",
    "ReceiveResult",
    "SendResult",
    "file_leaves",
    "local_name",
    "receive_file",
    "send_file",
]

#: RECOMMENDED block size (FIL-16).
DEFAULT_BLOCK_SIZE = 1 << 20
#: Bulk records are sent in channel messages of this many bytes: four whole p4-05 DATA items
#: (a 32 KiB FILE_DATA record sent alone took three SES_MSGs, the last one nearly empty).  Not
#: more: a channel whose credit counts whole messages must take one within its window (65
#: items, a whole 1 MiB block per message, measured no faster through two ``p4 up``).
CHUNK = 4 * CHANNEL_MAX_DATA
#: Bulk messages of one flush (one block's records) a sender keeps on their way into the outbox
#: at once, when the channel carries concurrent sends in call order (one with
#: ``send_file_regions``, as :class:`p4ref.link.Channel`); the flush still ends only when all
#: of them are accepted, so the next block is read only then (FIL-39).  Awaiting each one's
#: commit before the next made every commit carry one 64 KiB message (≈ 170 commits/s, the
#: writer thread 5.9 ms of CPU per MiB, bench/bench_send.py, 2026-12-04).
INFLIGHT = 16
#: The receiver persists its verified prefix at least this often (and whenever it stops).
PERSIST_EVERY = 16 << 20
PART_SUFFIX = ".p4part"
_TERMINAL = (State.DONE, State.REFUSED, State.CANCELLED, State.FAILED)
_BULK = (0x13, 0x14)  # types (header byte 1) FILE_HASHES, FILE_DATA: not sent once it ended
_FILE_DATA = 0x14
Spans = list[tuple[int, int, int]]  # (position in the bytes, file offset, length)


class MessageLike(Protocol):
    @property
    def data(self) -> bytes: ...

    def confirm(self) -> Any: ...  # None, or an awaitable (p4ref.link's ChannelMessage)


class ChannelLike(Protocol):
    def send(self, data: bytes) -> Awaitable[None]: ...

    async def recv(self) -> Any: ...  # a MessageLike, or None at the peer's half-close


async def _next(channel: ChannelLike) -> tuple[bytes, MessageLike | None]:
    """The next bytes of the peer's direction (``b""`` at its half-close) and their message."""
    msg = await channel.recv()
    if msg is None:
        return b"", None
    return bytes(msg.data), msg


async def _confirm(msg: MessageLike | None) -> None:
    if msg is not None:
        done = msg.confirm()
        if inspect.isawaitable(done):
            await done


@dataclass(frozen=True)
class SendResult:
    state: str  # DONE, REFUSED, CANCELLED or FAILED
    code: int | None  # the refusal or failure code
    offset: int  # where the receiver asked the data to start
    sent: int  # file bytes sent


@dataclass(frozen=True)
class ReceiveResult:
    state: str
    code: int | None
    path: Path | None  # the final file (DONE) or the partial file (kept for a resume)
    verified: int
    resumed_from: int


def _pwrite(fd: int, data: bytes, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` where it exists; Windows has none, and
    this driver's file descriptors are never shared between tasks, so seek + write is safe)."""
    view = memoryview(data)
    if sys.platform != "win32":
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
        return
    os.lseek(fd, offset, os.SEEK_SET)
    while view:
        view = view[os.write(fd, view):]


def file_leaves(path: Path, block_size: int) -> tuple[int, list[bytes]]:
    """``(size, leaves)`` of a file, reading one block at a time (§6.1)."""
    leaves: list[bytes] = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for _ in range(block_count(size, block_size)):
            leaves.append(hashlib.sha256(f.read(block_size)).digest())
    return size, leaves


class LeafCache:
    """The leaves of files this device offered, so that offering a file again (a resume after
    either side restarted) does not re-hash it (§8.6).  One file per (path, size, modification
    time, block size) in ``directory``, holding the 32-byte leaves back to back; an entry whose
    length does not fit is ignored.  A file changed without changing its size or modification
    time is still caught, block by block, as it is sent (FIL-27)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)

    def _entry(self, path: Path, block_size: int) -> tuple[Path, int]:
        st = path.stat()
        key = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{block_size}".encode()
        return self.dir / (hashlib.sha256(key).hexdigest()[:32] + ".leaves"), st.st_size

    def leaves(self, path: Path, block_size: int) -> tuple[int, list[bytes]]:
        """``(size, leaves)`` from the cache, else by hashing the file (and then cached)."""
        entry, size = self._entry(path, block_size)
        n = block_count(size, block_size)
        with contextlib.suppress(OSError):
            raw = entry.read_bytes()
            if len(raw) == 32 * n:
                return size, [raw[i : i + 32] for i in range(0, len(raw), 32)]
        size2, leaves = file_leaves(path, block_size)
        if size2 == size:
            self.dir.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(".tmp")
            tmp.write_bytes(b"".join(leaves))
            os.replace(tmp, entry)
        return size2, leaves


async def _half_close(channel: Any) -> None:
    close = getattr(channel, "close", None)
    if close is not None:
        await close()


def _take(spans: Spans, cut: int) -> Spans:
    """Remove from ``spans`` (in place) what lies before ``cut`` and shift the rest by
    ``-cut``; return the removed part."""
    head: Spans = []
    rest: Spans = []
    for pos, off, n in spans:
        if pos + n <= cut:
            head.append((pos, off, n))
        elif pos >= cut:
            rest.append((pos - cut, off, n))
        else:
            head.append((pos, off, cut - pos))
            rest.append((0, off + cut - pos, pos + n - cut))
    spans[:] = rest
    return head


class _Pump:
    """What both drivers share: flush the machine's records, read the peer's direction.

    The sender sets :attr:`source` (the file's absolute path) and, before each ``block``,
    :attr:`file_pos` (the block's offset): the FILE_DATA records the machine then queues carry
    the block's bytes in order (FIL-26), so the pump knows where in the file every FILE_DATA
    body byte comes from and tells a channel with ``send_file_regions`` (FIL-39)."""

    def __init__(self, channel: ChannelLike, machine: FileSender | FileReceiver,
                 source: str | None = None) -> None:
        self.channel = channel
        self.m = machine
        self.wake = asyncio.Event()  # the reader changed the machine
        self.ended = asyncio.Event()  # the reader stopped: the peer's direction is over
        self.peer_gone = asyncio.Event()  # the peer ended the transfer: it reads no more of it
        self.source = source
        self.file_pos = 0
        regions = getattr(channel, "send_file_regions", None) if source is not None else None
        self._regions: Callable[[bytes, FileRegions], Awaitable[None]] | None = regions
        # sends under way, oldest first, each with whether it may be dropped once ended
        self._inflight: collections.deque[tuple[asyncio.Future[None], bool]] = \
            collections.deque()
        self._window = INFLIGHT if regions is not None else 0

    def _spans(self, rec: bytes) -> Spans:
        """Where the file bytes of ``rec`` (a FILE_DATA body) are in it and in the file;
        advances file_pos."""
        if self.source is None or rec[1] != _FILE_DATA:
            return []
        n = len(rec) - RECORD_HEADER_LEN
        span = (RECORD_HEADER_LEN, self.file_pos, n)
        self.file_pos += n
        return [span]

    async def _send(self, data: bytes, spans: Spans) -> None:
        """One channel message; by reference to the file where the channel can (FIL-39)."""
        if spans and self._regions is not None and self.source is not None:
            await self._regions(data, FileRegions(self.source, tuple(spans)))
        else:
            await self.channel.send(data)

    async def _put(self, data: bytes, spans: Spans, *, bulk: bool = False, keep: int = 0
                   ) -> None:
        """Start sending one message (tasks start, and so reach the channel, in call order),
        then wait until at most ``keep`` are under way.  A ``bulk`` message started before the
        transfer ended may be dropped once it ended (:meth:`_reap`)."""
        if self.peer_gone.is_set():
            return  # nobody reads it (and it could wait for credit for ever)
        droppable = bulk and not self.ended.is_set()
        self._inflight.append((asyncio.ensure_future(self._send(data, spans)), droppable))
        await self._reap(keep)

    async def _reap(self, keep: int) -> None:
        """Wait, oldest first, until at most ``keep`` sends are under way, and collect those
        done; a failed send raises here.  Bulk data waits for credit, and a receiver that
        cancelled never grants more: once :attr:`ended` is set, every droppable send still
        under way is cancelled instead of awaited, and once :attr:`peer_gone` is set, every
        send."""
        while self._inflight and (len(self._inflight) > keep or self._inflight[0][0].done()):
            fut, droppable = self._inflight[0]
            stop = self.ended if droppable else self.peer_gone  # (peer_gone sets ended too)
            if not fut.done() and not stop.is_set():
                end: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
                await asyncio.wait((fut, end), return_when=asyncio.FIRST_COMPLETED)
                end.cancel()
            if not fut.done() and (droppable or self.peer_gone.is_set()):
                await self._drop()  # ended: drop what still waits
                continue
            self._inflight.popleft()
            await fut  # done, or a message that must go out whole

    async def _drop(self) -> None:
        """Cancel every droppable send under way (the transfer ended), every one once the
        peer is gone."""
        keep: collections.deque[tuple[asyncio.Future[None], bool]] = collections.deque()
        gone = self.peer_gone.is_set()
        for fut, droppable in self._inflight:
            if (droppable or gone) and not fut.done():
                fut.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fut
            else:
                keep.append((fut, droppable))
        self._inflight = keep

    async def settle(self) -> None:
        """Wait for every send under way (a failure raises)."""
        await self._reap(0)

    async def abort(self) -> None:
        """Cancel every send still under way (the driver is leaving on an error)."""
        while self._inflight:
            fut, _ = self._inflight.popleft()
            fut.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await fut

    async def flush(self) -> None:
        """Send what the machine queued.  Bulk records (a block's FILE_HASHES and FILE_DATA)
        go out coalesced into channel messages of :data:`CHUNK` bytes, cut anywhere (a record
        may straddle two messages: the peer's machine takes any split, FIL-42), so that each
        message fills whole channel items; every other record is a message of its own, after
        the bulk bytes before it.  Nothing is held back: the tail goes out at the end.  Up to
        :attr:`_window` bulk messages are under way at once; it returns once all are done."""
        bulk = bytearray()
        spans: Spans = []  # where bulk's FILE_DATA bodies come from in the file
        lens: collections.deque[int] = collections.deque()  # the records (unsent parts) in bulk
        partial = False  # the first of them was sent in part
        for rec in self.m.data_to_send():
            rec_spans = self._spans(rec)  # (file_pos advances even if it is skipped)
            if self.m.state in _TERMINAL and rec[1] in _BULK and not partial:
                continue  # the peer ended the transfer while we were sending (FIL-4)
            if rec[1] in _BULK and not self.ended.is_set():
                spans += [(pos + len(bulk), off, n) for pos, off, n in rec_spans]
                bulk += rec
                lens.append(len(rec))
                while len(bulk) >= CHUNK:
                    await self._bulk(bytes(bulk[:CHUNK]), _take(spans, CHUNK))
                    del bulk[:CHUNK]
                    cut, partial = CHUNK, False
                    while cut:
                        if lens[0] <= cut:
                            cut -= lens.popleft()
                        else:
                            lens[0] -= cut
                            cut, partial = 0, True
                    if self.m.state in _TERMINAL:  # ended meanwhile: end the record begun
                        if partial:  # (a record cut in two would garble what follows)
                            await self._put(bytes(bulk[:lens[0]]), _take(spans, lens[0]))
                        bulk.clear()
                        spans.clear()
                        lens.clear()
                        partial = False
                continue
            if bulk:
                await self._drain(bulk, spans, lens[0] if partial else 0)
                bulk.clear()
                spans.clear()
                lens.clear()
                partial = False
            await self._put(rec, rec_spans)
        if bulk:
            await self._drain(bulk, spans, lens[0] if partial else 0)
        await self.settle()  # all of it accepted before the machine reads on (FIL-39)

    async def _drain(self, bulk: bytearray, spans: Spans, begun: int) -> None:
        """The bulk bytes left; once the transfer ended, only the ``begun`` bytes that end a
        record already sent in part."""
        if self.m.state not in _TERMINAL:
            await self._bulk(bytes(bulk), spans)
        elif begun:
            await self._put(bytes(bulk[:begun]), _take(spans, begun))

    async def _bulk(self, rec: bytes, spans: Spans) -> None:
        """Bulk data waits for credit; a receiver that cancelled never grants more, so the
        wait also ends when the peer's FILE_CANCEL (or its half-close) arrives (:meth:`_reap`).
        Up to :attr:`_window` of them stay under way while the next ones start."""
        await self._put(rec, spans, bulk=True, keep=self._window)


async def send_file(channel: ChannelLike, path: str | os.PathLike[str], *,
                    name: str | None = None, block_size: int = DEFAULT_BLOCK_SIZE,
                    leaves: list[bytes] | None = None, cache: LeafCache | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    cancel: asyncio.Event | None = None) -> SendResult:
    """Offer ``path`` on ``channel`` and send it from the receiver's offset (§8).  ``leaves``
    (or ``cache``) spare hashing the file again when it was offered before (§8.6); setting
    ``cancel`` cancels the transfer (FILE_CANCEL with FILE_CANCELLED, FIL-31)."""
    p = Path(path)
    leaf_list: list[bytes]
    if leaves is None and cache is not None:
        size, leaf_list = await asyncio.to_thread(cache.leaves, p, block_size)
    elif leaves is None:
        size, leaf_list = await asyncio.to_thread(file_leaves, p, block_size)
    else:
        size, leaf_list = p.stat().st_size, leaves
    root, _ = root_of(size, block_size, leaf_list)
    m = FileSender(name if name is not None else p.name, size, block_size, root)
    pump = _Pump(channel, m, os.path.abspath(p))
    m.start()
    offset = sent = 0
    code: int | None = None

    async def reader() -> None:
        try:
            while m.state not in _TERMINAL:
                data, msg = await _next(channel)
                live = m.state not in _TERMINAL
                m.receive_data(data)
                await _confirm(msg)
                if live and m.state in _TERMINAL:  # the peer ended it (FILE_CANCEL: a full
                    pump.peer_gone.set()  # disk, FILE_COMPLETE, FILE_REFUSE): it reads no more
                    pump.ended.set()
                pump.wake.set()
                if not data:
                    return
        finally:
            pump.ended.set()
            pump.wake.set()

    async def watch() -> None:
        assert cancel is not None
        await cancel.wait()
        if m.state in (State.OFFERED, State.SENDING, State.WAIT_COMPLETE):
            m.cancel()
            pump.ended.set()  # a send waiting for credit gives up: nothing more goes out
            pump.wake.set()

    task = asyncio.create_task(reader())
    watcher = asyncio.create_task(watch()) if cancel is not None else None
    try:
        with open(p, "rb") as f:
            while True:
                await pump.flush()
                ev = m.next_event()
                if ev is None:
                    if m.state in _TERMINAL:
                        break
                    if task.done():
                        task.result()  # re-raise a reader failure
                    pump.wake.clear()
                    await pump.wake.wait()
                    continue
                if isinstance(ev, ReadBlock):
                    f.seek(ev.offset)
                    try:
                        data = await asyncio.to_thread(f.read, ev.length)
                    except OSError:
                        m.read_failed(ErrorCode.FILE_IO_ERROR)
                        continue
                    if m.state is State.SENDING:  # the peer may have ended it meanwhile
                        pump.file_pos = ev.offset  # where its FILE_DATA bodies come from
                        m.block(ev.index, data, leaf_list[ev.index])
                        sent += len(data)
                        if progress is not None:
                            progress(offset + sent, size)
                elif isinstance(ev, FileFailed | Refused):
                    code = ev.code
                elif isinstance(ev, Accepted):
                    offset = ev.offset
                elif isinstance(ev, Completed | Cancelled):
                    pass
        await pump.flush()
        await pump.settle()
    finally:
        await pump.abort()  # (nothing is under way any more unless it failed)
        await _half_close(channel)
        for t in (task, watcher):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
    return SendResult(str(m.state), code, offset, sent)


# ---------------------------------------------------------------------------------- receiver

_WINDOWS_BAD = set('<>"|?*')
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}


def local_name(name: str, platform: str = sys.platform) -> str:
    """The offered name made safe for this platform (§8.9, informative): on Windows, characters
    its file systems forbid become ``_`` and a reserved device name gets a trailing ``_``."""
    if not platform.startswith("win"):
        return name
    out = "".join("_" if c in _WINDOWS_BAD else c for c in name)
    stem = out.split(".", 1)[0].upper()
    return out + "_" if stem in _WINDOWS_RESERVED else out


#: The longest file name most file systems take, in bytes (names are at most this, FIL-6, but a
#: suffix may push them over).
_NAME_MAX = 255


def _fit(stem: str, rest: str) -> str:
    """``stem + rest``, the stem shortened (whole characters) so the UTF-8 fits _NAME_MAX."""
    room = _NAME_MAX - len(rest.encode("utf-8"))
    while len(stem.encode("utf-8")) > room and stem:
        stem = stem[:-1]
    return stem + rest


def _free_name(directory: Path, name: str) -> Path:
    """Claim ``name``, else ``name (1).ext``, ``name (2).ext`` …: the first that an exclusive
    create succeeds for, so a received file never overwrites another (§8.9)."""
    stem, dot, ext = name.partition(".") if not name.startswith(".") else (name, "", "")
    for i in range(10_000):
        cand = name if i == 0 else _fit(stem, f" ({i}){dot}{ext}")
        try:
            fd = os.open(directory / cand, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                         | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        return directory / cand
    raise LocalProtocolError(ErrorCode.FILE_IO_ERROR, f"no free name for {name!r}")


@dataclass
class _Partial:
    size: int
    block_size: int
    root: str
    verified: int = 0
    chain: str = ""


def _load_partial(sidecar: Path) -> _Partial | None:
    try:
        raw = json.loads(sidecar.read_text("utf-8"))
        return _Partial(int(raw["size"]), int(raw["block_size"]), str(raw["root"]),
                        int(raw["verified"]), str(raw["chain"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _save_partial(sidecar: Path, part: _Partial) -> None:
    tmp = sidecar.with_name(sidecar.name + ".tmp")
    try:
        tmp.write_text(json.dumps(part.__dict__), "utf-8")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, sidecar)
    except OSError:  # e.g. the disk is full: the older sidecar stays valid
        tmp.unlink(missing_ok=True)
        raise


async def receive_file(channel: ChannelLike, directory: str | os.PathLike[str], *,
                       decide: Callable[[OfferReceived], Awaitable[bool]] | None = None,
                       max_size: int = (1 << 63) - 1,
                       persist_every: int = PERSIST_EVERY,
                       progress: Callable[[int, int], None] | None = None,
                       cancel: asyncio.Event | None = None) -> ReceiveResult:
    """Take one offer on ``channel`` into ``directory`` (§8): resume a matching partial file,
    verify every block as it arrives, keep the partial on failure, move the verified file into
    place under a free name.  Setting ``cancel`` cancels the transfer (FIL-31); the partial file
    is kept for a later resume."""
    inbox = Path(directory)
    m = FileReceiver(max_size)
    pump = _Pump(channel, m)
    fd: int | None = None
    part: _Partial | None = None
    part_path = sidecar = final = None
    local = ""
    resumed = 0
    persisted = 0
    code: int | None = None
    write_failed = False  # after a failed write, later BLOCK_VERIFIED of the step are void

    persisting: asyncio.Future[None] | None = None  # a background persist under way

    def persist() -> None:
        nonlocal persisted
        if fd is not None and part is not None and sidecar is not None \
                and part.verified > persisted:
            os.fsync(fd)  # the data first: the sidecar never claims bytes not on disk (FIL-37)
            _save_partial(sidecar, part)
            persisted = part.verified

    def persist_later() -> None:
        """:func:`persist` in a worker thread, so the event loop (the connection's SCTP) never
        waits for the disk; one at a time, on a copy of the record (the data written so far
        is synced before the sidecar claims it, as in :func:`persist`)."""
        nonlocal persisting
        if persisting is not None and not persisting.done():
            return  # the next verified block tries again
        if fd is None or part is None or sidecar is None:
            return
        snap, where, wfd = _Partial(**part.__dict__), sidecar, fd

        def run() -> int:
            os.fsync(wfd)
            _save_partial(where, snap)
            return snap.verified

        async def bg() -> None:
            nonlocal persisted
            with contextlib.suppress(OSError):  # e.g. ENOSPC: the older sidecar stays valid
                persisted = max(persisted, await asyncio.to_thread(run))
        persisting = asyncio.ensure_future(bg())

    async def persisted_now() -> None:
        """Wait for a background persist (before the descriptor is closed or the sidecar
        removed)."""
        if persisting is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(persisting)

    async def on_offer(ev: OfferReceived) -> None:
        nonlocal fd, part, part_path, sidecar, resumed, persisted
        if decide is not None and not await decide(ev):
            m.refuse(ErrorCode.FILE_REFUSED)
            return
        nonlocal local
        local = local_name(ev.file_name)
        tail = PART_SUFFIX + ".json.tmp"  # the longest name made from the base
        base = _fit(local, tail)[: -len(tail)]  # a long name is shortened
        part_path = inbox / (base + PART_SUFFIX)
        sidecar = inbox / (base + PART_SUFFIX + ".json")
        old = _load_partial(sidecar)
        same = old is not None and (old.size, old.block_size, old.root) == (
            ev.size, ev.block_size, ev.root.hex()) and part_path.exists()
        offset = old.verified if same and old is not None else 0
        if shutil.disk_usage(inbox).free < ev.size - offset:
            m.refuse(ErrorCode.FILE_DISK_FULL)
            return
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)  # FIL-9
        try:
            fd = os.open(part_path, flags | (0 if same else os.O_TRUNC), 0o600)
        except OSError:
            m.refuse(ErrorCode.FILE_IO_ERROR)
            return
        part = old if same and old is not None else _Partial(ev.size, ev.block_size,
                                                              ev.root.hex())
        persisted = resumed = offset
        if not same:
            _save_partial(sidecar, part)
        m.accept(offset, bytes.fromhex(part.chain) if offset else None)

    def write(ev: Write) -> None:
        nonlocal write_failed
        assert fd is not None
        try:
            _pwrite(fd, ev.data, ev.offset)
        except OSError as exc:
            write_failed = True
            if m.state not in _TERMINAL:
                m.write_failed(ErrorCode.FILE_DISK_FULL
                               if exc.errno in (errno.ENOSPC, errno.EDQUOT)
                               else ErrorCode.FILE_IO_ERROR)

    def finish() -> None:
        nonlocal fd, final
        assert fd is not None and part_path is not None and sidecar is not None
        try:
            os.fsync(fd)
            os.close(fd)
            fd = None
            final = _free_name(inbox, local)
            os.replace(part_path, final)
            sidecar.unlink(missing_ok=True)
        except OSError as exc:
            m.write_failed(ErrorCode.FILE_DISK_FULL if exc.errno == errno.ENOSPC
                           else ErrorCode.FILE_IO_ERROR)
            return
        m.finish()

    async def next_input() -> tuple[bytes, MessageLike | None] | None:
        if cancel is None:
            return await _next(channel)
        if cancel.is_set():
            return None
        nxt = asyncio.ensure_future(_next(channel))
        stop = asyncio.ensure_future(cancel.wait())
        done, _ = await asyncio.wait({nxt, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if nxt in done:
            return nxt.result()
        nxt.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await nxt
        return None

    try:
        while m.state not in _TERMINAL:
            got = await next_input()
            if got is None:  # the user cancels (FIL-31)
                with contextlib.suppress(LocalProtocolError):
                    m.cancel()
                break
            data, msg = got
            m.receive_data(data)
            while (ev := m.next_event()) is not None:
                if isinstance(ev, OfferReceived):
                    await on_offer(ev)
                elif isinstance(ev, Write):
                    if not write_failed:  # writes of a step are done in order (FIL-45)
                        write(ev)
                elif isinstance(ev, BlockVerified):
                    if part is not None and not write_failed:
                        part.verified, part.chain = ev.verified, ev.chain.hex()
                        if part.verified - persisted >= persist_every:
                            persist_later()
                        if progress is not None:
                            progress(part.verified, part.size)
                elif isinstance(ev, FileVerified):
                    if not write_failed and m.state is State.VERIFIED:
                        await persisted_now()  # its sidecar must not outlive the rename
                        finish()
                elif isinstance(ev, FileFailed | Refused):
                    code = ev.code
            await pump.flush()
            await _confirm(msg)  # consumed: only now does the sender get credit back (p4-05)
            if not data:
                break
        await pump.flush()
    finally:
        await persisted_now()
        if fd is not None:
            with contextlib.suppress(OSError):
                persist()
            os.close(fd)
        if code == ErrorCode.FILE_ROOT_MISMATCH and part_path is not None:
            # the leaves do not belong to the root: discard the partial (FIL-35)
            for f in (part_path, sidecar):
                if f is not None:
                    f.unlink(missing_ok=True)
        await _half_close(channel)
    verified = part.verified if part is not None else 0
    where = final if m.state is State.DONE else (part_path if part_path is not None
                                                 and part_path.exists() else None)
    return ReceiveResult(str(m.state), code, where, verified, resumed)
