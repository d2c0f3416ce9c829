"""The channel multiplexer: many channels over one session (p4-05 §6–§11).

Theory of operation
-------------------
A session (p4-04) carries two ordered streams of opaque messages; each message is one channel
*item* (:mod:`._codec`).  :class:`ChannelMux` is pure: commands return the items the driver must
submit to the session (in order), :meth:`ChannelMux.receive` takes one item of the peer's stream
and returns events.  Nothing here reads a clock, draws randomness or touches storage.

Ids.  The LOW peer (p4-03 §5.1) opens even ids 0, 2, 4 …, the HIGH peer odd ids 1, 3, 5 …, each
side in increasing order without gaps; an id is never reused [CHN-15].  A channel that is
finished (both directions closed and every received byte consumed) or reset is forgotten at once:
only "the next id of each side" is remembered, so a late item for a finished channel is
recognised (its id is below the next one) and ignored [CHN-17, CHN-21].

Flow control.  Each direction of each channel has a *limit*: a byte offset the receiver accepts
data below.  It starts at INITIAL_WINDOW and only grows; CREDIT items carry the new limit, so
they are idempotent [CHN-25, CHN-26].  The receiver raises the limit only when the *application*
confirms that it consumed bytes (:meth:`ChannelMux.consumed`), never when bytes arrive [CHN-28];
a channel whose reader stops therefore stalls only itself.

Crash safety.  DATA carries the channel offset of its first byte.  The persisted state
(:meth:`ChannelMux.persistent_state`, stored in the same transaction as the outbox append or
inbox confirm that changed it, CHN-2, CHN-41) holds, per channel, the bytes sent, the peer's
limit, the bytes *consumed* and the limit announced; a restarted receiver resumes at its
consumed offset, so redelivered items are trimmed or dropped by offset and nothing is delivered
twice or lost [CHN-24, CHN-42].

Per channel, inputs are looked up in :data:`TRANSITIONS` ``{(ChanState, Input): (next, action)}``
(the spec's table §9.2 is generated from it).  A local command whose pair is absent is refused
with CHAN_CLOSED and changes nothing; every received item has a row (a rule broken inside an
action resets the channel: ``peer broke a channel rule``).  Items that cannot be attributed to a
channel (undecodable, or an id the peer may not use) fail the whole multiplexer [CHN-40].
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cbor2

from .._table import transition_markdown
from ..errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ..framing import CborValue, decode_cbor_map
from ._codec import (
    INITIAL_WINDOW,
    MAX_CHAN_ID,
    MAX_DATA,
    U64_MAX,
    Close,
    Credit,
    Data,
    Item,
    Open,
    Reset,
    check_name,
    decode_item,
    encode_item,
    name_ok,
)
from ._events import (
    ChannelData,
    ChannelEvent,
    ChannelHalfClosed,
    ChannelInfo,
    ChannelOpened,
    ChannelReset,
    CreditGranted,
)

__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_WINDOW",
    "TRANSITIONS",
    "ChanState",
    "ChannelConfig",
    "ChannelMux",
    "Input",
    "transition_table_markdown",
    "transition_table_mermaid",
]

DEFAULT_WINDOW = 1 << 20
DEFAULT_MAX_CHANNELS = 256
_STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class ChannelConfig:
    """``window``: how far beyond the consumed offset this side lets the peer write (§7.3);
    ``max_channels``: live channels (both sides' together) this side allows (§6.2)."""

    window: int = DEFAULT_WINDOW
    max_channels: int = DEFAULT_MAX_CHANNELS

    def __post_init__(self) -> None:
        if not (type(self.window) is int and 1 <= self.window <= U64_MAX):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "window is 1 … 2^64-1")
        if not (type(self.max_channels) is int and 1 <= self.max_channels <= U64_MAX):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "max_channels is 1 … 2^64-1")


