"""The rendezvous machine: one per onion stream between the two peers of a pair (p4-03 §9).

Theory of operation
-------------------
A stream is opened by one peer (the *dialer*) to the other's derived onion service (the
*acceptor*).  Three signed RV_HELLOs prove identity and liveness both ways [RDV-21]: the dialer's
HELLO carries a fresh nonce ``n1``; the acceptor answers with a HELLO of its own nonce ``n2``
echoing ``n1`` (state HELLO_ECHOED); the dialer checks the echo, answers with a third HELLO
echoing ``n2`` and is READY; the acceptor checks that echo and is READY.  A recorded dialer HELLO
replayed to a restarted acceptor therefore never reaches READY: the replayer cannot sign the echo
of the fresh ``n2``.  Every later message (OFFER, ANSWER, BYE) names the recipient's HELLO nonce
on this stream in ``stream_nonce`` [RDV-51], so a message recorded on another stream is refused
(RDV_REPLAY) even before the generation rule looks at it.

From READY, either peer may send an RV_OFFER for a new *generation* (one RTCPeerConnection per
generation, p4-04); the other answers with RV_ANSWER and both reach ANSWERED, which is the
hand-off to the session layer.  The stream stays open: a later OFFER for a higher generation
re-signals over the same circuit.  ``last_generation`` is the driver's persisted high-water mark
for the pair (:mod:`p4ref.io.replay_store`): an OFFER must exceed it even after a restart.

Glare: when both peers' OFFERs cross, the higher generation wins; for equal generations the
LOW peer (the leader) wins.  The winner ignores the losing OFFER and waits for its ANSWER; the
loser drops its own OFFER and answers (inputs ``RECV_OFFER_WINS`` / ``RECV_OFFER_LOSES``).

Every received frame is first classified into an :class:`Input` (the refined OFFER inputs need
the signature, epoch, replay and generation checks first), then looked up in :data:`TRANSITIONS`,
``{(State, Input): (next State, action name)}``.  **Anything absent from the table is an error**:
a received frame → ``UNEXPECTED_MESSAGE`` (the machine queues an ERROR frame, emits
:class:`RendezvousFailed` and enters ERROR); a local call → :class:`LocalProtocolError` and no
state change [RDV-42].  CLOSED and ERROR are terminal: received bytes are discarded [RDV-44].

Sans-I/O: ``now`` is Unix time in milliseconds (epochs are wall-clock days), randomness comes
from the injected ``rng(n) -> bytes``.  Every frame to send, whether a command produced it
(``start``, ``send_*``, which also return it for inspection) or the machine did (the HELLO
replies, PONG, ERROR), waits in one queue: write :meth:`data_to_send` after every call
(``p4ref.io.pump`` does).  ``receive_data`` takes any split of the stream (slices of 16 KiB keep
the reader bounded, bytes after a terminal frame are discarded); ``receive_data(b"")`` is end of
stream: FRAME_TRUNCATED if part of a frame is buffered [FRM-36], else PROTOCOL_VIOLATION [RDV-47].
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TypeVar

from nacl.signing import SigningKey

from .._table import transition_markdown
from ..errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ..framing import (
    Frame,
    FrameReader,
    FrameType,
    Path,
    decode_cbor_map,
    encode_frame,
    error_body,
    parse_error_body,
    ping_body,
)
from . import _codec as codec
from ._derive import Role, epoch_of, epochs_to_accept, role_of
from ._events import (
    AnswerReceived,
    Bye,
    Event,
    OfferReceived,
    PeerAuthenticated,
    PeerReset,
    RendezvousFailed,
)

__all__ = [
    "ANSWER_TIMEOUT_MS",
    "BACKOFF_INITIAL_MS",
    "BACKOFF_MAX_MS",
    "FOLLOWER_DELAY_MS",
    "HELLO_TIMEOUT_MS",
    "TRANSITIONS",
    "DialScheduler",
    "Input",
    "NonceCache",
    "RendezvousMachine",
    "Rng",
    "State",
    "transition_table_markdown",
]

Rng = Callable[[int], bytes]
_M = TypeVar("_M", codec.Offer, codec.Answer, codec.Bye)
_NO_NONCE = bytes(codec.NONCE_LEN)
_U64_MAX = (1 << 64) - 1
#: ``receive_data`` feeds the reader at most this much at a time, draining it in between, so
#: any split of any input is accepted with a bounded buffer (issue 8 §2) [RDV-53].
_CHUNK = 16384

#: Timers (§9.3) [RDV-48].
HELLO_TIMEOUT_MS = 30_000
ANSWER_TIMEOUT_MS = 30_000
#: Who dials (§8.6) [RDV-37], [RDV-38].
FOLLOWER_DELAY_MS = 10_000
BACKOFF_INITIAL_MS = 1_000
BACKOFF_FACTOR = 2
BACKOFF_MAX_MS = 60_000
#: Replay cache bound per epoch [RDV-27].
NONCE_CACHE_PER_EPOCH = 4096


class State(StrEnum):
    IDLE = "IDLE"  # dialer, before start()
    LISTENING = "LISTENING"  # acceptor, waiting for the dialer's HELLO
    HELLO_SENT = "HELLO_SENT"  # dialer, waiting for the acceptor's HELLO echoing its nonce
    HELLO_ECHOED = "HELLO_ECHOED"  # acceptor, waiting for the dialer's HELLO echoing its nonce
    READY = "READY"
    OFFER_SENT = "OFFER_SENT"
    OFFER_RECEIVED = "OFFER_RECEIVED"
    ANSWERED = "ANSWERED"  # generation agreed: hand-off to the session layer
    CLOSED = "CLOSED"
    ERROR = "ERROR"


TERMINAL = frozenset({State.CLOSED, State.ERROR})


class Input(StrEnum):
    # local calls
    START = "start"
    SEND_OFFER = "send_offer"
    SEND_ANSWER = "send_answer"
    SEND_BYE = "send_bye"
    TIMEOUT = "timeout"
    # received frames
    RECV_HELLO = "recv HELLO (no echo)"
    RECV_HELLO_REPLY = "recv HELLO (echo)"
    RECV_OFFER = "recv OFFER"
    RECV_OFFER_WINS = "recv OFFER (glare, theirs wins)"
    RECV_OFFER_LOSES = "recv OFFER (glare, ours wins)"
    RECV_ANSWER = "recv ANSWER"
    RECV_BYE = "recv BYE"
    RECV_ERROR = "recv ERROR"
    RECV_PING = "recv PING"
    RECV_IGNORED = "recv PONG/PADDING"
    RECV_OTHER = "recv any other type"
    RECV_EOF = "stream closed (EOF)"


LOCAL_INPUTS = frozenset(
    {Input.START, Input.SEND_OFFER, Input.SEND_ANSWER, Input.SEND_BYE, Input.TIMEOUT}
)
_LIVE = (
    State.IDLE,
    State.LISTENING,
    State.HELLO_SENT,
    State.HELLO_ECHOED,
    State.READY,
    State.OFFER_SENT,
    State.OFFER_RECEIVED,
    State.ANSWERED,
)
_AUTHENTICATED = (State.READY, State.OFFER_SENT, State.OFFER_RECEIVED, State.ANSWERED)

TRANSITIONS: dict[tuple[State, Input], tuple[State, str]] = {
    # HELLO exchange, three messages [RDV-21], [RDV-26]
    (State.IDLE, Input.START): (State.HELLO_SENT, "send_hello"),
    (State.LISTENING, Input.START): (State.LISTENING, "arm_hello_timer"),
    (State.LISTENING, Input.RECV_HELLO): (State.HELLO_ECHOED, "echo_hello"),
    (State.HELLO_SENT, Input.RECV_HELLO_REPLY): (State.READY, "confirm_hello"),
    (State.HELLO_ECHOED, Input.RECV_HELLO_REPLY): (State.READY, "hello_confirmed"),
    (State.LISTENING, Input.TIMEOUT): (State.ERROR, "timeout"),
    (State.HELLO_SENT, Input.TIMEOUT): (State.ERROR, "timeout"),
    (State.HELLO_ECHOED, Input.TIMEOUT): (State.ERROR, "timeout"),
    # OFFER / ANSWER [RDV-30]–[RDV-36]
    (State.READY, Input.SEND_OFFER): (State.OFFER_SENT, "send_offer"),
    (State.ANSWERED, Input.SEND_OFFER): (State.OFFER_SENT, "send_offer"),
    (State.READY, Input.RECV_OFFER): (State.OFFER_RECEIVED, "offer_received"),
    (State.ANSWERED, Input.RECV_OFFER): (State.OFFER_RECEIVED, "offer_received"),
    (State.OFFER_RECEIVED, Input.RECV_OFFER): (State.OFFER_RECEIVED, "offer_received"),
    (State.OFFER_SENT, Input.RECV_OFFER_WINS): (State.OFFER_RECEIVED, "offer_received"),
    (State.OFFER_SENT, Input.RECV_OFFER_LOSES): (State.OFFER_SENT, "drop_offer"),
    (State.OFFER_SENT, Input.RECV_ANSWER): (State.ANSWERED, "answer_received"),
    (State.OFFER_SENT, Input.TIMEOUT): (State.ERROR, "timeout"),
    (State.OFFER_RECEIVED, Input.SEND_ANSWER): (State.ANSWERED, "send_answer"),
}
for _s in _AUTHENTICATED:
    TRANSITIONS[(_s, Input.RECV_BYE)] = (State.CLOSED, "bye_received")  # [RDV-46]
    TRANSITIONS[(_s, Input.SEND_BYE)] = (State.CLOSED, "send_bye")  # [RDV-33]
for _s in _LIVE:
    TRANSITIONS[(_s, Input.RECV_ERROR)] = (State.ERROR, "error_received")  # [RDV-45]
    TRANSITIONS[(_s, Input.RECV_EOF)] = (State.ERROR, "stream_closed")
    TRANSITIONS[(_s, Input.RECV_PING)] = (_s, "pong")  # [RDV-41]
    TRANSITIONS[(_s, Input.RECV_IGNORED)] = (_s, "ignore")
del _s

_BASE_INPUT: dict[int, Input] = {
    FrameType.RV_HELLO: Input.RECV_HELLO,
    FrameType.RV_OFFER: Input.RECV_OFFER,
    FrameType.RV_ANSWER: Input.RECV_ANSWER,
    FrameType.RV_BYE: Input.RECV_BYE,
    FrameType.ERROR: Input.RECV_ERROR,
    FrameType.PING: Input.RECV_PING,
    FrameType.PONG: Input.RECV_IGNORED,
    FrameType.PADDING: Input.RECV_IGNORED,
}
# Inputs a received type may refine into; the state check uses the union [RDV-25].
_VARIANTS: dict[Input, tuple[Input, ...]] = {
    Input.RECV_HELLO: (Input.RECV_HELLO, Input.RECV_HELLO_REPLY),
    Input.RECV_OFFER: (Input.RECV_OFFER, Input.RECV_OFFER_WINS, Input.RECV_OFFER_LOSES),
}


def transition_table_markdown() -> str:
    """The normative table of spec §9.2, generated from :data:`TRANSITIONS`."""
    return transition_markdown((state.value, inp.value, nxt.value, action)
                               for (state, inp), (nxt, action) in TRANSITIONS.items())


def transition_table_mermaid() -> str:
    """Informative state diagram (spec §9.1), generated from :data:`TRANSITIONS`."""
    lines = ["stateDiagram-v2"]
    seen: set[tuple[State, State, str]] = set()
    for (state, inp), (nxt, _) in TRANSITIONS.items():
        if inp in (Input.RECV_PING, Input.RECV_IGNORED, Input.RECV_ERROR, Input.RECV_EOF):
            continue
        key = (state, nxt, inp.value)
        if key not in seen:
            seen.add(key)
            lines.append(f"    {state.value} --> {nxt.value}: {inp.value}")
    lines.append("    note right of ERROR: RECV_ERROR or EOF in any live state, or any absent")
    return "\n".join(lines) + "\n"


def check_received(
    msg: codec.Message, peer_pub: bytes, my_pub: bytes, now: int, nonces: NonceCache
) -> tuple[int, ...]:
    """Steps 3–6 of §8.1 for one decoded message: peer, epoch, signature, replay (the nonce is
    *not* recorded here).  Returns the accepted epoch window.  Shared by the machine and the
    ``rendezvous.verify`` vector op so both apply one order [RDV-25]."""
    if isinstance(msg, codec.Hello) and (msg.sender_pub != peer_pub or msg.recipient_pub != my_pub):
        raise RemoteProtocolError(ErrorCode.RDV_UNKNOWN_PEER, "HELLO names other keys")  # [RDV-26]
    window = epochs_to_accept(now // 1000)
    if msg.epoch not in window:
        raise RemoteProtocolError(ErrorCode.RDV_WRONG_EPOCH, f"epoch {msg.epoch}")  # [RDV-8]
    codec.verify_message(msg, peer_pub, my_pub)  # RDV_BAD_SIGNATURE [RDV-24]
    if nonces.seen(msg.epoch, msg.nonce):
        raise RemoteProtocolError(ErrorCode.RDV_REPLAY, "nonce already seen")  # [RDV-27]
    return window


class NonceCache:
    """Nonces of accepted peer messages, per epoch, bounded [RDV-27].

    Share one cache among all streams of a pair so a message cannot be replayed on a new
    stream.  Epochs outside the accepted window are dropped; within an epoch the oldest nonce is
    evicted once ``max_per_epoch`` is reached.  Each nonce keeps the SHA-256 of the accepted
    body, so an exact copy that raced on another path is recognised and dropped [RDV-69].
    """

    __slots__ = ("_by_epoch", "max_per_epoch")

    def __init__(self, max_per_epoch: int = NONCE_CACHE_PER_EPOCH) -> None:
        self.max_per_epoch = max_per_epoch
        self._by_epoch: dict[int, dict[bytes, bytes]] = {}

    def seen(self, epoch: int, nonce: bytes) -> bool:
        return nonce in self._by_epoch.get(epoch, {})

    def is_copy(self, epoch: int, nonce: bytes, digest: bytes) -> bool:
        """True when ``(epoch, nonce)`` was accepted with exactly this body digest [RDV-69]."""
        held = self._by_epoch.get(epoch, {}).get(nonce)
        return held is not None and held == digest

    def add(self, epoch: int, nonce: bytes, window: tuple[int, ...], digest: bytes = b"") -> None:
        for e in [e for e in self._by_epoch if e not in window]:
            del self._by_epoch[e]
        bucket = self._by_epoch.setdefault(epoch, {})
        bucket[nonce] = digest
        while len(bucket) > self.max_per_epoch:
            del bucket[next(iter(bucket))]

    def __len__(self) -> int:
        return sum(len(b) for b in self._by_epoch.values())


class _BrokenFrame(Exception):
    """A framing error, with the type byte of the frame that caused it (for CNV-36)."""

    def __init__(self, error: DecodeError, head: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.head = head


@dataclass(frozen=True, slots=True)
class _Pending:
    generation: int
    nonce: bytes
    base: int = 0  # the highest generation known before this OFFER was sent


class RendezvousMachine:
    """One rendezvous stream, sans-I/O (see the module docstring)."""

    def __init__(
        self,
        identity_seed: bytes,
        peer_pub: bytes,
        *,
        dialer: bool,
        rng: Rng,
        last_generation: int = 0,
        nonce_cache: NonceCache | None = None,
        incarnation: bytes = bytes(codec.INC_LEN),
        peer_incarnation: bytes | None = None,
        peer_generation: int = 0,
    ) -> None:
        for value in (incarnation, peer_incarnation):
            if value is not None and (not isinstance(value, bytes) or len(value) != codec.INC_LEN):
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "an incarnation is 16 bytes")
        if type(peer_generation) is not int or not 0 <= peer_generation <= _U64_MAX:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "peer_generation is a u64")
        if len(identity_seed) != 32:
            raise LocalProtocolError(ErrorCode.RDV_KEY_INVALID, "identity seed is 32 bytes")
        self._key = SigningKey(bytes(identity_seed))
        self.my_pub = bytes(self._key.verify_key)
        self.peer_pub = bytes(peer_pub)
        self.role: Role = role_of(self.my_pub, self.peer_pub)
        self.dialer = dialer
        self._rng = rng
        if type(last_generation) is not int or not 0 <= last_generation <= _U64_MAX:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "last_generation is a u64")
        #: ``G`` of §8.3: the highest generation configured (``last_generation``, the persisted
        #: high-water mark), offered or received; the driver persists it [RDV-52].
        self.generation = last_generation
        #: What this endpoint announces in its HELLOs [RDV-59]: its persisted mark, unchanged by
        #: the adoption of RDV-60, and its session incarnation.
        self.last_generation = last_generation
        self.incarnation = bytes(incarnation)
        #: What the driver stored about the peer (RDV-61): its incarnation, and the highest
        #: generation it announced or signed; ``None``/0 when nothing is stored.
        self.known_peer_incarnation = None if peer_incarnation is None else bytes(peer_incarnation)
        self.known_peer_generation = peer_generation
        self.nonces = nonce_cache if nonce_cache is not None else NonceCache()
        self.state = State.IDLE if dialer else State.LISTENING
        self._reader = FrameReader(Path.TOR)
        self._events: list[Event] = []
        self._out: list[Frame] = []
        self._deadline: int | None = None
        self._hello_nonce: bytes | None = None  # our HELLO nonce that the peer echoes
        self._peer_nonce = _NO_NONCE  # the peer's HELLO nonce we echoed: our stream_nonce
        self._pending: _Pending | None = None  # our OFFER awaiting an ANSWER
        self._received: codec.Offer | None = None  # the peer's OFFER we must answer
        self.peer_epoch: int | None = None

    # ----------------------------------------------------------------- public API

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LOW

    @property
    def hello_nonce(self) -> bytes | None:
        """This endpoint's HELLO nonce on the stream, once sent: the ``stream_nonce`` every
        OFFER, ANSWER and BYE from the peer must carry [RDV-51]."""
        return self._hello_nonce

    def next_event(self) -> Event | None:
        return self._events.pop(0) if self._events else None

    def frames_to_send(self) -> list[Frame]:
        """Every queued frame, in order (commands' frames, HELLO reply, PONG, ERROR); drains."""
        out, self._out = self._out, []
        return out

    def data_to_send(self) -> bytes:
        return b"".join(encode_frame(f, Path.TOR) for f in self.frames_to_send())

    def get_timer(self) -> int | None:
        return self._deadline

    def handle_timer(self, now: int) -> None:
        if self._deadline is not None and now >= self._deadline:
            self._deadline = None
            self._local(Input.TIMEOUT, now)

    def start(self, now: int) -> Frame | None:
        """Dialer: queues the RV_HELLO.  Acceptor: arms the HELLO timer (returns None)."""
        return self._local(Input.START, now)

    def send_offer(
        self, sdp: str, fingerprint: bytes, generation: int, last_rx: int, now: int
    ) -> Frame | None:
        """Queue an RV_OFFER for ``generation``, which must exceed every generation seen
        [RDV-32]."""
        return self._local(Input.SEND_OFFER, now, (sdp, bytes(fingerprint), generation, last_rx))

    def send_answer(self, sdp: str, fingerprint: bytes, last_rx: int, now: int) -> Frame | None:
        """Queue the RV_ANSWER to the OFFER reported by the last :class:`OfferReceived`."""
        return self._local(Input.SEND_ANSWER, now, (sdp, bytes(fingerprint), last_rx))

    def send_bye(self, reason: int, now: int) -> Frame | None:
        """Queue a signed RV_BYE; the machine is CLOSED afterwards [RDV-46]."""
        return self._local(Input.SEND_BYE, now, (int(reason),))

    def receive_data(self, data: bytes, now: int) -> None:
        """Bytes from the onion stream, any split [RDV-53]; ``b""`` means the stream ended."""
        if self.state in TERMINAL:
            return  # [RDV-44]
        if not data:
            if self._reader.pending:  # a partial frame: framing's error first [RDV-47], [FRM-36]
                self._fail(ErrorCode.FRAME_TRUNCATED, "stream ended inside a frame",
                           send=False, by_peer=True)
            else:
                self._input(Input.RECV_EOF, now, None)
            return
        view = memoryview(bytes(data))
        try:
            for i in range(0, len(view), _CHUNK):
                self._reader.feed(bytes(view[i : i + _CHUNK]))
                while (frame := self._next_frame()) is not None:
                    self.receive_frame(frame, now)
                    if self.state in TERMINAL:
                        return  # the rest of the input is discarded [RDV-44]
        except _BrokenFrame as exc:
            # a frame whose type byte says ERROR is never answered with an ERROR frame, whatever
            # check it failed (p4-00 CNV-36) [RDV-54]
            self._fail(exc.error.code, str(exc.error), send=exc.head != FrameType.ERROR)

    def _next_frame(self) -> Frame | None:
        try:
            return self._reader.next_frame()
        except DecodeError as exc:
            # the reader keeps the broken frame at the head of its buffer (p4-01 FRM-38)
            raise _BrokenFrame(exc, self._reader.head_type) from None

    def receive_frame(self, frame: Frame, now: int) -> None:
        """One frame from :class:`FrameReader` / ``decode_frame(…, Path.TOR)``."""
        if self.state in TERMINAL or frame.ignorable:
            return  # [RDV-44], p4-01 ignorable range
        try:
            self._receive(frame, now)
        except RemoteProtocolError as exc:
            self._fail(exc.code, exc.message)

    # ----------------------------------------------------------------- internals

    def _nonce(self) -> bytes:
        n = self._rng(codec.NONCE_LEN)
        if len(n) != codec.NONCE_LEN:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "rng returned the wrong length")
        return bytes(n)

    def _fresh(self, msg: _M) -> _M:
        """Validate ``msg`` (LocalProtocolError, nothing drawn), then give it a fresh nonce: a
        refused call consumes no randomness, so transcripts replay the same rng list."""
        codec.unsigned_body(msg)
        return replace(msg, nonce=self._nonce())

    def _sign(self, msg: codec.Message) -> Frame:
        return self._signed_frame(msg)

    def _signed_frame(self, msg: codec.Message) -> Frame:
        return codec.encode_message(codec.sign_message(msg, self._key, self.peer_pub))

    def _local(self, inp: Input, now: int, args: tuple[object, ...] = ()) -> Frame | None:
        entry = TRANSITIONS.get((self.state, inp))
        if entry is None:
            raise LocalProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"{inp.value} is not allowed in {self.state}"
            )
        nxt, action = entry
        out: Frame | None = getattr(self, "_a_" + action)(now, *args)
        if out is not None:
            self._out.append(out)
        if self.state not in TERMINAL:  # an action may have failed the machine
            self.state = nxt
        return out

    def _fail(self, code: int, reason: str, *, send: bool = True, by_peer: bool = False) -> None:
        """Queue ERROR first (unless the peer's own ERROR frame was the broken one, or the stream
        has ended), then enter ERROR [RDV-43]."""
        if send:
            self._out.append(Frame(FrameType.ERROR, 0, error_body(code, reason)))
        self._events.append(RendezvousFailed(int(code), by_peer=by_peer))
        self._deadline = None
        self.state = State.ERROR

    def _receive(self, frame: Frame, now: int) -> None:
        base = _BASE_INPUT.get(frame.type, Input.RECV_OTHER)
        msg: codec.Message | None = None
        digest = b""
        if base in (Input.RECV_HELLO, Input.RECV_OFFER, Input.RECV_ANSWER, Input.RECV_BYE):
            msg = codec.decode_message(frame)  # MESSAGE_INVALID [RDV-16]
            digest = hashlib.sha256(frame.body).digest()
            if isinstance(msg, codec.Offer | codec.Answer) and self.nonces.is_copy(
                msg.epoch, msg.nonce, digest
            ):
                return  # an exact copy that raced on another path: dropped silently [RDV-69]
        allowed = [v for v in _VARIANTS.get(base, (base,)) if (self.state, v) in TRANSITIONS]
        if not allowed:
            raise RemoteProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"{base.value} is not allowed in {self.state}"
            )
        inp = base
        if msg is not None:
            inp = self._check(msg, base, now, digest)
        self._input(inp, now, msg if msg is not None else frame)

    def _input(self, inp: Input, now: int, arg: object) -> None:
        """Apply one classified received input through the table."""
        entry = TRANSITIONS.get((self.state, inp))
        if entry is None:
            raise RemoteProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE, f"{inp.value} is not allowed in {self.state}"
            )
        nxt, action = entry
        getattr(self, "_a_" + action)(now, arg)
        if self.state not in TERMINAL:
            self.state = nxt

    def _check(self, msg: codec.Message, base: Input, now: int, digest: bytes) -> Input:
        """The checks of §8.1 in order; returns the refined input [RDV-25]."""
        inp = base
        if isinstance(msg, codec.Hello):
            inp = Input.RECV_HELLO if msg.echo is None else Input.RECV_HELLO_REPLY
            if (self.state, inp) not in TRANSITIONS:
                raise RemoteProtocolError(ErrorCode.UNEXPECTED_MESSAGE, f"{inp.value} here")
        window = check_received(msg, self.peer_pub, self.my_pub, now, self.nonces)
        if isinstance(msg, codec.Hello):
            if msg.echo is not None and msg.echo != self._hello_nonce:
                raise RemoteProtocolError(ErrorCode.RDV_REPLAY, "HELLO echo is not our nonce")
        elif msg.stream_nonce != self._hello_nonce:  # [RDV-51]
            raise RemoteProtocolError(ErrorCode.RDV_REPLAY, "message bound to another stream")
        if isinstance(msg, codec.Offer):
            inp = self._classify_offer(msg)
        elif isinstance(msg, codec.Answer):
            self._check_answer(msg)
        self.nonces.add(msg.epoch, msg.nonce, window, digest)
        return inp

    def _classify_offer(self, msg: codec.Offer) -> Input:
        """Generation rules [RDV-30] and glare [RDV-34], [RDV-36]."""
        g = msg.generation
        p = self._pending
        if self.state is State.OFFER_SENT and p is not None:
            if g > p.generation:
                return Input.RECV_OFFER_WINS
            if g == p.generation:
                return Input.RECV_OFFER_LOSES if self.is_leader else Input.RECV_OFFER_WINS
            if g > p.base:
                return Input.RECV_OFFER_LOSES  # crossed: the peer yields to our higher one
        elif g > self.generation:
            return Input.RECV_OFFER
        raise RemoteProtocolError(ErrorCode.RDV_STALE_GENERATION, f"OFFER generation {g}")

    def _check_answer(self, msg: codec.Answer) -> None:
        p = self._pending
        assert p is not None  # the state check admits ANSWER only in OFFER_SENT
        if msg.generation < p.generation:
            raise RemoteProtocolError(ErrorCode.RDV_STALE_GENERATION, "ANSWER for an old OFFER")
        if msg.generation != p.generation or msg.offer_nonce != p.nonce:
            raise RemoteProtocolError(ErrorCode.MESSAGE_INVALID, "ANSWER names another OFFER")

    # ----------------------------------------------------------------- actions

    def _hello(self, now: int, echo: bytes | None) -> tuple[bytes, Frame]:
        nonce = self._nonce()
        msg = codec.Hello(
            epoch_of(now // 1000), nonce, now, self.my_pub, self.peer_pub, echo,
            self.last_generation, self.incarnation,
        )
        return nonce, self._signed_frame(msg)

    def _a_send_hello(self, now: int) -> Frame:
        self._hello_nonce, frame = self._hello(now, None)
        self._deadline = now + HELLO_TIMEOUT_MS
        return frame

    def _a_arm_hello_timer(self, now: int) -> None:
        self._deadline = now + HELLO_TIMEOUT_MS

    def _authenticated(self, msg: codec.Hello) -> None:
        """``msg`` is the peer's HELLO echoing our nonce: its epoch is the one reported
        [RDV-55]."""
        self._deadline = None
        self.peer_epoch = msg.epoch
        self._events.append(
            PeerAuthenticated(self.peer_pub, msg.epoch, self.role, msg.generation, msg.incarnation)
        )
        # [RDV-60]: adopt the peer's mark, so a peer whose counter went backwards (a restored
        # backup) is never refused for ever: the next OFFER either side sends exceeds both.
        self.generation = max(self.generation, msg.generation)
        # [RDV-61]: report a regression or a new incarnation; never refuse
        regressed = msg.generation < self.known_peer_generation
        replaced = (self.known_peer_incarnation is not None
                    and msg.incarnation != self.known_peer_incarnation)
        if regressed or replaced:
            cause = ("both" if regressed and replaced
                     else "generation" if regressed else "incarnation")
            self._events.append(PeerReset(cause))

    def _a_echo_hello(self, now: int, msg: codec.Hello) -> None:
        """Acceptor: answer the dialer's HELLO with ours, echoing its nonce."""
        self._peer_nonce = msg.nonce
        self._hello_nonce, frame = self._hello(now, msg.nonce)
        self._out.append(frame)

    def _a_confirm_hello(self, now: int, msg: codec.Hello) -> None:
        """Dialer: the acceptor echoed our nonce; echo its nonce back (the third HELLO)."""
        self._peer_nonce = msg.nonce
        _, frame = self._hello(now, msg.nonce)
        self._out.append(frame)
        self._authenticated(msg)

    def _a_hello_confirmed(self, now: int, msg: codec.Hello) -> None:
        """Acceptor: the dialer echoed our fresh nonce, so it is live on this stream."""
        self._authenticated(msg)

    def _a_timeout(self, now: int) -> None:
        self._fail(ErrorCode.TIMEOUT, "rendezvous timer expired")

    def _a_stream_closed(self, now: int, _: object) -> None:
        """EOF with nothing buffered: the stream is gone, so no ERROR frame; the driver learns it
        from the event [RDV-47]."""
        self._deadline = None
        self._events.append(RendezvousFailed(ErrorCode.PROTOCOL_VIOLATION, by_peer=True))

    def _a_send_offer(
        self, now: int, sdp: str, fingerprint: bytes, generation: int, last_rx: int
    ) -> Frame:
        if type(generation) is not int or generation <= self.generation:
            raise LocalProtocolError(
                ErrorCode.RDV_STALE_GENERATION,
                f"generation {generation} must exceed {self.generation}",
            )
        msg = self._fresh(
            codec.Offer(
                epoch_of(now // 1000), _NO_NONCE, generation, sdp, fingerprint, last_rx,
                self._peer_nonce,
            )
        )
        nonce = msg.nonce
        data = self._sign(msg)
        self._pending = _Pending(generation, nonce, self.generation)
        self.generation = generation
        self._deadline = now + ANSWER_TIMEOUT_MS
        return data

    def _a_offer_received(self, now: int, msg: codec.Offer) -> None:
        glare = self._pending is not None
        self._pending = None
        self._deadline = None
        self._received = msg
        self.generation = max(self.generation, msg.generation)
        self._events.append(
            OfferReceived(msg.generation, msg.sdp, msg.fingerprint, msg.last_rx, glare)
        )

    def _a_drop_offer(self, now: int, msg: codec.Offer) -> None:
        """We win glare: the peer will answer ours [RDV-35]."""

    def _a_answer_received(self, now: int, msg: codec.Answer) -> None:
        self._pending = None
        self._deadline = None
        self._events.append(
            AnswerReceived(msg.generation, msg.sdp, msg.fingerprint, msg.last_rx)
        )

    def _a_send_answer(self, now: int, sdp: str, fingerprint: bytes, last_rx: int) -> Frame:
        offer = self._received
        assert offer is not None
        msg = self._fresh(
            codec.Answer(
                epoch_of(now // 1000), _NO_NONCE, offer.generation, sdp, fingerprint, last_rx,
                offer.nonce, self._peer_nonce,
            )
        )
        data = self._sign(msg)
        self._received = None
        return data

    def _a_send_bye(self, now: int, reason: int) -> Frame:
        data = self._sign(
            self._fresh(codec.Bye(epoch_of(now // 1000), _NO_NONCE, reason, self._peer_nonce))
        )
        self._deadline = None
        return data

    def _a_bye_received(self, now: int, msg: codec.Bye) -> None:
        self._deadline = None
        self._events.append(Bye(msg.reason))

    def _a_error_received(self, now: int, frame: Frame) -> None:
        code, _ = parse_error_body(frame.body)
        self._deadline = None
        self._events.append(RendezvousFailed(code, by_peer=True))

    def _a_pong(self, now: int, frame: Frame) -> None:
        nonce = decode_cbor_map(frame.body).get(1)
        if not isinstance(nonce, bytes) or len(nonce) != 8:
            raise DecodeError(ErrorCode.MESSAGE_INVALID, "PING body must be {1: bytes(8)}")
        self._out.append(Frame(FrameType.PONG, 0, ping_body(nonce)))

    def _a_ignore(self, now: int, frame: Frame) -> None:
        pass


class DialScheduler:
    """When to dial the peer's onion (§8.6), sans-I/O; one per pair.  The whole reconnect policy
    of §8.8 (network changes, dial-only peers, re-publishing, generations, the path) is
    :class:`p4ref.reconnect.ReconnectPolicy`, which a per-peer link uses instead.

    LOW (the leader) dials at :meth:`start`; HIGH dials ``FOLLOWER_DELAY_MS`` later unless a
    stream was authenticated meanwhile [RDV-37].  After a failed dial the next one waits
    ``d = min(1 s * 2^k, 60 s)`` minus jitter: ``d - d * r // 131072`` with ``r`` the big-endian
    u16 of two bytes from ``rng`` [RDV-38]; :meth:`network_changed` and :meth:`connected` reset
    ``k`` to 0.
    """

    __slots__ = ("_attempt", "_deadline", "_rng", "role")

    def __init__(self, role: Role, rng: Rng) -> None:
        self.role = role
        self._rng = rng
        self._attempt = 0
        self._deadline: int | None = None

    def get_timer(self) -> int | None:
        return self._deadline

    def start(self, now: int) -> None:
        self._attempt = 0
        self._deadline = now if self.role is Role.LOW else now + FOLLOWER_DELAY_MS

    def handle_timer(self, now: int) -> bool:
        """True when the driver should dial now (then report dial_failed/connected)."""
        if self._deadline is None or now < self._deadline:
            return False
        self._deadline = None
        return True

    def backoff_ms(self, attempt: int) -> int:
        d = min(BACKOFF_INITIAL_MS * BACKOFF_FACTOR**attempt, BACKOFF_MAX_MS)
        r = int.from_bytes(self._rng(2)[:2], "big")
        return int(d - d * r // 131072)

    def dial_failed(self, now: int) -> None:
        self._deadline = now + self.backoff_ms(self._attempt)
        self._attempt = min(self._attempt + 1, 16)

    def connected(self, now: int) -> None:
        """An authenticated stream exists (either direction): stop dialing."""
        self._attempt = 0
        self._deadline = None

    def disconnected(self, now: int) -> None:
        self.start(now)

    def network_changed(self, now: int) -> None:
        """Reset the backoff [RDV-38]; a peer without a stream dials again at once, whatever its
        role (revision 3, RDV-64: no follower delay on a reconnect)."""
        if self._deadline is not None or self._attempt:
            self._attempt = 0
            self._deadline = now


def stream_to_keep(my_role: Role) -> str:
    """Stream glare [RDV-39]: with two authenticated streams, both peers keep the one the LOW
    peer dialed.  Returns ``"outbound"`` or ``"inbound"`` from this peer's view."""
    return "outbound" if my_role is Role.LOW else "inbound"

