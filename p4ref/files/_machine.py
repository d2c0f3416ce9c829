"""The sender and receiver machines of one file transfer (spec/p4-06-files-v1.md §8, §9).

Theory of operation
-------------------
One transfer runs on one channel (p4-05).  Each side runs one machine: bytes of the peer's
direction in (:meth:`receive_data`, any split; ``b""`` is the peer's half-close), records to
write out (:meth:`data_to_send`), events for the driver (:meth:`next_event`).  The machines are
sans-I/O and never touch a disk: the sender asks for block K with a :class:`ReadBlock` event and
is given it with :meth:`FileSender.block`; the receiver asks the driver to :class:`Write` bytes at
an offset and is told of a failed write with :meth:`FileReceiver.write_failed`.  File content and
hashes are inputs; the machines have no clock and no timers (§9.6), so ``now`` is not needed.

A received record is decoded (§7.4 steps 1–6), classified into an input name, then looked up in
the role's table ``{(State, input): (next State, action)}`` (:data:`SENDER_TRANSITIONS`,
:data:`RECEIVER_TRANSITIONS`).  **Anything absent from the table is an error**: a received
record → UNEXPECTED_MESSAGE (the machine queues FILE_CANCEL, emits :class:`FileFailed` and enters
FAILED); a command → :class:`LocalProtocolError` and nothing changes [FIL-40].  An action may
still fail the transfer with a more specific code (§7.4 step 8).  DONE, REFUSED, CANCELLED and
FAILED are terminal: received bytes are discarded, commands refused [FIL-41].
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import ClassVar, TypeAlias

from .._table import transition_markdown
from ..errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from . import _codec as codec
from ._codec import (
    HASH_LEN,
    HEADER_LEN,
    MAX_DATA_LEN,
    Accept,
    Cancel,
    Complete,
    Data,
    Hashes,
    Offer,
    Record,
    Refuse,
)
from ._events import (
    Accepted,
    BlockVerified,
    Cancelled,
    Completed,
    Event,
    FileFailed,
    FileVerified,
    OfferReceived,
    ReadBlock,
    Refused,
    Write,
)

__all__ = [
    "MAX_PENDING_HASHES",
    "READ_FAILED_CODES",
    "RECEIVER_TRANSITIONS",
    "REFUSE_CODES",
    "SENDER_TRANSITIONS",
    "WRITE_FAILED_CODES",
    "FileReceiver",
    "FileSender",
    "State",
    "transition_table_markdown",
]

#: Leaf hashes a receiver holds for blocks not yet complete, the current one included (§8.3)
#: [FIL-28].
MAX_PENDING_HASHES = 64
#: Codes a driver may give to ``refuse``, ``read_failed`` and ``write_failed`` (§14.2).
REFUSE_CODES = frozenset({ErrorCode.FILE_REFUSED, ErrorCode.FILE_TOO_LARGE,
                          ErrorCode.FILE_DISK_FULL, ErrorCode.FILE_IO_ERROR})
READ_FAILED_CODES = frozenset({ErrorCode.FILE_IO_ERROR, ErrorCode.FILE_SOURCE_CHANGED})
WRITE_FAILED_CODES = frozenset({ErrorCode.FILE_DISK_FULL, ErrorCode.FILE_IO_ERROR})


class State(StrEnum):
    IDLE = "IDLE"
    OFFERED = "OFFERED"
    SENDING = "SENDING"
    WAIT_COMPLETE = "WAIT_COMPLETE"
    WAIT_OFFER = "WAIT_OFFER"
    RECEIVING = "RECEIVING"
    VERIFIED = "VERIFIED"
    DONE = "DONE"
    REFUSED = "REFUSED"
    CANCELLED = "CANCELLED"
    FAILED = "FAILED"


TERMINAL = frozenset({State.DONE, State.REFUSED, State.CANCELLED, State.FAILED})
S = State
Table: TypeAlias = dict[tuple[State, str], tuple[State, str]]


def _live_rows(states: tuple[State, ...], eof_states: tuple[State, ...]) -> Table:
    rows: Table = {}
    for st in states:
        rows[(st, "cancel")] = (S.CANCELLED, "send_cancel")
        rows[(st, "recv CANCEL (FILE_CANCELLED)")] = (S.CANCELLED, "cancelled")
        rows[(st, "recv CANCEL (other code)")] = (S.FAILED, "failed_by_peer")
    for st in eof_states:
        rows[(st, "end of stream")] = (S.FAILED, "interrupted")
    return rows


#: The sender's table (§9.2), normative [FIL-40].
SENDER_TRANSITIONS: Table = {
    (S.IDLE, "start"): (S.OFFERED, "send_offer"),
    (S.OFFERED, "recv ACCEPT"): (S.SENDING, "accepted"),
    (S.OFFERED, "recv ACCEPT (offset = size)"): (S.WAIT_COMPLETE, "accepted"),
    (S.OFFERED, "recv REFUSE"): (S.REFUSED, "refused"),
    (S.SENDING, "block"): (S.SENDING, "send_block"),
    (S.SENDING, "block (last)"): (S.WAIT_COMPLETE, "send_block"),
    (S.SENDING, "read_failed"): (S.FAILED, "fail_local"),
    (S.WAIT_COMPLETE, "recv COMPLETE"): (S.DONE, "completed"),
    **_live_rows((S.OFFERED, S.SENDING, S.WAIT_COMPLETE),
                 (S.IDLE, S.OFFERED, S.SENDING, S.WAIT_COMPLETE)),
}

#: The receiver's table (§9.3), normative [FIL-40].
RECEIVER_TRANSITIONS: Table = {
    (S.WAIT_OFFER, "recv OFFER"): (S.OFFERED, "offer_received"),
    (S.WAIT_OFFER, "recv OFFER (too large)"): (S.REFUSED, "refuse_too_large"),
    (S.OFFERED, "accept"): (S.RECEIVING, "send_accept"),
    (S.OFFERED, "accept (offset = size)"): (S.VERIFIED, "send_accept"),
    (S.OFFERED, "refuse"): (S.REFUSED, "send_refuse"),
    (S.RECEIVING, "recv HASHES"): (S.RECEIVING, "hashes"),
    (S.RECEIVING, "recv DATA"): (S.RECEIVING, "data"),
    (S.RECEIVING, "recv DATA (last byte)"): (S.VERIFIED, "data"),
    (S.RECEIVING, "write_failed"): (S.FAILED, "fail_local"),
    (S.VERIFIED, "write_failed"): (S.FAILED, "fail_local"),
    (S.VERIFIED, "finish"): (S.DONE, "send_complete"),
    (S.VERIFIED, "end of stream"): (S.VERIFIED, "ignore"),
    **_live_rows((S.OFFERED, S.RECEIVING, S.VERIFIED), (S.WAIT_OFFER, S.OFFERED, S.RECEIVING)),
}


def transition_table_markdown(table: Table) -> str:
    """The normative table of §9.2 / §9.3, generated from the data (STYLE.md)."""
    return transition_markdown(((str(st), str(inp), str(nxt), act)
                                for (st, inp), (nxt, act) in table.items()),
                               final_newline=False)


class _Failure(Exception):
    """An error found while handling one input: ``code``, and whether the peer caused it by
    ending its direction (no FILE_CANCEL then) [FIL-32]."""

    def __init__(self, code: ErrorCode | int, *, send_cancel: bool = True,
                 by_peer: bool = False) -> None:
        super().__init__(code)
        self.code = int(code)
        self.send_cancel = send_cancel
        self.by_peer = by_peer


def _remote(code: ErrorCode, what: str) -> RemoteProtocolError:
    return RemoteProtocolError(code, what)


class _Machine:
    """What both roles share: the record reader, the output queues, failing, the table."""

    TABLE: ClassVar[Table] = {}

    def __init__(self, state: State) -> None:
        self._state = state
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._events: deque[Event] = deque()

    # --- outputs ---
    @property
    def state(self) -> State:
        return self._state

    def data_to_send(self) -> list[bytes]:
        """Every record queued since the last call, in order; write them to the channel."""
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def _send(self, record: Record) -> None:
        self._out.append(codec.encode_record(record))

    # --- input ---
    def receive_data(self, data: bytes) -> None:
        """Bytes of the peer's direction, any split [FIL-42]; ``b""`` is its half-close."""
        if self._state in TERMINAL:
            return  # [FIL-41]
        if not data:
            try:
                self._dispatch_input("end of stream", None)
            except _Failure as f:
                self._enter_failed(f)
            return
        self._buf += data
        while self._state not in TERMINAL:
            try:
                record = self._next_record()
                if record is None:
                    return
                self._dispatch_input(self._classify(record), record)
            except _Failure as f:
                self._enter_failed(f)
            except RemoteProtocolError as exc:
                self._enter_failed(_Failure(exc.code))
        self._buf.clear()  # bytes after a terminal record are discarded [FIL-41]

    def _next_record(self) -> Record | None:
        """§7.4 steps 1–8 on the buffered bytes; None when a record is not complete yet."""
        if len(self._buf) < HEADER_LEN:
            return None
        rtype, length = codec.parse_header(bytes(self._buf[:HEADER_LEN]))  # [FIL-13]
        if len(self._buf) < HEADER_LEN + length:
            return None
        body = bytes(self._buf[HEADER_LEN : HEADER_LEN + length])
        del self._buf[: HEADER_LEN + length]
        return codec.decode_body(rtype, body)

    def _classify(self, record: Record) -> str:
        name = type(record).__name__.upper()
        if isinstance(record, Cancel):
            is_cancel = record.code == ErrorCode.FILE_CANCELLED
            return "recv CANCEL (FILE_CANCELLED)" if is_cancel else "recv CANCEL (other code)"
        return f"recv {name}"

    def _dispatch_input(self, name: str, arg: object) -> None:
        """Look ``(state, name)`` up and run its action; a received record that is absent is
        UNEXPECTED_MESSAGE [FIL-40]."""
        row = self.TABLE.get((self._state, name))
        if row is None:
            if name == "end of stream":
                return  # end of stream where the table has no row: nothing more expected
            raise _Failure(ErrorCode.UNEXPECTED_MESSAGE)
        nxt, action = row
        getattr(self, "_a_" + action)(arg)
        if self._state is not S.FAILED:
            self._state = nxt

    def _command(self, name: str, arg: object, check: Callable[[], None] | None = None) -> None:
        """A local command: absent from the table → refused, nothing changes [FIL-40]."""
        row = self.TABLE.get((self._state, name))
        if row is None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                     f"{name} in state {self._state}")
        if check is not None:
            check()  # argument checks: a refusal changes nothing
        try:
            self._dispatch_input(name, arg)
        except _Failure as f:
            self._enter_failed(f)

    def _enter_failed(self, f: _Failure) -> None:
        """FILE_CANCEL (unless the peer caused it), FILE_FAILED, state FAILED [FIL-32]."""
        if f.send_cancel:
            self._send(Cancel(f.code))
        self._events.append(FileFailed(f.code, f.by_peer))
        self._state = S.FAILED
        self._buf.clear()

    # --- actions both roles share ---
    def _a_send_cancel(self, _: object) -> None:
        self._send(Cancel(ErrorCode.FILE_CANCELLED))

    def _a_cancelled(self, _: object) -> None:
        self._events.append(Cancelled())

    def _a_failed_by_peer(self, record: object) -> None:
        assert isinstance(record, Cancel)
        raise _Failure(record.code, send_cancel=False, by_peer=True)

    def _a_interrupted(self, _: object) -> None:
        raise _Failure(ErrorCode.FILE_INTERRUPTED, send_cancel=False, by_peer=True)

    def _a_fail_local(self, code: object) -> None:
        assert isinstance(code, int)
        raise _Failure(code)

    def _a_ignore(self, _: object) -> None:
        return None

    def cancel(self) -> None:
        """The user cancels: FILE_CANCEL(FILE_CANCELLED), state CANCELLED (§8.5)."""
        self._command("cancel", None)


