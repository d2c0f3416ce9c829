"""The session machine: one per paired peer, living across generations (p4-04 §8–§11).

Theory of operation
-------------------
A *session* is two durable, sequenced streams, one per direction, that survive any number of
*connections*.  A connection is one transport the driver opened: the data channel of one
generation's RTCPeerConnection, or the kept-open onion stream (p4-03).  The driver calls
:meth:`SessionMachine.open` once the transport is up; the machine then runs the in-band
handshake on it (SES_HELLO both ways, then SES_AUTH both ways), which proves both identity keys
over both channel bindings (the DTLS fingerprints) and exchanges the stream positions.

Sequencing.  Every message gets the next sequence number of the sender's stream; the receiver
accepts only the next one it expects, drops anything lower as a duplicate and fails the
connection on anything higher (SES_SEQ_GAP).  Each connection is ordered and the sender starts
every connection at or below the receiver's position (the position the receiver announced in
the handshake, or the last ACK), then sends contiguously, so no sequence number can arrive above
the next expected one: any interleaving of frames from two connections, old or new, is delivered
exactly once and in order [SES-26, SES-27].

Make-before-break.  Traffic stays on the active connection until a newer data channel finishes
its handshake; then the sender sends SES_END on the old one and resumes on the new one from the
peer's announced position.  Late frames of the old one are still accepted (or dropped as
duplicates) until the peer's SES_END arrives [SES-34].

Durability is the driver's, under two rules the machine relies on: :meth:`send` is called only
once the message is durable in the outbox under :attr:`next_seq`, and :meth:`inbox_committed` only
once received messages are durable in the inbox; ACKs never cover more than that [SES-5, SES-6].

Per connection, received frames are classified into an :class:`Input` and looked up in
:data:`TRANSITIONS` ``{(ConnState, Input): (next ConnState, action)}``.  **Anything absent is an
error**: a received frame fails that connection with UNEXPECTED_MESSAGE (ERROR frame, then
:class:`ConnectionFailed`); a command refused in the current state raises
:class:`LocalProtocolError` and changes nothing.  A failed connection never fails the session.

Sans-I/O: ``now`` is milliseconds from any monotonic clock; randomness comes from ``rng(n)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from nacl.signing import SigningKey

from .._table import transition_markdown
from ..errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ..framing import (
    HEADER_LEN,
    Frame,
    FrameReader,
    FrameType,
    Path,
    decode_frame,
    encode_frame,
    error_body,
    parse_error_body,
    ping_body,
)
from . import _codec as codec
from ._events import (
    Acked,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpen,
    Event,
    MessageReceived,
    ReconnectNeeded,
    SessionReset,
    SignalReceived,
    Status,
)

__all__ = [
    "ACK_DELAY_MS",
    "ACK_EVERY",
    "DRAIN_TIMEOUT_MS",
    "HANDSHAKE_TIMEOUT_MS",
    "PONG_TIMEOUT_MS",
    "PROBE_BUSY_MS",
    "PROBE_IDLE_MS",
    "TRANSITIONS",
    "ConnState",
    "Input",
    "SessionConfig",
    "SessionMachine",
    "SessionState",
    "transition_table_markdown",
    "transition_table_mermaid",
]

Rng = Callable[[int], bytes]

#: Timers (§8.6, §11) in milliseconds.
HANDSHAKE_TIMEOUT_MS = 10_000
DRAIN_TIMEOUT_MS = 10_000
PROBE_BUSY_MS = 2_000
PROBE_IDLE_MS = 30_000  # the LOW peer; the HIGH peer waits 1.5 times as long [SES-43]
PONG_TIMEOUT_MS = 7_000
PROBE_REQUEST_MS = 10_000
ACK_DELAY_MS = 20
ACK_EVERY = 16
MAX_RETIRED = 8
#: Closed or failed connections kept for inspection; older ones are forgotten.
MAX_TERMINAL = 8


class ConnState(StrEnum):
    HELLO_SENT = "HELLO_SENT"
    AUTH_SENT = "AUTH_SENT"
    OPEN = "OPEN"
    END_SENT = "END_SENT"
    END_RECEIVED = "END_RECEIVED"
    CLOSED = "CLOSED"
    FAILED = "FAILED"


class Input(StrEnum):
    RECV_HELLO = "recv SES_HELLO"
    RECV_AUTH = "recv SES_AUTH"
    RECV_MSG = "recv SES_MSG"
    RECV_ACK = "recv SES_ACK"
    RECV_END = "recv SES_END"
    RECV_SIGNAL = "recv SES_SIGNAL"
    RECV_PING = "recv PING"
    RECV_PONG = "recv PONG"
    RECV_PADDING = "recv PADDING"
    RECV_ERROR = "recv ERROR"
    RECV_EOF = "transport closed"
    END = "switch away (local)"
    TIMEOUT = "timer expired"


_HANDSHAKING = (ConnState.HELLO_SENT, ConnState.AUTH_SENT)
_SENDING = (ConnState.OPEN, ConnState.END_RECEIVED)  # we may still send sequenced frames
_OPENED = (ConnState.OPEN, ConnState.END_SENT, ConnState.END_RECEIVED)  # handshake done
_LIVE = (*_HANDSHAKING, ConnState.OPEN, ConnState.END_SENT, ConnState.END_RECEIVED)
TERMINAL = frozenset({ConnState.CLOSED, ConnState.FAILED})

TRANSITIONS: dict[tuple[ConnState, Input], tuple[ConnState, str]] = {
    (ConnState.HELLO_SENT, Input.RECV_HELLO): (ConnState.AUTH_SENT, "hello"),
    (ConnState.AUTH_SENT, Input.RECV_AUTH): (ConnState.OPEN, "auth"),
    (ConnState.HELLO_SENT, Input.TIMEOUT): (ConnState.FAILED, "timeout"),
    (ConnState.AUTH_SENT, Input.TIMEOUT): (ConnState.FAILED, "timeout"),
    (ConnState.OPEN, Input.RECV_MSG): (ConnState.OPEN, "deliver"),
    (ConnState.END_SENT, Input.RECV_MSG): (ConnState.END_SENT, "deliver"),
    (ConnState.OPEN, Input.RECV_ACK): (ConnState.OPEN, "ack"),
    (ConnState.END_SENT, Input.RECV_ACK): (ConnState.END_SENT, "ack"),
    (ConnState.OPEN, Input.RECV_SIGNAL): (ConnState.OPEN, "signal"),
    (ConnState.END_SENT, Input.RECV_SIGNAL): (ConnState.END_SENT, "signal"),
    (ConnState.OPEN, Input.RECV_END): (ConnState.END_RECEIVED, "peer_end"),
    (ConnState.END_SENT, Input.RECV_END): (ConnState.CLOSED, "peer_end_close"),
    (ConnState.OPEN, Input.END): (ConnState.END_SENT, "send_end"),
    (ConnState.END_RECEIVED, Input.END): (ConnState.CLOSED, "send_end_close"),
    (ConnState.OPEN, Input.TIMEOUT): (ConnState.FAILED, "dead"),
    (ConnState.END_RECEIVED, Input.TIMEOUT): (ConnState.FAILED, "dead"),
    (ConnState.END_SENT, Input.TIMEOUT): (ConnState.CLOSED, "drained"),
}
for _s in _LIVE:
    TRANSITIONS[(_s, Input.RECV_PING)] = (_s, "pong")
    TRANSITIONS[(_s, Input.RECV_PONG)] = (_s, "pong_received")
    TRANSITIONS[(_s, Input.RECV_PADDING)] = (_s, "ignore")
    TRANSITIONS[(_s, Input.RECV_ERROR)] = (ConnState.FAILED, "error_received")
    TRANSITIONS[(_s, Input.RECV_EOF)] = (ConnState.CLOSED, "transport_closed")
del _s

_BASE_INPUT: dict[int, Input] = {
    FrameType.SES_HELLO: Input.RECV_HELLO,
    FrameType.SES_AUTH: Input.RECV_AUTH,
    FrameType.SES_MSG: Input.RECV_MSG,
    FrameType.SES_ACK: Input.RECV_ACK,
    FrameType.SES_END: Input.RECV_END,
    FrameType.SES_SIGNAL: Input.RECV_SIGNAL,
    FrameType.PING: Input.RECV_PING,
    FrameType.PONG: Input.RECV_PONG,
    FrameType.PADDING: Input.RECV_PADDING,
    FrameType.ERROR: Input.RECV_ERROR,
}


def transition_table_markdown() -> str:
    """The normative table of spec §11.2, generated from :data:`TRANSITIONS`."""
    return transition_markdown((state.value, inp.value, nxt.value, action)
                               for (state, inp), (nxt, action) in TRANSITIONS.items())


def transition_table_mermaid() -> str:
    """Informative diagram of spec §11.1, generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2", "    [*] --> HELLO_SENT: open"]
    seen: set[tuple[ConnState, ConnState]] = set()
    for (state, inp), (nxt, _) in TRANSITIONS.items():
        if state == nxt or inp in (Input.RECV_ERROR, Input.RECV_EOF):
            continue
        if (state, nxt) not in seen:
            seen.add((state, nxt))
            labels = [i.value for (s, i), (n, _) in TRANSITIONS.items() if s == state and n == nxt]
            lines.append(f"    {state.value} --> {nxt.value}: {' / '.join(labels)}")
    lines.append("    note right of FAILED: recv ERROR in any live state")
    lines.append("    note right of CLOSED: transport closed in any live state")
    return "\n".join(lines) + "\n"