class ChanState(StrEnum):
    IDLE = "IDLE"  # pseudo-state: no channel with this id yet
    OPEN = "OPEN"
    HALF_CLOSED_LOCAL = "HALF_CLOSED_LOCAL"  # this side sent CLOSE
    HALF_CLOSED_REMOTE = "HALF_CLOSED_REMOTE"  # the peer sent CLOSE
    CLOSED = "CLOSED"  # both sent CLOSE; received bytes still to be consumed
    DONE = "DONE"  # pseudo-state: forgotten at once


class Input(StrEnum):
    OPEN = "open (local)"
    RECV_OPEN = "recv OPEN"
    WRITE = "write (local)"
    RECV_DATA = "recv DATA"
    CONSUMED = "consumed (local)"
    RECV_CREDIT = "recv CREDIT"
    RESYNC = "resync (local)"
    CLOSE = "close (local)"
    RECV_CLOSE = "recv CLOSE"
    DRAINED = "all received bytes consumed"
    RESET = "reset (local)"
    RECV_RESET = "recv RESET"
    VIOLATION = "peer broke a channel rule"


S, In = ChanState, Input
_LIVE = (S.OPEN, S.HALF_CLOSED_LOCAL, S.HALF_CLOSED_REMOTE, S.CLOSED)
_RECEIVING = (S.OPEN, S.HALF_CLOSED_LOCAL)  # the peer's direction is open
_SENDING = (S.OPEN, S.HALF_CLOSED_REMOTE)  # this side's direction is open

TRANSITIONS: dict[tuple[ChanState, Input], tuple[ChanState, str]] = {
    (S.IDLE, In.OPEN): (S.OPEN, "send_open"),
    (S.IDLE, In.RECV_OPEN): (S.OPEN, "accept"),
    (S.OPEN, In.WRITE): (S.OPEN, "send_data"),
    (S.HALF_CLOSED_REMOTE, In.WRITE): (S.HALF_CLOSED_REMOTE, "send_data"),
    (S.OPEN, In.RECV_DATA): (S.OPEN, "deliver"),
    (S.HALF_CLOSED_LOCAL, In.RECV_DATA): (S.HALF_CLOSED_LOCAL, "deliver"),
    (S.HALF_CLOSED_REMOTE, In.RECV_DATA): (S.HALF_CLOSED_REMOTE, "deliver"),
    (S.CLOSED, In.RECV_DATA): (S.CLOSED, "deliver"),
    (S.OPEN, In.CONSUMED): (S.OPEN, "consume_grant"),
    (S.HALF_CLOSED_LOCAL, In.CONSUMED): (S.HALF_CLOSED_LOCAL, "consume_grant"),
    (S.HALF_CLOSED_REMOTE, In.CONSUMED): (S.HALF_CLOSED_REMOTE, "consume"),
    (S.CLOSED, In.CONSUMED): (S.CLOSED, "consume"),
    (S.OPEN, In.RECV_CREDIT): (S.OPEN, "raise_limit"),
    (S.HALF_CLOSED_REMOTE, In.RECV_CREDIT): (S.HALF_CLOSED_REMOTE, "raise_limit"),
    (S.HALF_CLOSED_LOCAL, In.RECV_CREDIT): (S.HALF_CLOSED_LOCAL, "ignore"),
    (S.CLOSED, In.RECV_CREDIT): (S.CLOSED, "ignore"),
    (S.OPEN, In.RESYNC): (S.OPEN, "announce"),
    (S.HALF_CLOSED_LOCAL, In.RESYNC): (S.HALF_CLOSED_LOCAL, "announce"),
    (S.HALF_CLOSED_REMOTE, In.RESYNC): (S.HALF_CLOSED_REMOTE, "ignore"),
    (S.CLOSED, In.RESYNC): (S.CLOSED, "ignore"),
    (S.OPEN, In.CLOSE): (S.HALF_CLOSED_LOCAL, "send_close"),
    (S.HALF_CLOSED_REMOTE, In.CLOSE): (S.CLOSED, "send_close"),
    (S.OPEN, In.RECV_CLOSE): (S.HALF_CLOSED_REMOTE, "peer_close"),
    (S.HALF_CLOSED_LOCAL, In.RECV_CLOSE): (S.CLOSED, "peer_close"),
    (S.HALF_CLOSED_REMOTE, In.RECV_CLOSE): (S.HALF_CLOSED_REMOTE, "repeated_close"),
    (S.CLOSED, In.RECV_CLOSE): (S.CLOSED, "repeated_close"),
    (S.CLOSED, In.DRAINED): (S.DONE, "forget"),
}
for _s in _LIVE:
    TRANSITIONS[(_s, In.RECV_OPEN)] = (_s, "ignore")
    TRANSITIONS[(_s, In.RESET)] = (S.DONE, "send_reset")
    TRANSITIONS[(_s, In.RECV_RESET)] = (S.DONE, "peer_reset")
    TRANSITIONS[(_s, In.VIOLATION)] = (S.DONE, "fail")
