"""The pairing state machine (p4-02 §8), both roles, sans-I/O.

Theory of operation
-------------------
One :class:`PairingMachine` runs one role of one invitation.  It never touches a socket, a clock
or an entropy source: bytes come in through :meth:`~PairingMachine.receive_data` (a Tor stream)
or :meth:`~PairingMachine.receive_frame`, time comes in as ``now`` (integer milliseconds, the same
clock as the invitation's ``expires_at``), and every random value the machine needs is drawn from
the injected ``rng``.  Out come frames (:meth:`~PairingMachine.data_to_send`), events
(:meth:`~PairingMachine.next_event`) and a deadline (:meth:`~PairingMachine.get_timer`).

Rule 1: all state logic is the table :data:`TRANSITIONS` — ``{role: {(State, Input): (Next,
action)}}``.  The actions only compute and queue output; they never choose the next state, except
that an action may *fail*, which always leads to FAILED.

Rule 2: a received frame is checked in this order (p4-02 §8.3): framing (p4-01), the message
schema (§6, MESSAGE_INVALID / VERSION_UNSUPPORTED), the state (a (state, input) pair absent from
the table is ERROR(UNEXPECTED_MESSAGE)) [PAIR-43], and then the action's own checks.  In the
terminal states PAIRED and FAILED nothing is checked: a PAIR_PAKE is refused (inviter) and every
other frame, malformed or not, is discarded [PAIR-44].

Rule 3: on a remote error the machine queues the ERROR frame first, then a
:class:`PairingFailed` event, then enters FAILED, and only then raises
:class:`~p4ref.errors.RemoteProtocolError` — so the caller can flush the ERROR before closing
(STYLE.md).  Failures that are not the peer's fault (expiry, timeout, the peer's own ERROR) do the
same without raising.  One exception: an inviter in WAIT_PAKE has not consumed its invitation, so
a bad stream (junk, a malformed or invalid PAIR_PAKE, an ERROR) only ends that stream — ERROR is
queued, the rest of the stream is ignored, the machine stays in WAIT_PAKE and still raises so the
caller closes the stream [PAIR-48].

Rule 4: an invitation is single-use.  The inviter consumes it the moment it answers a well-formed
PAIR_PAKE: any failure after that — wrong code, timeout, lost connection — burns it, and a later
PAIR_PAKE is refused with ERROR(PAIR_INVITATION_BURNT) [PAIR-47].  That is what limits an
attacker to one online guess per invitation.

Rule 5: the SAS cannot be chosen.  The inviter sends a commitment to (identity key, nonce) with
its PAIR_CONFIRM, before it sees anything of the accepter's identity; the accepter reveals its
identity and a fresh nonce only after that; the inviter then reveals and the accepter checks the
commitment (p4-02 §7.5).  Both nonces and the commitment go into TH2 and so into the SAS.

Rule 6: both or neither, as far as two messages allow (p4-02 §7.7, §11.7).  The accepter sends
PAIR_DONE when it has verified everything; the inviter verifies it, reports Paired (the
application stores the pair before it transmits what the machine queued) and answers with its own
PAIR_DONE; only then does the accepter report Paired.  An accepter whose PAIR_DONE gets no answer
fails with PAIR_OUTCOME_UNKNOWN: the inviter may have stored the pair.

Input: ``receive_data`` takes any split of the stream (it slices what it is given, so no call can
overflow the frame reader); ``b""`` is the end of the stream.  Timers fire only in
:meth:`~PairingMachine.handle_timer`; frames never fire them.

Framing-level frames are handled before the table: ignorable types and PADDING are discarded,
PONG is discarded, PING is answered with PONG while the machine is not terminal [PAIR-45].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from nacl.signing import SigningKey

from .._table import transition_markdown
from ..errors import DecodeError, ErrorCode, LocalProtocolError, RemoteProtocolError
from ..framing import Frame, FrameReader, FrameType, Path, encode_frame, error_body
from ..framing import parse_error_body as _parse_error_body
from . import _crypto as C
from ._codec import (
    Message,
    PairConfirm,
    PairDone,
    PairIdentity,
    PairPake,
    decode_message,
    encode_message,
)
from ._events import Event, Paired, PairingFailed
from ._invite import InviteUri, ShortCode, parse_code, parse_uri

__all__ = [
    "DEFAULT_EXPIRY_MS",
    "DEFAULT_TIMEOUT_MS",
    "TRANSITIONS",
    "Input",
    "Invitation",
    "PairingMachine",
    "State",
    "state_diagram_mermaid",
    "transition_rows",
    "transition_table_markdown",
]

#: Default lifetime of an invitation (p4-02 §5.3).
DEFAULT_EXPIRY_MS = 10 * 60 * 1000
#: Default limit on one pairing attempt, from the first PAKE message to the end (p4-02 §8.4).
DEFAULT_TIMEOUT_MS = 60 * 1000


class State(StrEnum):
    IDLE = "IDLE"
    WAIT_PAKE = "WAIT_PAKE"
    WAIT_CONFIRM = "WAIT_CONFIRM"
    WAIT_IDENTITY = "WAIT_IDENTITY"
    WAIT_DONE = "WAIT_DONE"
    PAIRED = "PAIRED"
    FAILED = "FAILED"


class Input(StrEnum):
    START = "start"
    PAIR_PAKE = "PAIR_PAKE"
    PAIR_CONFIRM = "PAIR_CONFIRM"
    PAIR_IDENTITY = "PAIR_IDENTITY"
    PAIR_DONE = "PAIR_DONE"
    ERROR = "ERROR"
    TIMEOUT = "timeout"
    EXPIRY = "expiry"
    CONNECTION_LOST = "connection_lost"


S, I = State, Input  # noqa: E741 - short names keep the table readable
_TERMINAL = frozenset({S.PAIRED, S.FAILED})
_FRAME_INPUTS: dict[int, Input] = {
    FrameType.PAIR_PAKE: I.PAIR_PAKE,
    FrameType.PAIR_CONFIRM: I.PAIR_CONFIRM,
    FrameType.PAIR_IDENTITY: I.PAIR_IDENTITY,
    FrameType.PAIR_DONE: I.PAIR_DONE,
    FrameType.ERROR: I.ERROR,
}

Row = tuple[State, str]


def _failures(states: Sequence[State], *, lost: bool = True) -> dict[tuple[State, Input], Row]:
    rows: dict[tuple[State, Input], Row] = {}
    for s in states:
        rows[(s, I.ERROR)] = (S.FAILED, "peer_error")
        rows[(s, I.TIMEOUT)] = (S.FAILED, "time_out")
        if lost:
            rows[(s, I.CONNECTION_LOST)] = (S.FAILED, "lost")
    return rows


#: The normative transition table of p4-02 §8.2 (the spec's table is generated from it).
TRANSITIONS: dict[C.Role, dict[tuple[State, Input], Row]] = {
    C.Role.INVITER: {
        (S.IDLE, I.START): (S.WAIT_PAKE, "listen"),
        (S.WAIT_PAKE, I.PAIR_PAKE): (S.WAIT_CONFIRM, "answer_pake"),
        (S.WAIT_PAKE, I.EXPIRY): (S.FAILED, "expire"),
        (S.WAIT_PAKE, I.ERROR): (S.WAIT_PAKE, "drop_stream"),
        (S.WAIT_PAKE, I.CONNECTION_LOST): (S.WAIT_PAKE, "nothing"),
        (S.WAIT_CONFIRM, I.PAIR_CONFIRM): (S.WAIT_IDENTITY, "check_confirm"),
        (S.WAIT_IDENTITY, I.PAIR_IDENTITY): (S.WAIT_DONE, "take_identity_send_own"),
        (S.WAIT_DONE, I.PAIR_DONE): (S.PAIRED, "check_done_send_done"),
        **_failures([S.WAIT_CONFIRM, S.WAIT_IDENTITY, S.WAIT_DONE]),
        (S.PAIRED, I.PAIR_PAKE): (S.PAIRED, "refuse_burnt"),
        (S.FAILED, I.PAIR_PAKE): (S.FAILED, "refuse_burnt"),
    },
    C.Role.ACCEPTER: {
        (S.IDLE, I.START): (S.WAIT_PAKE, "send_pake"),
        (S.WAIT_PAKE, I.PAIR_PAKE): (S.WAIT_CONFIRM, "take_pake"),
        (S.WAIT_CONFIRM, I.PAIR_CONFIRM): (S.WAIT_IDENTITY, "check_confirm_send_identity"),
        (S.WAIT_IDENTITY, I.PAIR_IDENTITY): (S.WAIT_DONE, "take_identity_send_done"),
        (S.WAIT_DONE, I.PAIR_DONE): (S.PAIRED, "check_done"),
        **_failures([S.WAIT_PAKE, S.WAIT_CONFIRM, S.WAIT_IDENTITY]),
        (S.WAIT_DONE, I.ERROR): (S.FAILED, "peer_error"),
        (S.WAIT_DONE, I.TIMEOUT): (S.FAILED, "time_out_unknown"),
        (S.WAIT_DONE, I.CONNECTION_LOST): (S.FAILED, "lost_unknown"),
    },
}

#: What each action does, for the generated spec table (p4-02 §8.2).
ACTION_TEXT: dict[str, str] = {
    "listen": "check expiry; arm the expiry timer",
    "answer_pake": "check expiry; check pA; draw y and nI; send PAIR_PAKE(pB),"
    " PAIR_CONFIRM(cB, commitment); arm the pairing timer; the invitation is now consumed",
    "expire": "emit PAIRING_FAILED(PAIR_INVITATION_EXPIRED)",
    "drop_stream": "ignore the rest of the stream (the invitation is not consumed)",
    "peer_error": "emit PAIRING_FAILED(peer's code)",
    "nothing": "—",
    "check_confirm": "verify cA",
    "take_identity_send_own": "open and verify the accepter's identity; send PAIR_IDENTITY",
    "check_done_send_done": "verify the accepter's PAIR_DONE; queue PAIR_DONE; emit PAIRED",
    "time_out": "send ERROR(TIMEOUT); emit PAIRING_FAILED(TIMEOUT)",
    "time_out_unknown": "send ERROR(TIMEOUT); emit PAIRING_FAILED(PAIR_OUTCOME_UNKNOWN)",
    "lost": "emit PAIRING_FAILED(PROTOCOL_VIOLATION)",
    "lost_unknown": "emit PAIRING_FAILED(PAIR_OUTCOME_UNKNOWN)",
    "refuse_burnt": "send ERROR(PAIR_INVITATION_EXPIRED) if the invitation ended by expiry"
    " (PAIR-70), else ERROR(PAIR_INVITATION_BURNT)",
    "send_pake": "check expiry; draw x; send PAIR_PAKE(pA); arm the pairing timer",
    "take_pake": "check pB; compute K and the key schedule",
    "check_confirm_send_identity": "verify cB; draw nA; send PAIR_CONFIRM(cA), PAIR_IDENTITY",
    "take_identity_send_done": "open and verify the inviter's identity and its commitment;"
    " send PAIR_DONE",
    "check_done": "verify the inviter's PAIR_DONE; emit PAIRED",
}


def transition_rows(role: C.Role) -> list[tuple[str, str, str, str]]:
    """(state, input, next state, action text) rows in table order, for the spec."""
    return [
        (s.value, i.value, n.value, ACTION_TEXT[a]) for (s, i), (n, a) in TRANSITIONS[role].items()
    ]


def transition_table_markdown(role: C.Role) -> str:
    """The normative table of p4-02 §8.2 for ``role``, as the spec prints it."""
    return transition_markdown(transition_rows(role), code=True, final_newline=False)


def state_diagram_mermaid(role: C.Role) -> str:
    """The informative diagram of p4-02 §8.1 for ``role`` (Mermaid), generated from the table."""
    lines = ["```mermaid", "stateDiagram-v2", f"    %% {role.value}", "    [*] --> IDLE"]
    lines += [
        f"    {s.value} --> {n.value}: {i.value}" for (s, i), (n, _) in TRANSITIONS[role].items()
    ]
    lines += ["    PAIRED --> [*]", "    FAILED --> [*]", "```"]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Invitation:
    """What both roles must agree on before the PAKE: the password and the slot (p4-02 §5).

    ``expires_at`` is in the machine's clock (ms); ``None`` means the inviter default applies
    from :meth:`PairingMachine.start` (inviter) or no check (accepter).  A URI carries its expiry
    in Unix seconds, so machines that use URI invitations must be driven with Unix-time ``now``.
    ``key_commitment`` is the URI's commitment to the inviter's identity key (§5.2): the
    accepter checks the inviter's key against it; ``None`` for a short code.
    """

    password: bytes
    slot: str
    expires_at: int | None = None
    key_commitment: bytes | None = None

    @classmethod
    def from_code(cls, code: ShortCode | str, expires_at: int | None = None) -> Invitation:
        c = parse_code(code) if isinstance(code, str) else code
        return cls(c.password, c.slot, expires_at)

    @classmethod
    def from_uri(cls, uri: InviteUri | str, expires_at: int | None = None) -> Invitation:
        """For a URI the expiry defaults to the URI's ``x`` (Unix seconds → ms)."""
        u = parse_uri(uri) if isinstance(uri, str) else uri
        exp = u.expires * 1000 if expires_at is None else expires_at
        return cls(u.password, u.slot, exp, u.key_commitment)