@dataclass
class SessionState:
    """What the driver keeps durably per peer (p4-04 §9.5); a new machine resumes from it."""

    inc: bytes
    tx: int = 0
    acked: int = 0
    outbox: dict[int, bytes] = field(default_factory=dict)  # seq -> payload, acked < seq <= tx
    peer_inc: bytes = codec.NO_INC
    rx: int = 0  # highest seq of the peer's stream durable in the inbox
    retired: tuple[bytes, ...] = ()
    generation: int = 0


@dataclass(frozen=True, slots=True)
class SessionConfig:
    dc_window: int = 4 * 1024 * 1024  # unacknowledged payload bytes in flight on a data channel
    tor_window: int = 64 * 1024  # ... on the onion stream [SES-10]
    max_outbox: int = 100_000  # messages


@dataclass(eq=False)
class _Conn:
    cid: int
    generation: int
    path: Path
    binding_local: bytes
    binding_remote: bytes
    state: ConnState = ConnState.HELLO_SENT
    reader: FrameReader = field(default_factory=FrameReader)
    my_hello: codec.Hello | None = None
    my_hello_body: bytes = b""
    peer_hello: codec.Hello | None = None
    peer_hello_body: bytes = b""
    peer_rx: int = 0  # the peer's announced position in our stream (adjusted, §9)
    peer_acked: int = 0  # the ACK of its stream the peer announced it had received
    deadline: int | None = None  # handshake or drain timer
    last_rx_at: int = 0
    ping: tuple[bytes, int] | None = None  # outstanding PING nonce, sent at
    rtt: int | None = None  # ms from the last answered PING to its PONG (informative)
    last_sent: int = 0  # highest seq sent on this connection