del _s

_STATE_NO = {s: i for i, s in enumerate(_LIVE)}


def transition_table_markdown() -> str:
    """The normative table of spec §9.2, generated from :data:`TRANSITIONS`."""
    return transition_markdown((state.value, inp.value, nxt.value, action)
                               for (state, inp), (nxt, action) in TRANSITIONS.items())


def transition_table_mermaid() -> str:
    """Informative diagram of spec §9.1, generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2"]
    seen: set[tuple[ChanState, ChanState]] = set()
    for (state, _inp), (nxt, _) in TRANSITIONS.items():
        if state == nxt or (state, nxt) in seen:
            continue
        seen.add((state, nxt))
        labels = [i.value for (s, i), (n, _) in TRANSITIONS.items() if s == state and n == nxt]
        src = "[*]" if state is S.IDLE else state.value
        dst = "[*]" if nxt is S.DONE else nxt.value
        lines.append(f"    {src} --> {dst}: {' / '.join(labels)}")
    return "\n".join(lines) + "\n"


class _Violation(Exception):
    def __init__(self, code: ErrorCode) -> None:
        super().__init__(code.name)
        self.code = code


@dataclass(slots=True)
class _Chan:
    chan: int
    name: str
    local: bool
    state: ChanState
    sent: int = 0
    send_limit: int = INITIAL_WINDOW
    received: int = 0
    consumed: int = 0
    recv_limit: int = INITIAL_WINDOW
    final: int | None = None


class ChannelMux:
    """Channels over one session, for one side (LOW when ``low``) [CHN-15, CHN-16].

    Sending: :meth:`open`, :meth:`write`, :meth:`close`, :meth:`reset`, :meth:`consumed` and
    :meth:`resync` return the items to submit, in order (first any item :meth:`receive` queued
    and nobody took yet).  Receiving: :meth:`receive` returns events; items it queues (a CREDIT
    for an accepted channel, a RESET refusing or failing one) are taken with
    :meth:`items_to_send`.  A local call the protocol forbids raises
    :class:`~p4ref.errors.LocalProtocolError` and changes nothing; an item that breaks the item
    stream raises :class:`~p4ref.errors.RemoteProtocolError` and the multiplexer stays failed
    (:attr:`failed`) until it is rebuilt from the persisted state."""

    def __init__(self, *, low: bool, config: ChannelConfig = ChannelConfig(),
                 state: bytes | None = None) -> None:
        self.low = bool(low)
        self.config = config
        self._chans: dict[int, _Chan] = {}
        self._next_own = 0 if self.low else 1
        self._next_peer = 1 if self.low else 0
        self._out: list[bytes] = []
        self._events: list[ChannelEvent] = []
        self.failed: ErrorCode | None = None
        self._actions: dict[str, Callable[[_Chan, Any], None]] = {
            "send_open": self._send_open, "accept": self._accept, "send_data": self._send_data,
            "deliver": self._deliver, "consume_grant": self._consume_grant,
            "consume": self._consume, "raise_limit": self._raise_limit, "ignore": _ignore,
            "announce": self._announce, "send_close": self._send_close,
            "peer_close": self._peer_close, "repeated_close": self._repeated_close,
            "forget": _ignore, "send_reset": self._send_reset, "peer_reset": self._peer_reset,
            "fail": self._fail,
        }
        if state is not None:
            self._restore(state)

    # ---------------------------------------------------------------- sending side

    def open(self, name: str) -> tuple[int, list[bytes]]:
        """Open a channel named ``name``: its id and the items (OPEN, maybe CREDIT)
        [CHN-18, CHN-30]."""
        self._check_running()
        check_name(name)
        if len(self._chans) >= self.config.max_channels or self._next_own > MAX_CHAN_ID:
            raise LocalProtocolError(ErrorCode.CHAN_TOO_MANY, "live-channel limit reached")
        chan = self._next_own
        self._next_own += 2
        ch = _Chan(chan, name, True, S.IDLE)
        self._chans[chan] = ch
        self._apply(ch, In.OPEN, None)
        return chan, self._drain()

    def credit(self, chan: int) -> int:
        """Bytes this side may write on ``chan`` now (0 once its direction is closed)."""
        ch = self._live(chan)
        return ch.send_limit - ch.sent if ch.state in _SENDING else 0

    def writable(self, chan: int) -> bool:
        """Whether this side's direction of ``chan`` is open (a write is allowed, credit
        permitting)."""
        return self._live(chan).state in _SENDING

    def write(self, chan: int, data: bytes, *, end_of_message: bool) -> list[bytes]:
        """DATA items for ``data`` (at most MAX_DATA bytes each; ``end_of_message`` on the last)
        [CHN-5, CHN-32]."""
        self._check_running()
        ch = self._live(chan)
        if (ch.state, In.WRITE) not in TRANSITIONS:
            raise LocalProtocolError(ErrorCode.CHAN_CLOSED, f"channel {chan} closed for writing")
        if not data:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "a write carries >= 1 byte")
        if len(data) > ch.send_limit - ch.sent:
            raise LocalProtocolError(
                ErrorCode.CHAN_CREDIT_EXCEEDED,
                f"{len(data)} bytes > credit {ch.send_limit - ch.sent} on channel {chan}")
        self._apply(ch, In.WRITE, (bytes(data), bool(end_of_message)))
        return self._drain()

    def close(self, chan: int) -> list[bytes]:
        """Half-close: this side writes no more on ``chan`` (CLOSE at its final offset)."""
        self._check_running()
        ch = self._live(chan)
        if (ch.state, In.CLOSE) not in TRANSITIONS:
            raise LocalProtocolError(ErrorCode.CHAN_CLOSED, f"channel {chan} already closed")
        self._apply(ch, In.CLOSE, None)
        self._check_drained(ch)
        return self._drain()

    def reset(self, chan: int, code: int) -> list[bytes]:
        """Abort both directions of ``chan`` with ``code`` (0 … 65535) [CHN-35, CHN-39]."""
        self._check_running()
        ch = self._live(chan)
        if not (type(code) is int and 0 <= code <= 0xFFFF) or _local_only(code):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID,
                                     "reset code is 0 … 65535 and not a local-only code")
        self._apply(ch, In.RESET, code)
        return self._drain()

    def consumed(self, chan: int, nbytes: int) -> list[bytes]:
        """The application consumed ``nbytes`` more bytes of ``chan``: maybe a CREDIT
        [CHN-28, CHN-29]."""
        self._check_running()
        ch = self._live(chan)
        if not (type(nbytes) is int and 0 <= nbytes <= ch.received - ch.consumed):
            raise LocalProtocolError(
                ErrorCode.CHAN_CONSUME_INVALID,
                f"{nbytes} bytes, {ch.received - ch.consumed} delivered and unconsumed")
        self._apply(ch, In.CONSUMED, nbytes)
        self._check_drained(ch)
        return self._drain()

    def resync(self) -> list[bytes]:
        """After every new connection and every restart: the announced limit of every channel
        whose peer direction is open, in ascending id order [CHN-42]."""
        self._check_running()
        for chan in sorted(self._chans):
            self._apply(self._chans[chan], In.RESYNC, None)
        return self._drain()

    def items_to_send(self) -> list[bytes]:
        """Items queued by :meth:`receive` (and not yet returned by another call)."""
        return self._drain()

    # ---------------------------------------------------------------- receiving side

    def receive(self, payload: bytes) -> list[ChannelEvent]:
        """One item of the peer's stream (a session message payload) [CHN-1, CHN-16]."""
        if self.failed is not None:
            return []
        self._events = []
        try:
            item = decode_item(payload)
            self._dispatch(item)
        except RemoteProtocolError as exc:
            self.failed = exc.code
            self._events = []
            raise
        events, self._events = self._events, []
        return events

    def _dispatch(self, item: Item) -> None:
        chan = item.chan
        own = (chan % 2 == 0) == self.low
        if isinstance(item, Open):
            if own or chan > self._next_peer or chan > MAX_CHAN_ID:
                raise RemoteProtocolError(ErrorCode.CHAN_ID_INVALID, f"OPEN of id {chan}")
            if chan < self._next_peer:  # a repeated OPEN (§6.1 rule 2)
                if chan in self._chans:
                    self._apply(self._chans[chan], In.RECV_OPEN, item)
                return
            self._next_peer += 2
            if not name_ok(item.name):
                self._queue(Reset(chan, int(ErrorCode.CHAN_NAME_INVALID)))
                return
            if len(self._chans) >= self.config.max_channels:
                self._queue(Reset(chan, int(ErrorCode.CHAN_TOO_MANY)))
                return
            ch = _Chan(chan, item.name, False, S.IDLE)
            self._chans[chan] = ch
            self._apply(ch, In.RECV_OPEN, item)
            return
        live = self._chans.get(chan)
        if live is None:
            if chan >= (self._next_own if own else self._next_peer):
                raise RemoteProtocolError(ErrorCode.CHAN_ID_INVALID, f"id {chan} never opened")
            return  # a late item of a finished or reset channel [CHN-17]
        ch = live
        inp = {Data: In.RECV_DATA, Credit: In.RECV_CREDIT, Close: In.RECV_CLOSE,
               Reset: In.RECV_RESET}[type(item)]
        try:
            self._apply(ch, inp, item)
        except _Violation as v:
            self._apply(ch, In.VIOLATION, v.code)
        self._check_drained(ch)

    # ---------------------------------------------------------------- inspection, persistence

    def channels(self) -> list[ChannelInfo]:
        return [ChannelInfo(c.chan, c.name, c.state.value, c.local, c.sent, c.send_limit,
                            c.received, c.consumed, c.recv_limit, c.final)
                for _, c in sorted(self._chans.items())]

    def state_string(self) -> str:
        """§13.2: ``RUNNING`` or ``FAILED``, then ``id:STATE`` per live channel, ascending."""
        head = "FAILED" if self.failed is not None else "RUNNING"
        return " ".join([head, *(f"{k}:{c.state.value}" for k, c in sorted(self._chans.items()))])

    def persistent_state(self) -> bytes:
        """Deterministic CBOR of what §11.1 says must be stored [CHN-41]."""
        chans: list[CborValue] = []
        for k, c in sorted(self._chans.items()):
            entry: dict[int, CborValue] = {1: k, 2: c.name, 3: _STATE_NO[c.state], 4: c.sent,
                                           5: c.send_limit, 6: c.consumed, 7: c.recv_limit}
            if c.final is not None:
                entry[8] = c.final
            chans.append(entry)
        # written with every outbox append and inbox confirm: cbor2's canonical encoder directly,
        # without encode_cbor's per-value subset walk (every value here is a bool, a str or a
        # counter the machine keeps within 0 … 2^64-1; the bytes are the same)
        return bytes(cbor2.dumps({1: _STATE_FORMAT, 2: self.low, 3: self._next_own,
                                  4: self._next_peer, 5: chans}, canonical=True))

    def _restore(self, raw: bytes) -> None:
        def bad(what: str) -> LocalProtocolError:
            return LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"channel state: {what}")

        try:
            top = decode_cbor_map(raw)
        except DecodeError as exc:
            raise bad(exc.message) from None
        if set(top) != {1, 2, 3, 4, 5} or top[1] != _STATE_FORMAT or top[2] is not self.low:
            raise bad("format, or LOW/HIGH differs")
        nxt_own, nxt_peer, chans = top[3], top[4], top[5]
        if not (isinstance(nxt_own, int) and isinstance(nxt_peer, int) and _uint(nxt_own)
                and _uint(nxt_peer) and isinstance(chans, list)):
            raise bad("counters")
        if nxt_own % 2 != self._next_own % 2 or nxt_peer % 2 != self._next_peer % 2:
            raise bad("id parity")
        self._next_own, self._next_peer = nxt_own, nxt_peer
        for entry in chans:
            if not isinstance(entry, dict) or not {1, 2, 3, 4, 5, 6, 7} <= set(entry) \
                    or set(entry) - {1, 2, 3, 4, 5, 6, 7, 8}:
                raise bad("channel entry")
            nums = [entry[k] for k in (1, 4, 5, 6, 7)] + [entry.get(8, 0)]
            if not all(_uint(v) for v in nums) or not isinstance(entry[2], str) \
                    or entry[3] not in range(len(_LIVE)):
                raise bad("channel entry fields")
            chan = entry[1]
            assert isinstance(chan, int) and isinstance(entry[2], str) and isinstance(entry[3], int)
            final = entry.get(8)
            ch = _Chan(chan, entry[2], (chan % 2 == 0) == self.low, _LIVE[entry[3]],
                       sent=entry[4], send_limit=entry[5],  # type: ignore[arg-type]
                       received=entry[6], consumed=entry[6],  # type: ignore[arg-type]
                       recv_limit=entry[7], final=final)  # type: ignore[arg-type]
            self._chans[chan] = ch

    # ---------------------------------------------------------------- the table and its actions

    def _apply(self, ch: _Chan, inp: Input, arg: Any) -> None:
        nxt, action = TRANSITIONS[(ch.state, inp)]
        self._actions[action](ch, arg)  # may raise _Violation: the state is then unchanged
        ch.state = nxt
        if nxt is S.DONE:
            del self._chans[ch.chan]

    def _check_drained(self, ch: _Chan) -> None:
        if ch.state is S.CLOSED and ch.consumed == ch.final and ch.chan in self._chans:
            self._apply(ch, In.DRAINED, None)

    def _send_open(self, ch: _Chan, _: Any) -> None:
        self._queue(Open(ch.chan, ch.name))
        self._grant_initial(ch)

    def _accept(self, ch: _Chan, _: Any) -> None:
        self._events.append(ChannelOpened(ch.chan, ch.name))
        self._grant_initial(ch)

    def _grant_initial(self, ch: _Chan) -> None:
        if self.config.window > INITIAL_WINDOW:  # [CHN-30]
            ch.recv_limit = min(self.config.window, U64_MAX)
            self._queue(Credit(ch.chan, ch.recv_limit))

    def _send_data(self, ch: _Chan, arg: tuple[bytes, bool]) -> None:
        data, eom = arg
        view = memoryview(data)
        for start in range(0, len(data), MAX_DATA):
            piece = data if len(data) <= MAX_DATA else bytes(view[start : start + MAX_DATA])
            last = start + MAX_DATA >= len(data)
            self._queue(Data(ch.chan, ch.sent, piece, eom and last))
            ch.sent += len(piece)

    def _deliver(self, ch: _Chan, item: Data) -> None:
        end = item.offset + len(item.data)
        if ch.final is not None and end > ch.final:  # [CHN-23] check 1
            raise _Violation(ErrorCode.CHAN_FINAL_OFFSET)
        if end > ch.recv_limit:  # [CHN-23] check 2
            raise _Violation(ErrorCode.CHAN_FLOW_CONTROL)
        if item.offset > ch.received:  # [CHN-23] check 3
            raise _Violation(ErrorCode.CHAN_OFFSET_GAP)
        if end <= ch.received:
            return  # already delivered: a duplicate [CHN-24]
        data = item.data[ch.received - item.offset :]
        self._events.append(ChannelData(ch.chan, ch.received, data, item.end_of_message))
        ch.received = end

    def _consume(self, ch: _Chan, nbytes: int) -> None:
        ch.consumed += nbytes

    def _consume_grant(self, ch: _Chan, nbytes: int) -> None:
        ch.consumed += nbytes
        window = self.config.window
        limit = min(ch.consumed + window, U64_MAX)
        if limit >= ch.recv_limit + (window + 1) // 2:  # [CHN-29]
            ch.recv_limit = limit
            self._queue(Credit(ch.chan, limit))

    def _raise_limit(self, ch: _Chan, item: Credit) -> None:
        if item.limit > ch.send_limit:  # a lower or equal limit is old news [CHN-26]
            ch.send_limit = item.limit
            self._events.append(CreditGranted(ch.chan, ch.send_limit - ch.sent, ch.send_limit))

    def _announce(self, ch: _Chan, _: Any) -> None:
        self._queue(Credit(ch.chan, ch.recv_limit))

    def _send_close(self, ch: _Chan, _: Any) -> None:
        self._queue(Close(ch.chan, ch.sent))

    def _peer_close(self, ch: _Chan, item: Close) -> None:
        if item.final != ch.received:  # every byte before CLOSE arrived before it [CHN-34]
            raise _Violation(ErrorCode.CHAN_FINAL_OFFSET)
        ch.final = item.final
        self._events.append(ChannelHalfClosed(ch.chan, item.final))

    def _repeated_close(self, ch: _Chan, item: Close) -> None:  # [CHN-45]
        if item.final != ch.final:
            raise _Violation(ErrorCode.CHAN_FINAL_OFFSET)

    def _send_reset(self, ch: _Chan, code: int) -> None:
        self._queue(Reset(ch.chan, code))

    def _peer_reset(self, ch: _Chan, item: Reset) -> None:
        self._events.append(ChannelReset(ch.chan, item.code, True))

    def _fail(self, ch: _Chan, code: ErrorCode) -> None:
        self._queue(Reset(ch.chan, int(code)))
        self._events.append(ChannelReset(ch.chan, int(code), False))

    # ---------------------------------------------------------------- helpers

    def _queue(self, item: Item) -> None:
        self._out.append(encode_item(item))

    def _drain(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def _check_running(self) -> None:
        if self.failed is not None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                     f"channels failed ({self.failed.name})")

    def _live(self, chan: int) -> _Chan:
        ch = self._chans.get(chan) if type(chan) is int else None
        if ch is None:
            raise LocalProtocolError(ErrorCode.CHAN_UNKNOWN, f"no live channel {chan!r}")
        return ch


def _local_only(code: int) -> bool:
    """Codes that never leave the device [CHN-39]: this layer's local ones and p4-00 CNV-40's."""
    return 0x0507 <= code <= 0x050A or 0x0600 <= code <= 0x07FF


def _ignore(ch: _Chan, arg: Any) -> None:
    del ch, arg


def _uint(value: object) -> bool:
    return type(value) is int and 0 <= value <= U64_MAX