def _code_check(code: ErrorCode | int, allowed: frozenset[ErrorCode]) -> Callable[[], None]:
    """The argument check of a command that carries a code: one of ``allowed`` (§14.2)."""

    def check() -> None:
        if code not in {int(c) for c in allowed}:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"code {code!r} not allowed here")

    return check


class FileSender(_Machine):
    """Role ``sender``: offers one file and sends it from the receiver's offset (§8)."""

    TABLE: ClassVar[Table] = SENDER_TRANSITIONS

    def __init__(self, name: str, size: int, block_size: int, root: bytes) -> None:
        super().__init__(S.IDLE)
        # The offer is checked like a received one: the encoder refuses what a decoder rejects.
        self._offer = Offer(name, size, block_size, bytes(root))
        codec.encode_record(self._offer)
        self._n = codec.block_count(size, block_size)
        self._next = 0  # the block the last READ_BLOCK asked for

    @property
    def offer(self) -> Offer:
        return self._offer

    def _classify(self, record: Record) -> str:
        if isinstance(record, Accept) and record.offset == self._offer.size:
            return "recv ACCEPT (offset = size)"
        return super()._classify(record)

    # --- commands ---
    def start(self) -> None:
        """Send FILE_OFFER (§8.1)."""
        self._command("start", None)

    def block(self, index: int, data: bytes, leaf: bytes) -> None:
        """The driver's answer to READ_BLOCK: the block's bytes as read now and its leaf hash
        from the hash list the root was computed from (§8.3) [FIL-27]."""

        def check() -> None:
            if index != self._next:
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID,
                                         f"block {index}, READ_BLOCK asked for {self._next}")
            if len(leaf) != HASH_LEN:
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "hash is 32 bytes")

        last = self._state is S.SENDING and index == self._n - 1
        self._command("block (last)" if last else "block", (index, bytes(data), bytes(leaf)),
                      check)

    def read_failed(self, code: ErrorCode | int = ErrorCode.FILE_IO_ERROR) -> None:
        """Reading the file failed: FILE_CANCEL with ``code``, FAILED (§8.7)."""
        self._command("read_failed", int(code), _code_check(code, READ_FAILED_CODES))

    # --- actions ---
    def _a_send_offer(self, _: object) -> None:
        self._send(self._offer)

    def _a_accepted(self, record: object) -> None:
        assert isinstance(record, Accept)
        offer = self._offer
        if record.offset > offer.size or (
                record.offset % offer.block_size and record.offset != offer.size):
            raise _Failure(ErrorCode.FILE_OFFSET_INVALID)  # [FIL-25]
        self._events.append(Accepted(record.offset))
        if record.offset < offer.size:
            self._read(record.offset // offer.block_size)

    def _read(self, index: int) -> None:
        self._next = index
        offer = self._offer
        length = codec.block_length(index, offer.size, offer.block_size)
        self._events.append(ReadBlock(index, index * offer.block_size, length))

    def _a_send_block(self, arg: object) -> None:
        assert isinstance(arg, tuple)
        index, data, leaf = arg
        assert isinstance(index, int) and isinstance(data, bytes) and isinstance(leaf, bytes)
        offer = self._offer
        if len(data) != codec.block_length(index, offer.size, offer.block_size) or \
                hashlib.sha256(data).digest() != leaf:
            raise _Failure(ErrorCode.FILE_SOURCE_CHANGED)  # [FIL-27]
        self._send(Hashes(index, (leaf,)))  # [FIL-26]
        for i in range(0, len(data), MAX_DATA_LEN):
            self._send(Data(data[i : i + MAX_DATA_LEN]))
        if index + 1 < self._n:
            self._read(index + 1)

    def _a_refused(self, record: object) -> None:
        assert isinstance(record, Refuse)
        self._events.append(Refused(record.code))

    def _a_completed(self, _: object) -> None:
        self._events.append(Completed())


class FileReceiver(_Machine):
    """Role ``receiver``: takes one offer, verifies each block as it arrives (§8)."""

    TABLE: ClassVar[Table] = RECEIVER_TRANSITIONS

    def __init__(self, max_size: int = codec.MAX_SIZE) -> None:
        super().__init__(S.WAIT_OFFER)
        if not 0 <= max_size <= codec.MAX_SIZE:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "max_size")
        self._max_size = max_size
        self._offer: Offer | None = None
        self._pos = 0  # bytes received (and written) so far
        self._next_hash = 0  # index of the next leaf expected in FILE_HASHES
        self._pending: deque[bytes] = deque()  # leaves of blocks _pos // bs …
        self._chain = b""  # chain value of the verified prefix
        self._hasher = hashlib.sha256()

    @property
    def offer(self) -> Offer | None:
        return self._offer

    @property
    def verified(self) -> int:
        """Bytes of the verified prefix (a multiple of the block size, or the size)."""
        if self._offer is None:
            return 0
        bs = self._offer.block_size
        return min(self._offer.size, (self._pos // bs) * bs)

    def _classify(self, record: Record) -> str:
        if isinstance(record, Offer) and record.size > self._max_size:
            return "recv OFFER (too large)"
        if isinstance(record, Data) and self._offer is not None and \
                self._pos + len(record.data) == self._offer.size:
            return "recv DATA (last byte)"
        return super()._classify(record)

    # --- commands ---
    def accept(self, offset: int = 0, chain: bytes | None = None) -> None:
        """Accept, resuming from ``offset`` whose chain value is ``chain`` (§8.2, §8.6)."""
        offer = self._offer

        def check() -> None:
            assert offer is not None
            if offset < 0 or offset > offer.size or (
                    offset % offer.block_size and offset != offer.size):
                raise LocalProtocolError(ErrorCode.FILE_OFFSET_INVALID, f"offset {offset}")
            if (chain is None) != (offset == 0) or (chain is not None and len(chain) != HASH_LEN):
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID,
                                         "chain: 32 bytes when offset > 0, absent at 0")

        name = "accept (offset = size)" if offer is not None and offset == offer.size else "accept"
        self._command(name, (offset, chain), check)

    def refuse(self, code: ErrorCode | int = ErrorCode.FILE_REFUSED) -> None:
        """Refuse the offer with ``code`` (§8.2)."""
        self._command("refuse", int(code), _code_check(code, REFUSE_CODES))

    def write_failed(self, code: ErrorCode | int = ErrorCode.FILE_IO_ERROR) -> None:
        """A write (or the final sync) failed: FILE_CANCEL with ``code``, FAILED; the verified
        prefix stays valid for a resume (§8.7) [FIL-38]."""
        self._command("write_failed", int(code), _code_check(code, WRITE_FAILED_CODES))

    def finish(self) -> None:
        """The verified file is durable and in place: send FILE_COMPLETE (§8.4) [FIL-30]."""
        self._command("finish", None)

    # --- actions ---
    def _a_offer_received(self, record: object) -> None:
        assert isinstance(record, Offer)
        self._offer = record
        self._events.append(OfferReceived(record.name, record.size, record.block_size,
                                          record.root))

    def _a_refuse_too_large(self, record: object) -> None:
        self._a_offer_received(record)
        self._send(Refuse(ErrorCode.FILE_TOO_LARGE))  # [FIL-23]
        self._events.append(Refused(ErrorCode.FILE_TOO_LARGE))

    def _a_send_refuse(self, code: object) -> None:
        assert isinstance(code, int)
        self._send(Refuse(code))

    def _a_send_accept(self, arg: object) -> None:
        assert isinstance(arg, tuple)
        offset, chain = arg
        offer = self._offer
        assert offer is not None and isinstance(offset, int)
        self._send(Accept(offset))
        self._pos = offset
        self._next_hash = offset // offer.block_size
        self._chain = chain if isinstance(chain, bytes) else codec.chain_init(offer.size,
                                                                              offer.block_size)
        if offset == offer.size:
            self._check_root()

    def _check_root(self) -> None:
        assert self._offer is not None
        if self._chain != self._offer.root:
            raise _Failure(ErrorCode.FILE_ROOT_MISMATCH)  # [FIL-29]
        self._events.append(FileVerified())

    def _a_hashes(self, record: object) -> None:
        assert isinstance(record, Hashes) and self._offer is not None
        n = codec.block_count(self._offer.size, self._offer.block_size)
        count = len(record.hashes)
        if record.first != self._next_hash or record.first + count > n or \
                len(self._pending) + count > MAX_PENDING_HASHES:
            raise _Failure(ErrorCode.FILE_HASHES_INVALID)  # [FIL-28], [FIL-28]
        self._pending.extend(record.hashes)
        self._next_hash += count

    def _a_data(self, record: object) -> None:
        assert isinstance(record, Data) and self._offer is not None
        offer = self._offer
        if not self._pending:
            raise _Failure(ErrorCode.FILE_HASHES_INVALID)  # data before its leaf [FIL-28]
        index = self._pos // offer.block_size
        end = index * offer.block_size + codec.block_length(index, offer.size, offer.block_size)
        if self._pos + len(record.data) > end:
            raise _Failure(ErrorCode.FILE_DATA_OVERRUN)  # [FIL-28]
        self._hasher.update(record.data)
        self._events.append(Write(self._pos, record.data))
        self._pos += len(record.data)
        if self._pos < end:
            return
        leaf = self._hasher.digest()
        self._hasher = hashlib.sha256()
        if leaf != self._pending[0]:
            raise _Failure(ErrorCode.FILE_BLOCK_MISMATCH)  # [FIL-29]
        self._pending.popleft()
        self._chain = codec.chain_step(self._chain, leaf)
        self._events.append(BlockVerified(index, self._pos, self._chain))
        if self._pos == offer.size:
            self._check_root()

    def _a_send_complete(self, _: object) -> None:
        self._send(Complete())



def state_diagram_mermaid(table: Table) -> str:
    """The informative diagram of §9.1, generated from the tables."""
    lines = ["stateDiagram-v2"]
    for (st, inp), (nxt, _) in table.items():
        lines.append(f"    {st} --> {nxt}: {inp}")
    return "\n".join(lines)