class _Terminate(Exception):
    """An action ends the attempt without it being the peer's protocol error (no raise)."""

    def __init__(self, code: ErrorCode, reason: str, send: bool,
                 peer_code: int | None = None) -> None:
        super().__init__(reason)
        self.code, self.reason, self.send, self.peer_code = code, reason, send, peer_code


RandomSource = Callable[[int], bytes] | Sequence[bytes]

#: receive_data() feeds the frame reader at most this many bytes at a time (any split works).
_FEED_CHUNK = 16384


class PairingMachine:
    """One role of one pairing invitation; see the module docstring.

    ``rng`` is either a function ``n -> n random bytes`` or the list of values the machine draws,
    in order: the accepter draws 64 bytes (its scalar) at ``start`` and 32 bytes (its identity
    nonce) on the inviter's PAIR_CONFIRM; the inviter draws 64 bytes and then 32 bytes when it
    answers a PAIR_PAKE.
    """

    def __init__(
        self,
        role: C.Role,
        invitation: Invitation,
        identity: SigningKey | bytes,
        rng: RandomSource,
        *,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        self.role = C.Role(role)
        self.invitation = invitation
        if not isinstance(identity, SigningKey) and len(identity) != 32:
            raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "identity seed is 32 bytes")
        self._signing_key = identity if isinstance(identity, SigningKey) else SigningKey(identity)
        self._own_pub = bytes(self._signing_key.verify_key)
        kc = invitation.key_commitment
        own_kc = C.inviter_key_commitment(self._own_pub)
        if self.role is C.Role.INVITER and kc is not None and kc != own_kc:
            raise LocalProtocolError(
                ErrorCode.PAIR_INVITER_MISMATCH, "the URI commits to another identity key"
            )
        if timeout_ms <= 0:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "timeout_ms must be positive")
        self._rng = rng
        self._rng_pos = 0
        self.timeout_ms = timeout_ms
        self._table = TRANSITIONS[self.role]
        self._state = S.IDLE
        self._reader = FrameReader(Path.TOR)
        # True once the current stream is done with: an ERROR went either way, or a framing error
        # in a terminal state.  Input is ignored until the stream is replaced (p4-00 §7.2).
        self._closed = False
        self._end_code: ErrorCode | None = None
        self._out: list[Frame] = []
        self._events: deque[Event] = deque()
        self._expires_at: int | None = None
        self._deadline: int | None = None
        # per-attempt secrets; dropped when the machine ends
        self._w: bytes | None = None
        self._scalar: bytes | None = None
        self._own_element = b""
        self._keys: C.Spake2Keys | None = None
        self._th = b""
        self._nonce = b""
        self._commitment = b""
        self._final: C.FinalKeys | None = None
        self._peer_pub = b""

    # --- public API ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def stream_closed(self) -> bool:
        """True when the machine ignores the rest of the current stream: close it."""
        return self._closed

    def start(self, now: int) -> bytes:
        """Begin: the accepter sends its PAKE message, the inviter starts listening.

        An invitation already expired at ``now`` fails the machine at once with
        PAIR_INVITATION_EXPIRED [PAIR-16] [PAIR-17] (nothing is sent).

        Raises:
            LocalProtocolError: UNEXPECTED_MESSAGE if called twice (the machine is unchanged).
        """
        if self._state is not S.IDLE:  # refused, the machine unchanged (p4-02 §14)
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "start() called twice")
        exp = self.invitation.expires_at
        if self.role is C.Role.INVITER and exp is None:
            exp = now + DEFAULT_EXPIRY_MS
        self._expires_at = exp
        self._dispatch(I.START, now, None)
        return self.data_to_send()

    def receive_data(self, data: bytes, now: int) -> None:
        """Feed bytes from the Tor stream, any number, any split; complete frames are processed
        at once.  ``b""`` is end of stream (h11 convention), the same as :meth:`connection_lost`.

        Raises:
            RemoteProtocolError: (incl. DecodeError) the peer broke the protocol: ERROR has been
                queued and the stream must be closed; the state says whether the attempt failed.
        """
        if not data:
            self.connection_lost(now)
            return
        if self._state is S.IDLE:  # the caller's mistake, refused without a state change
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "bytes before start()")
        view = bytes(data)
        for pos in range(0, len(view), _FEED_CHUNK):
            if self._closed:
                return
            self._reader.feed(view[pos : pos + _FEED_CHUNK])
            while not self._closed:
                head = self._reader.head_type
                try:
                    frame = self._reader.next_frame()
                except DecodeError as exc:
                    self._closed = True
                    if self._state in _TERMINAL:
                        return  # [PAIR-44]: discarded, never answered
                    # never answer a broken ERROR frame with one (p4-00 §7.2, CNV-36)
                    self._protocol_error(exc.code, exc.message, send=head != FrameType.ERROR)
                if frame is None:
                    break
                self.receive_frame(frame, now)

    def receive_frame(self, frame: Frame, now: int) -> None:
        """Process one decoded frame (its header and flags were checked by the framing codec)."""
        if self._state is S.IDLE:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE, "a frame before start()")
        if self._closed:
            return
        if frame.ignorable or frame.type in (FrameType.PADDING, FrameType.PONG):
            return  # [PAIR-45]
        if frame.type == FrameType.PING:
            if self._state not in _TERMINAL:
                self._out.append(Frame(FrameType.PONG, 0, frame.body))
            return
        inp = _FRAME_INPUTS.get(frame.type)
        if self._state in _TERMINAL:
            if inp is not None and (self._state, inp) in self._table:
                self._dispatch(inp, now, frame)
            return  # [PAIR-44]
        if inp is None:  # a known type that has no business in pairing (DATA, RV_*, ...)
            self._protocol_error(
                ErrorCode.UNEXPECTED_MESSAGE, f"frame type 0x{frame.type:02x}", send=True
            )
        self._dispatch(inp, now, frame)

    def connection_lost(self, now: int) -> None:
        """The Tor stream closed.  Before the PAKE this is harmless for the inviter."""
        self._reader = FrameReader(Path.TOR)
        self._closed = False
        if self._state is not S.IDLE:
            self._dispatch(I.CONNECTION_LOST, now, None)

    def get_timer(self) -> int | None:
        """The earliest deadline (ms) at which :meth:`handle_timer` must be called, if any."""
        if self._state is S.WAIT_PAKE and self.role is C.Role.INVITER:
            return self._expires_at
        if self._state in _TERMINAL or self._state is S.IDLE:
            return None
        return self._deadline

    def handle_timer(self, now: int) -> None:
        """Fire the timer whose deadline is ≤ ``now``, if any (p4-02 §8.4)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        is_expiry = self._state is S.WAIT_PAKE and self.role is C.Role.INVITER
        self._dispatch(I.EXPIRY if is_expiry else I.TIMEOUT, now, None)

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def frames_to_send(self) -> list[Frame]:
        out, self._out = self._out, []
        return out

    def data_to_send(self) -> bytes:
        return b"".join(encode_frame(f, Path.TOR) for f in self.frames_to_send())

    # --- the table -----------------------------------------------------------------------

    def _schema(self, inp: Input, frame: Frame) -> Message:
        """Check (2) of p4-02 §8.3: the body schema, including the direction rule of key 2 of
        PAIR_CONFIRM (the inviter's carries a commitment, the accepter's does not)."""
        msg = decode_message(frame)
        if isinstance(msg, PairConfirm):
            from_inviter = self.role is C.Role.ACCEPTER
            if (msg.commitment is not None) != from_inviter:
                raise DecodeError(
                    ErrorCode.MESSAGE_INVALID,
                    "PAIR_CONFIRM: key 2 is required from the inviter and absent from the accepter",
                )
        return msg

    def _dispatch(self, inp: Input, now: int, frame: Frame | None) -> None:
        msg: Message | Frame | None = frame
        try:
            if frame is not None and inp is not I.ERROR and self._state not in _TERMINAL:
                msg = self._schema(inp, frame)
        except RemoteProtocolError as exc:
            self._protocol_error(exc.code, exc.message, send=True)
        row = self._table.get((self._state, inp))
        if row is None:
            if self._state is S.IDLE or inp is I.START:
                raise LocalProtocolError(
                    ErrorCode.INTERNAL_ERROR, f"{inp.value} not allowed in {self._state.value}"
                )
            if frame is None or self._state in _TERMINAL:
                return  # unlisted timer/connection input, or a frame after the end [PAIR-44]
            self._protocol_error(
                ErrorCode.UNEXPECTED_MESSAGE, f"{inp.value} in {self._state.value}", send=True
            )
        nxt, action = row
        try:
            getattr(self, "_do_" + action)(now, msg)
        except RemoteProtocolError as exc:
            self._protocol_error(exc.code, exc.message, send=True)
        except _Terminate as t:
            self._fail(t.code, t.reason, send=t.send, peer_code=t.peer_code)
            return
        self._state = nxt
        if nxt in _TERMINAL:
            self._forget()

    def _protocol_error(self, code: ErrorCode, reason: str, *, send: bool) -> NoReturn:
        """The peer broke the protocol: ERROR (if allowed), then fail — or, for an inviter whose
        invitation is not consumed yet, only end the stream [PAIR-48] — then raise."""
        if self.role is C.Role.INVITER and self._state is S.WAIT_PAKE:
            if send:
                self._out.append(Frame(FrameType.ERROR, 0, error_body(code, reason)))
            self._closed = True
        else:
            self._fail(code, reason, send=send)
        raise RemoteProtocolError(code, reason)

    def _fail(self, code: ErrorCode, reason: str, *, send: bool,
              peer_code: int | None = None) -> None:
        if send:
            self._out.append(Frame(FrameType.ERROR, 0, error_body(code, reason)))
            self._closed = True
        self._end_code = code
        self._events.append(PairingFailed(code, reason, peer_code))
        self._state = S.FAILED
        self._forget()

    def _forget(self) -> None:
        self._w = self._scalar = self._keys = self._final = None
        self._th = self._nonce = b""

    def _random(self, n: int) -> bytes:
        if callable(self._rng):
            data = bytes(self._rng(n))
        else:
            if self._rng_pos >= len(self._rng):
                raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "rng exhausted")
            data = bytes(self._rng[self._rng_pos])
            self._rng_pos += 1
        if len(data) != n:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, f"rng gave {len(data)}, not {n}")
        return data

    def _send(self, *msgs: Message) -> None:
        self._out.extend(encode_message(m) for m in msgs)

    # --- actions (p4-02 §8.2) --------------------------------------------------------------

    def _check_expiry(self, now: int, send: bool) -> None:
        if self._expires_at is not None and now >= self._expires_at:
            raise _Terminate(ErrorCode.PAIR_INVITATION_EXPIRED, "invitation expired", send)

    def _do_nothing(self, now: int, msg: object) -> None:
        pass

    def _do_listen(self, now: int, msg: object) -> None:
        self._check_expiry(now, False)

    def _do_send_pake(self, now: int, msg: object) -> None:
        self._check_expiry(now, False)  # [PAIR-17]
        self._begin(now)
        self._send(PairPake(self._own_element))

    def _begin(self, now: int) -> None:
        self._w = C.derive_w(self.invitation.password, self.invitation.slot)
        self._scalar = C.draw_scalar(self._random(C.SCALAR_DRAW_LEN))
        self._own_element = C.spake2_element(self.role, self._w, self._scalar)
        self._deadline = now + self.timeout_ms

    def _pake(self, peer_element: bytes) -> None:
        assert self._w is not None and self._scalar is not None
        k = C.spake2_shared(self.role, self._w, self._scalar, peer_element)
        id_a, id_b = C.spake2_ids(self.invitation.slot)
        if self.role is C.Role.ACCEPTER:
            p_a, p_b = self._own_element, peer_element
        else:
            p_a, p_b = peer_element, self._own_element
        tt = C.transcript(id_a, id_b, p_a, p_b, k, self._w)
        self._keys = C.key_schedule(tt)
        self._th = C.transcript_hash(tt)

    def _do_answer_pake(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairPake)
        self._check_expiry(now, True)  # [PAIR-16]: before the element is looked at
        w = C.derive_w(self.invitation.password, self.invitation.slot)
        C.check_element(C.Role.INVITER, w, msg.element)  # invalid: the stream ends, not the invite
        self._begin(now)  # from here on the invitation is consumed [PAIR-18]
        self._pake(msg.element)
        self._nonce = self._random(C.NONCE_LEN)
        self._commitment = C.identity_commitment(self._th, self._own_pub, self._nonce)
        assert self._keys is not None
        self._send(PairPake(self._own_element), PairConfirm(self._keys.cb, self._commitment))

    def _do_take_pake(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairPake)
        self._pake(msg.element)

    def _check_mac(self, expected: bytes, received: bytes) -> None:
        if not C.verify_mac(expected, received):
            raise RemoteProtocolError(ErrorCode.PAIR_CONFIRM_FAILED, "confirmation MAC mismatch")

    def _identity_keys(self) -> tuple[bytes, bytes]:
        assert self._keys is not None
        return C.identity_keys(self._keys.ke, self._th)

    def _do_check_confirm(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairConfirm) and self._keys is not None
        self._check_mac(self._keys.ca, msg.mac)

    def _do_check_confirm_send_identity(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairConfirm) and self._keys is not None
        assert msg.commitment is not None  # the schema check requires it from the inviter
        self._check_mac(self._keys.cb, msg.mac)
        self._commitment = msg.commitment  # fixed before we reveal anything [PAIR-36]
        self._nonce = self._random(C.NONCE_LEN)
        k_a, _ = self._identity_keys()
        sealed = C.seal_identity(k_a, self._th, self._signing_key, self.role, self._nonce)
        self._send(PairConfirm(self._keys.ca), PairIdentity(sealed))

    def _finish(self, accepter: C.OpenedIdentity, inviter: C.OpenedIdentity) -> None:
        assert self._keys is not None
        if accepter.public_key == inviter.public_key:
            raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "peer uses our identity")
        self._final = C.final_keys(
            self._keys.ke, self._th, accepter.public_key, inviter.public_key,
            accepter.nonce, inviter.nonce, self._commitment,
        )  # fmt: skip

    def _paired(self) -> None:
        assert self._final is not None
        self._events.append(Paired(self._peer_pub, self._final.pair_root_key, self._final.sas))

    def _do_take_identity_send_own(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairIdentity)
        k_a, k_b = self._identity_keys()
        peer = C.open_identity(k_a, self._th, msg.ciphertext, C.Role.ACCEPTER)
        self._peer_pub = peer.public_key
        self._finish(peer, C.OpenedIdentity(self._own_pub, self._nonce))
        sealed = C.seal_identity(k_b, self._th, self._signing_key, self.role, self._nonce)
        self._send(PairIdentity(sealed))

    def _do_take_identity_send_done(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairIdentity)
        _, k_b = self._identity_keys()
        peer = C.open_identity(k_b, self._th, msg.ciphertext, C.Role.INVITER)
        if C.identity_commitment(self._th, peer.public_key, peer.nonce) != self._commitment:
            raise RemoteProtocolError(
                ErrorCode.PAIR_IDENTITY_INVALID, "identity does not open the commitment"
            )
        kc = self.invitation.key_commitment
        if kc is not None and C.inviter_key_commitment(peer.public_key) != kc:
            raise RemoteProtocolError(
                ErrorCode.PAIR_INVITER_MISMATCH, "not the identity key the URI commits to"
            )
        self._peer_pub = peer.public_key
        self._finish(C.OpenedIdentity(self._own_pub, self._nonce), peer)
        assert self._final is not None
        self._send(PairDone(C.done_mac(self._final.k_done_accepter, self._final.th2)))

    def _do_check_done_send_done(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairDone) and self._final is not None
        self._check_mac(C.done_mac(self._final.k_done_accepter, self._final.th2), msg.mac)
        self._paired()  # the application stores the pair before it sends our PAIR_DONE
        self._send(PairDone(C.done_mac(self._final.k_done_inviter, self._final.th2)))

    def _do_check_done(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairDone) and self._final is not None
        self._check_mac(C.done_mac(self._final.k_done_inviter, self._final.th2), msg.mac)
        self._paired()

    def _do_expire(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.PAIR_INVITATION_EXPIRED, "invitation expired", False)

    def _do_time_out(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.TIMEOUT, "pairing timed out", True)

    def _do_time_out_unknown(self, now: int, msg: object) -> None:
        self._out.append(Frame(FrameType.ERROR, 0, error_body(ErrorCode.TIMEOUT, "timed out")))
        self._closed = True
        raise _Terminate(ErrorCode.PAIR_OUTCOME_UNKNOWN, "no PAIR_DONE from the inviter", False)

    def _do_lost(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.PROTOCOL_VIOLATION, "connection lost during pairing", False)

    def _do_lost_unknown(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.PAIR_OUTCOME_UNKNOWN, "connection lost before PAIR_DONE", False)

    def _peer_code(self, msg: object) -> tuple[ErrorCode, str, int | None]:
        """The peer's code; an unregistered value is kept as received (CNV-38)."""
        assert isinstance(msg, Frame)
        try:
            code, reason = _parse_error_body(msg.body)
        except DecodeError as exc:  # a broken ERROR frame is never answered (CNV-36)
            self._protocol_error(exc.code, exc.message, send=False)
        try:
            return ErrorCode(code), reason, None
        except ValueError:
            return ErrorCode.PROTOCOL_VIOLATION, f"peer error 0x{code:04x}: {reason}", code

    def _do_peer_error(self, now: int, msg: object) -> None:
        ecode, reason, raw = self._peer_code(msg)
        self._closed = True  # the peer closed this stream [PAIR-46]
        raise _Terminate(ecode, reason, False, raw)

    def _do_drop_stream(self, now: int, msg: object) -> None:
        self._peer_code(msg)
        self._closed = True  # [PAIR-48]: this stream is over, the invitation is not

    def _do_refuse_burnt(self, now: int, msg: object) -> None:
        expired = self._end_code is ErrorCode.PAIR_INVITATION_EXPIRED
        code = ErrorCode.PAIR_INVITATION_EXPIRED if expired else ErrorCode.PAIR_INVITATION_BURNT
        self._out.append(Frame(FrameType.ERROR, 0, error_body(code, "invitation used")))
        self._closed = True