class SessionMachine:
    """One paired peer's session, sans-I/O (see the module docstring)."""

    def __init__(
        self,
        identity_seed: bytes,
        peer_pub: bytes,
        *,
        rng: Rng,
        state: SessionState | None = None,
        config: SessionConfig | None = None,
    ) -> None:
        if len(identity_seed) != 32 or len(peer_pub) != 32:
            raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "keys are 32 bytes")
        self._key = SigningKey(bytes(identity_seed))
        self.my_pub = bytes(self._key.verify_key)
        self.peer_pub = bytes(peer_pub)
        if self.my_pub == self.peer_pub:
            raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "peer key equals ours")
        self.is_low = self.my_pub < self.peer_pub
        # idle: the LOW peer probes; the HIGH peer's PINGs only start if LOW's stop [SES-43]
        self._idle_ms = PROBE_IDLE_MS if self.is_low else PROBE_IDLE_MS * 3 // 2
        self._rng = rng
        self.config = config or SessionConfig()
        if state is None:
            state = SessionState(inc=self._draw_inc())
        self.s = replace(state, outbox=dict(sorted(state.outbox.items())))  # never alias
        self.rx_next = self.s.rx + 1  # next seq expected from the peer
        self._ack_sent = self.s.rx  # highest ACK we sent
        self._ack_deadline: int | None = None
        self._conns: dict[int, _Conn] = {}
        self.active: int | None = None
        self._next_send = self.s.acked + 1
        self._inflight = 0
        self._events: list[Event] = []
        self._out: list[tuple[int, Frame]] = []
        self._reconnecting = False
        self._probe_until = -1
        self.status = "offline"

    # ------------------------------------------------------------------ public API

    @property
    def next_seq(self) -> int:
        """The sequence number the next :meth:`send` gets (write it with the message first)."""
        return self.s.tx + 1

    def conn_state(self, conn: int) -> ConnState:
        return self._conns[conn].state

    def rtt_ms(self, conn: int) -> int | None:
        """Milliseconds from connection ``conn``'s last answered PING to its PONG (p4-04 §10),
        None before one was answered or for an unknown connection.  Informative only: the
        liveness rules never use it."""
        c = self._conns.get(conn)
        return None if c is None else c.rtt

    def state_string(self) -> str:
        """The ``state`` of a ``machine.step`` answer (§13): status, then ``conn:STATE``."""
        conns = " ".join(f"{k}:{c.state.value}" for k, c in sorted(self._conns.items()))
        return f"{self.status} {conns}".rstrip()

    def persistent_state(self) -> SessionState:
        """What storage holds right now if the driver followed the durability rules [SES-7]."""
        return replace(self.s, outbox=dict(self.s.outbox))

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def frames_to_send(self) -> list[tuple[int, Frame]]:
        out, self._out = self._out, []
        return out

    def data_to_send(self) -> list[tuple[int, bytes]]:
        """``(conn, frame bytes)`` in order; on a data channel each item is one message.

        Afterwards all but the newest ``MAX_TERMINAL`` closed or failed connections are
        forgotten: the driver must not feed bytes of a connection after its CONNECTION_CLOSED
        or CONNECTION_FAILED (they would be discarded anyway)."""
        frames = self.frames_to_send()
        out = [(c, encode_frame(f, self._conns[c].path)) for c, f in frames] if frames else []
        if len(self._conns) > MAX_TERMINAL:  # else none can be forgotten
            done = [k for k, c in self._conns.items() if c.state in TERMINAL]
            for k in done[:-MAX_TERMINAL] if len(done) > MAX_TERMINAL else ():
                del self._conns[k]
        return out

    def open(self, conn: int, generation: int, path: Path | str,
             binding_local: bytes, binding_remote: bytes, now: int) -> None:
        """A transport is up: start the handshake on it (sends SES_HELLO) [SES-3]."""
        path = Path(path)
        if conn in self._conns:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, f"connection {conn} exists")
        if len(binding_local) != codec.BINDING_LEN or len(binding_remote) != codec.BINDING_LEN:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "bindings are 32 bytes")
        if path is Path.DATACHANNEL and generation <= self.s.generation:
            raise LocalProtocolError(ErrorCode.SES_WRONG_GENERATION,
                                     f"generation {generation} <= {self.s.generation}")
        if path is Path.TOR and generation != 0:
            raise LocalProtocolError(ErrorCode.SES_WRONG_GENERATION, "tor connections use 0")
        c = _Conn(conn, generation, path, bytes(binding_local), bytes(binding_remote),
                  reader=FrameReader(path), last_rx_at=now)
        hello = codec.Hello(
            nonce=self._draw(codec.NONCE_LEN), generation=generation,
            binding_sender=c.binding_local, binding_receiver=c.binding_remote,
            sender_pub=self.my_pub, recipient_pub=self.peer_pub, inc=self.s.inc,
            peer_inc=self.s.peer_inc, rx=self.rx_next - 1, acked=self.s.acked, tx=self.s.tx,
        )
        frame = codec.encode_hello(hello)
        if path is Path.DATACHANNEL:
            self.s.generation = generation
        c.my_hello, c.my_hello_body = hello, frame.body
        c.deadline = now + HANDSHAKE_TIMEOUT_MS
        self._conns[conn] = c
        self._out.append((conn, frame))
        self._update_status()

    def send(self, payload: bytes, now: int) -> int:
        """Queue a message that is already durable under :attr:`next_seq`; returns its seq."""
        if len(payload) > codec.MAX_PAYLOAD:
            raise LocalProtocolError(ErrorCode.FRAME_TOO_LARGE, f"{len(payload)} bytes")
        if len(self.s.outbox) >= self.config.max_outbox:
            raise LocalProtocolError(ErrorCode.SES_OUTBOX_FULL, "outbox quota reached")
        self.s.tx += 1
        self.s.outbox[self.s.tx] = bytes(payload)
        self._pump(now)
        return self.s.tx

    def inbox_committed(self, through: int, now: int) -> None:
        """Messages up to ``through`` are durable in the inbox: they may be acknowledged."""
        if not self.s.rx <= through < self.rx_next:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                     f"commit {through} outside {self.s.rx}..{self.rx_next - 1}")
        self.s.rx = through
        if self.s.rx - self._ack_sent >= ACK_EVERY:
            self._send_ack()
        elif self.s.rx > self._ack_sent and self._ack_deadline is None:
            self._ack_deadline = now + ACK_DELAY_MS

    def send_signal(self, frame: bytes, now: int) -> None:
        """Carry an RV_OFFER / RV_ANSWER on the active data channel [SES-12]."""
        c = self._conns.get(self.active) if self.active is not None else None
        if c is None or c.path is not Path.DATACHANNEL:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "no active data channel")
        self._out.append((c.cid, codec.encode_signal(frame)))

    def probe(self, now: int) -> None:
        """The application asks whether the path is alive: PING now, verdict within 7 s."""
        self._probe_until = now + PROBE_REQUEST_MS
        c = self._active_conn()
        if c is not None and c.ping is None:
            self._send_ping(c, now)

    def network_changed(self, now: int) -> None:
        """The OS reported a network change: a new generation at once [SES-49]."""
        self._want_reconnect("network")
        self.probe(now)

    def give_up(self, now: int) -> None:
        """The driver stopped trying for now (no signalling path, long backoff): the status is
        ``offline`` until a connection is opened again (§11.3)."""
        self._reconnecting = False
        self._update_status()

    def get_timer(self) -> int | None:
        best = self._ack_deadline  # (a plain loop: the driver asks after every step)
        for c in self._conns.values():
            d = self._conn_deadline(c)
            if d is not None and (best is None or d < best):
                best = d
        return best

    def handle_timer(self, now: int) -> None:
        """Fire every timer whose deadline is ``<= now``, in deadline order."""
        while True:
            due: list[tuple[int, int]] = []
            if self._ack_deadline is not None and self._ack_deadline <= now:
                due.append((self._ack_deadline, -1))
            for c in self._conns.values():
                d = self._conn_deadline(c)
                if d is not None and d <= now:
                    due.append((d, c.cid))
            if not due:
                return
            _, cid = min(due)
            if cid == -1:
                self._ack_deadline = None
                self._send_ack()
            else:
                self._conn_timer(self._conns[cid], now)

    def receive_data(self, conn: int, data: bytes, now: int) -> None:
        """Bytes received on ``conn`` (any split); ``b""`` means the transport closed."""
        c = self._conns.get(conn)
        if c is None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, f"no connection {conn}")
        if c.state in TERMINAL:
            return
        if not data:
            if c.reader.pending:  # the stream ended inside a frame (p4-01 FRM-36)
                self._fail(c, ErrorCode.FRAME_TRUNCATED, "stream ended inside a frame", now,
                           send=False)
                return
            self._input(c, Input.RECV_EOF, None, now)
            return
        head: int | None = None
        try:
            view = bytes(data)
            if (not c.reader.pending and len(view) >= HEADER_LEN
                    and len(view) == HEADER_LEN + int.from_bytes(view[3:5], "big")):
                # exactly one frame (a data-channel message): decoded in place, with the
                # reader's checks (p4-01 §5) and its discarding of ignorable frames
                head = view[1]
                one = decode_frame(view, c.reader.path)
                if not one.ignorable:
                    self._receive_frame(c, one, now)
                return
            for i in range(0, len(view), 16384):
                c.reader.feed(view[i:i + 16384])
                while c.state not in TERMINAL:
                    head = c.reader.head_type
                    frame = c.reader.next_frame()
                    if frame is None:
                        break
                    self._receive_frame(c, frame, now)
        except DecodeError as exc:
            self._fail(c, exc.code, str(exc), now, send=head != FrameType.ERROR)

    # ------------------------------------------------------------------ internals

    def _draw(self, n: int) -> bytes:
        b = bytes(self._rng(n))
        if len(b) != n:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "rng returned the wrong length")
        return b

    def _draw_inc(self) -> bytes:
        """A fresh incarnation; never the all-zero "none" value [SES-18]."""
        while (inc := self._draw(codec.INC_LEN)) == codec.NO_INC:
            pass
        return inc

    def _active_conn(self) -> _Conn | None:
        return self._conns.get(self.active) if self.active is not None else None

    def _receive_frame(self, c: _Conn, frame: Frame, now: int) -> None:
        inp = _BASE_INPUT.get(frame.type)
        try:
            if inp is None or (c.state, inp) not in TRANSITIONS:
                name = FrameType(frame.type).name
                raise RemoteProtocolError(ErrorCode.UNEXPECTED_MESSAGE, f"{name} in {c.state}")
            self._input(c, inp, frame, now)
        except RemoteProtocolError as exc:
            self._fail(c, exc.code, exc.message, now)

    def _input(self, c: _Conn, inp: Input, arg: Frame | None, now: int) -> None:
        nxt, action = TRANSITIONS[(c.state, inp)]
        if inp not in (Input.RECV_PONG, Input.RECV_EOF, Input.END, Input.TIMEOUT):
            c.last_rx_at = now  # any valid frame but an unmatched PONG shows the path lives
            c.ping = None
        getattr(self, "_a_" + action)(c, arg, now)
        if c.state not in TERMINAL:
            c.state = nxt
        self._after(c, now)

    def _after(self, c: _Conn, now: int) -> None:
        """Path bookkeeping after a connection changed state."""
        if c.state in TERMINAL:
            c.deadline = None
            if self.active == c.cid:
                self.active = None
                self._failover(now)
        self._update_status()

    def _fail(self, c: _Conn, code: int, reason: str, now: int, *, send: bool = True,
              by_peer: bool = False) -> None:
        if send:
            self._out.append((c.cid, Frame(FrameType.ERROR, 0, error_body(code, reason))))
        self._events.append(ConnectionFailed(c.cid, int(code), by_peer))
        c.state = ConnState.FAILED
        self._after(c, now)

    def _update_status(self) -> None:
        if self.active is not None:
            status = "connected"
            self._reconnecting = False
        elif self._reconnecting or any(c.state in _HANDSHAKING for c in self._conns.values()):
            status = "reconnecting"
        else:
            status = "offline"
        if status != self.status:
            self.status = status
            self._events.append(Status(status))

    def _want_reconnect(self, cause: str) -> None:
        self._reconnecting = True
        self._events.append(ReconnectNeeded(cause))
        self._update_status()

    # --- paths -------------------------------------------------------------------------

    @staticmethod
    def _rank(c: _Conn) -> tuple[int, int]:
        """Preference among open connections: data channels, newest generation first."""
        return (1 if c.path is Path.DATACHANNEL else 0, c.generation)

    def _activate(self, c: _Conn, now: int) -> None:
        """Move our sending to ``c``, from the peer's position in our stream [SES-31]."""
        self.active = c.cid
        self._next_send = max(self.s.acked, c.peer_rx) + 1
        self._inflight = sum(len(p) for s, p in self.s.outbox.items() if s < self._next_send)
        if self.s.rx > min(self._ack_sent, c.peer_acked):
            self._ack_sent = min(self._ack_sent, c.peer_acked)  # an ACK lost with a dead path
            self._send_ack()
        self._pump(now)

    def _failover(self, now: int) -> None:
        """The active connection is gone: fall back to the best open one, else reconnect."""
        candidates = [c for c in self._conns.values() if c.state is ConnState.OPEN]
        if candidates:
            self._activate(max(candidates, key=self._rank), now)
        if not candidates:
            self._want_reconnect("dead")
        elif self._conns[self.active or 0].path is Path.TOR:
            self._want_reconnect("no_direct")

    def _pump(self, now: int) -> None:
        """Send what the window allows on the active connection."""
        c = self._active_conn()
        if c is None or c.state not in _SENDING:
            return
        window = self.config.tor_window if c.path is Path.TOR else self.config.dc_window
        while self._next_send <= self.s.tx:
            payload = self.s.outbox[self._next_send]
            if self._inflight and self._inflight + len(payload) > window:
                break
            self._out.append((c.cid, codec.encode_msg(self._next_send, payload)))
            self._inflight += len(payload)
            c.last_sent = self._next_send
            self._next_send += 1
        if self._busy(now) and c.ping is None and now - c.last_rx_at >= PROBE_BUSY_MS:
            self._send_ping(c, now)

    def _send_ack(self) -> None:
        c = self._active_conn()
        self._ack_deadline = None
        if c is None or c.state not in _SENDING or self.s.rx <= self._ack_sent:
            return
        self._out.append((c.cid, codec.encode_ack(self.s.rx)))
        self._ack_sent = self.s.rx

    # --- liveness ------------------------------------------------------------------------

    def _busy(self, now: int) -> bool:
        return self.s.acked < self.s.tx or now < self._probe_until

    def _conn_deadline(self, c: _Conn) -> int | None:
        if c.state in TERMINAL:
            return None
        if c.state in _HANDSHAKING or c.state is ConnState.END_SENT:
            return c.deadline
        if c.ping is not None:
            return c.ping[1] + PONG_TIMEOUT_MS
        busy = c.cid == self.active and (self.s.acked < self.s.tx or self._probe_until >= 0)
        return c.last_rx_at + (PROBE_BUSY_MS if busy else self._idle_ms)

    def _conn_timer(self, c: _Conn, now: int) -> None:
        if c.state in _HANDSHAKING or c.state is ConnState.END_SENT or c.ping is not None:
            self._input(c, Input.TIMEOUT, None, now)
        elif c.cid == self.active and self._probe_until >= 0 and not self._busy(now) \
                and now - c.last_rx_at < self._idle_ms:
            self._probe_until = -1  # the request expired: back to the idle interval
        else:
            self._send_ping(c, now)

    def _send_ping(self, c: _Conn, now: int) -> None:
        nonce = self._draw(8)
        c.ping = (nonce, now)
        self._out.append((c.cid, Frame(FrameType.PING, 0, ping_body(nonce))))

    # --- actions (one per TRANSITIONS entry) --------------------------------------------

    def _a_hello(self, c: _Conn, frame: Frame, now: int) -> None:
        h = codec.decode_hello(frame)
        if h.sender_pub != self.peer_pub or h.recipient_pub != self.my_pub:
            raise RemoteProtocolError(ErrorCode.SES_WRONG_PEER, "HELLO names other keys")
        if h.generation != c.generation:
            raise RemoteProtocolError(ErrorCode.SES_WRONG_GENERATION,
                                      f"HELLO for generation {h.generation}, not {c.generation}")
        if h.binding_sender != c.binding_remote or h.binding_receiver != c.binding_local:
            raise RemoteProtocolError(ErrorCode.SES_BINDING_MISMATCH, "channel bindings differ")
        c.peer_hello, c.peer_hello_body = h, frame.body
        low, high = self._ordered(c.my_hello_body, c.peer_hello_body)
        sig = codec.sign_auth(self._key, *self._pubs(), low, high)
        self._out.append((c.cid, codec.encode_auth(sig)))

    def _ordered(self, mine: bytes, theirs: bytes) -> tuple[bytes, bytes]:
        return (mine, theirs) if self.is_low else (theirs, mine)

    def _pubs(self) -> tuple[bytes, bytes]:
        return (self.my_pub, self.peer_pub) if self.is_low else (self.peer_pub, self.my_pub)

    def _a_auth(self, c: _Conn, frame: Frame, now: int) -> None:
        sig = codec.decode_auth(frame)
        low, high = self._ordered(c.my_hello_body, c.peer_hello_body)
        codec.verify_auth(sig, self.peer_pub, *self._pubs(), low, high)
        assert c.my_hello is not None and c.peer_hello is not None
        self._resume(c, c.my_hello, c.peer_hello, now)
        if c.state in TERMINAL:
            return
        c.deadline = None
        c.state = ConnState.OPEN
        best = self._active_conn()
        activate = best is None or self._rank(c) > self._rank(best)
        self._events.append(ConnectionOpen(c.cid, c.generation, activate))
        if activate:
            old = best
            self._activate(c, now)
            if old is not None and old.path is Path.DATACHANNEL and old.state in _SENDING:
                self._input(old, Input.END, None, now)  # make-before-break [SES-32]
            if c.path is Path.TOR:
                self._want_reconnect("no_direct")  # the onion stream is a fallback [SES-10]

    def _resume(self, c: _Conn, m: codec.Hello, h: codec.Hello, now: int) -> None:
        """Incarnation and position rules of §9, from the peer's HELLO and our *current*
        counters (revision 4): we judge only our own staleness.  Everything ``h`` says about us
        was caused by frames we sent before it was built, and ``tx`` / ``rx`` only grow within
        an incarnation, so ``h.rx > tx`` or ``h.acked > rx`` is impossible for a peer that was
        not restored, however far either side got on another connection since the HELLOs."""
        if h.inc in self.s.retired:
            raise RemoteProtocolError(ErrorCode.SES_INCARNATION_CONFLICT, "a retired incarnation")
        me_stale = (h.peer_inc == self.s.inc and h.rx > self.s.tx) or (
            h.inc == self.s.peer_inc and h.acked > self.rx_next - 1)
        if me_stale:
            self._fail(c, ErrorCode.SES_INCARNATION_STALE, "our counters went backwards", now)
            self._reincarnate(h)
            return
        if h.inc != self.s.peer_inc:
            if self.s.peer_inc != codec.NO_INC:
                self._retire(self.s.peer_inc)
                lost_out = (1, self.s.acked) if h.peer_inc != self.s.inc and self.s.acked else None
                self._events.append(SessionReset("peer_new", None, lost_out, 0))
            self.s.peer_inc = h.inc
            self.s.rx = self._ack_sent = h.acked
            self.rx_next = h.acked + 1
        c.peer_rx = h.rx if h.peer_inc == self.s.inc else self.s.acked
        c.peer_acked = h.acked

    def _retire(self, inc: bytes) -> None:
        if inc != codec.NO_INC and inc not in self.s.retired:
            self.s.retired = (*self.s.retired, inc)[-MAX_RETIRED:]

    def _reincarnate(self, h: codec.Hello) -> None:
        """This side's counters went backwards (a restored backup or a copied profile): start a
        new outbound stream under a fresh incarnation and skip what the peer has dropped."""
        lost_in = None
        if self.s.peer_inc == h.inc and self.rx_next - 1 < h.acked:
            lost_in = (self.rx_next, h.acked)
            self.s.rx = self._ack_sent = h.acked
            self.rx_next = h.acked + 1
        pending = list(self.s.outbox.values())
        self.s.inc = self._draw_inc()
        self.s.outbox = {i + 1: p for i, p in enumerate(pending)}
        self.s.tx, self.s.acked = len(pending), 0
        self._next_send, self._inflight = 1, 0
        self._events.append(SessionReset("restored", lost_in, None, len(pending)))

    def _a_timeout(self, c: _Conn, _: None, now: int) -> None:
        self._fail(c, ErrorCode.TIMEOUT, "handshake timed out", now)

    def _a_dead(self, c: _Conn, _: None, now: int) -> None:
        self._fail(c, ErrorCode.TIMEOUT, "no answer to PING", now)

    def _a_drained(self, c: _Conn, _: None, now: int) -> None:
        self._events.append(ConnectionClosed(c.cid))

    def _a_deliver(self, c: _Conn, frame: Frame, now: int) -> None:
        seq, payload = codec.decode_msg(frame)
        if seq > self.rx_next:
            raise RemoteProtocolError(ErrorCode.SES_SEQ_GAP, f"seq {seq}, expected {self.rx_next}")
        if seq == self.rx_next:
            self.rx_next += 1
            self._events.append(MessageReceived(seq, payload, self.s.peer_inc))
        # seq < rx_next: a duplicate, dropped [SES-26]

    def _a_ack(self, c: _Conn, frame: Frame, now: int) -> None:
        ack = codec.decode_ack(frame)
        if ack > self.s.tx:
            raise RemoteProtocolError(ErrorCode.SES_ACK_INVALID, f"ACK {ack} > {self.s.tx}")
        if ack <= self.s.acked:
            return  # stale or repeated: cumulative
        for seq in range(self.s.acked + 1, ack + 1):
            payload = self.s.outbox.pop(seq)
            if seq < self._next_send:
                self._inflight -= len(payload)
        self.s.acked = ack
        self._next_send = max(self._next_send, ack + 1)
        self._events.append(Acked(ack))
        self._pump(now)

    def _a_signal(self, c: _Conn, frame: Frame, now: int) -> None:
        if c.path is not Path.DATACHANNEL:
            raise RemoteProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "SES_SIGNAL on tor")
        self._events.append(SignalReceived(c.cid, codec.decode_signal(frame)))

    def _check_end(self, frame: Frame) -> None:
        last = codec.decode_end(frame)
        if last >= self.rx_next:
            raise RemoteProtocolError(ErrorCode.SES_SEQ_GAP, f"END after {last} not received")

    def _a_peer_end(self, c: _Conn, frame: Frame, now: int) -> None:
        self._check_end(frame)

    def _a_peer_end_close(self, c: _Conn, frame: Frame, now: int) -> None:
        self._check_end(frame)
        self._events.append(ConnectionClosed(c.cid))

    def _a_send_end(self, c: _Conn, _: None, now: int) -> None:
        self._out.append((c.cid, codec.encode_end(c.last_sent)))
        c.deadline = now + DRAIN_TIMEOUT_MS

    def _a_send_end_close(self, c: _Conn, _: None, now: int) -> None:
        self._out.append((c.cid, codec.encode_end(c.last_sent)))
        self._events.append(ConnectionClosed(c.cid))

    def _a_pong(self, c: _Conn, frame: Frame, now: int) -> None:
        self._out.append((c.cid, Frame(FrameType.PONG, 0, frame.body)))

    def _a_pong_received(self, c: _Conn, frame: Frame, now: int) -> None:
        if c.ping is not None and frame.body == ping_body(c.ping[0]):
            c.rtt = now - c.ping[1]
            c.ping = None
            c.last_rx_at = now
        # an unmatched PONG proves nothing and is ignored (p4-01 FRM-47)

    def _a_ignore(self, c: _Conn, frame: Frame, now: int) -> None:
        pass

    def _a_error_received(self, c: _Conn, frame: Frame, now: int) -> None:
        code, _ = parse_error_body(frame.body)
        self._events.append(ConnectionFailed(c.cid, code, by_peer=True))
        h = c.peer_hello
        if (code == ErrorCode.SES_INCARNATION_STALE and c.state in _OPENED and h is not None
                and h.inc == self.s.peer_inc and h.inc not in self.s.retired):
            # the peer found itself stale on this connection (§9 rule 2): retire the
            # incarnation it had; its next HELLO brings the new one (rule 3) [SES-66]
            c.state = ConnState.FAILED
            self._after(c, now)
            acked = self.s.acked
            lost = (h.rx + 1, acked) if h.peer_inc == self.s.inc and h.rx < acked else None
            self._retire(h.inc)
            self._events.append(SessionReset("peer_restored", None, lost, 0))

    def _a_transport_closed(self, c: _Conn, _: None, now: int) -> None:
        self._events.append(ConnectionClosed(c.cid))
