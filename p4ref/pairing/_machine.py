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

Rule 2: anything absent from the table is a protocol error.  A frame whose (state, input) pair is
not in the table gets ERROR(UNEXPECTED_MESSAGE) and FAILED [PAIR-43], except in the terminal
states PAIRED and FAILED, where unlisted frames are discarded [PAIR-44].  Timer and
connection-loss inputs that are not listed are no-ops (their timers are not armed in that state).

Rule 3: on a remote error the machine queues the ERROR frame first, then a
:class:`PairingFailed` event, then enters FAILED, and only then raises
:class:`~p4ref.errors.RemoteProtocolError` — so the caller can flush the ERROR before closing
(STYLE.md).  Failures that are not the peer's fault (expiry, timeout, the peer's own ERROR) do the
same without raising.

Rule 4: an invitation is single-use.  The inviter consumes it the moment it answers a PAIR_PAKE:
any failure after that — wrong code, timeout, lost connection — burns it, and a later PAIR_PAKE is
refused with ERROR(PAIR_INVITATION_BURNT) [PAIR-47].  That is what limits an attacker to one
online guess per invitation.

Framing-level frames are handled before the table: ignorable types and PADDING are discarded,
PONG is discarded, PING is answered with PONG while the machine is not terminal [PAIR-45].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from nacl.signing import SigningKey

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
_FRAME_INPUTS = {
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
        (S.WAIT_PAKE, I.ERROR): (S.FAILED, "peer_error"),
        (S.WAIT_PAKE, I.CONNECTION_LOST): (S.WAIT_PAKE, "nothing"),
        (S.WAIT_CONFIRM, I.PAIR_CONFIRM): (S.WAIT_IDENTITY, "check_confirm"),
        (S.WAIT_IDENTITY, I.PAIR_IDENTITY): (S.WAIT_DONE, "take_identity_send_own"),
        (S.WAIT_DONE, I.PAIR_DONE): (S.PAIRED, "check_done"),
        **_failures([S.WAIT_CONFIRM, S.WAIT_IDENTITY, S.WAIT_DONE]),
        (S.PAIRED, I.PAIR_PAKE): (S.PAIRED, "refuse_burnt"),
        (S.FAILED, I.PAIR_PAKE): (S.FAILED, "refuse_burnt"),
    },
    C.Role.ACCEPTER: {
        (S.IDLE, I.START): (S.WAIT_PAKE, "send_pake"),
        (S.WAIT_PAKE, I.PAIR_PAKE): (S.WAIT_CONFIRM, "take_pake"),
        (S.WAIT_CONFIRM, I.PAIR_CONFIRM): (S.WAIT_IDENTITY, "check_confirm_send_identity"),
        (S.WAIT_IDENTITY, I.PAIR_IDENTITY): (S.PAIRED, "take_identity_send_done"),
        **_failures([S.WAIT_PAKE, S.WAIT_CONFIRM, S.WAIT_IDENTITY]),
    },
}

#: What each action does, for the generated spec table (p4-02 §8.2).
ACTION_TEXT: dict[str, str] = {
    "listen": "arm the expiry timer",
    "answer_pake": "check expiry; draw y; send PAIR_PAKE(pB), PAIR_CONFIRM(cB); arm the pairing"
    " timer; the invitation is now consumed",
    "expire": "emit PairingFailed(PAIR_INVITATION_EXPIRED)",
    "peer_error": "emit PairingFailed(peer's code)",
    "nothing": "—",
    "check_confirm": "verify cA",
    "take_identity_send_own": "open and verify the accepter's identity; send PAIR_IDENTITY",
    "check_done": "verify the DONE MAC; emit Paired",
    "time_out": "send ERROR(TIMEOUT); emit PairingFailed(TIMEOUT)",
    "lost": "emit PairingFailed(PROTOCOL_VIOLATION)",
    "refuse_burnt": "send ERROR(PAIR_INVITATION_EXPIRED) if the invitation expired, else"
    " ERROR(PAIR_INVITATION_BURNT)",
    "send_pake": "draw x; send PAIR_PAKE(pA); arm the pairing timer",
    "take_pake": "compute K and the key schedule",
    "check_confirm_send_identity": "verify cB; send PAIR_CONFIRM(cA), PAIR_IDENTITY",
    "take_identity_send_done": "open and verify the inviter's identity; send PAIR_DONE; emit"
    " Paired",
}


def transition_rows(role: C.Role) -> list[tuple[str, str, str, str]]:
    """(state, input, next state, action text) rows in table order, for the spec."""
    return [
        (s.value, i.value, n.value, ACTION_TEXT[a]) for (s, i), (n, a) in TRANSITIONS[role].items()
    ]


def transition_table_markdown(role: C.Role) -> str:
    """The normative table of p4-02 §8.2 for ``role``, as the spec prints it."""
    lines = ["| State | Input | Next state | Action |", "|---|---|---|---|"]
    lines += [f"| `{s}` | `{i}` | `{n}` | {a} |" for s, i, n, a in transition_rows(role)]
    return "\n".join(lines)


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
    """

    password: bytes
    slot: str
    expires_at: int | None = None

    @classmethod
    def from_code(cls, code: ShortCode | str, expires_at: int | None = None) -> Invitation:
        c = parse_code(code) if isinstance(code, str) else code
        return cls(c.password, c.slot, expires_at)

    @classmethod
    def from_uri(cls, uri: InviteUri | str, expires_at: int | None = None) -> Invitation:
        """For a URI the expiry defaults to the URI's ``x`` (Unix seconds → ms)."""
        u = parse_uri(uri) if isinstance(uri, str) else uri
        return cls(u.password, u.slot, u.expires * 1000 if expires_at is None else expires_at)


class _Terminate(Exception):
    """An action ends the attempt without it being the peer's protocol error (no raise)."""

    def __init__(self, code: ErrorCode, reason: str, send: bool) -> None:
        super().__init__(reason)
        self.code, self.reason, self.send = code, reason, send


RandomSource = Callable[[int], bytes] | Sequence[bytes]


class PairingMachine:
    """One role of one pairing invitation; see the module docstring."""

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
        self._rng = rng
        self._rng_pos = 0
        self.timeout_ms = timeout_ms
        self._table = TRANSITIONS[self.role]
        self._state = S.IDLE
        self._reader = FrameReader(Path.TOR)
        # True once an ERROR went either way on the current stream: input is ignored until the
        # stream is replaced (p4-00 §7.2: stop processing; never answer an ERROR)
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
        self._peer_element = b""
        self._keys: C.Spake2Keys | None = None
        self._th = b""
        self._final: C.FinalKeys | None = None
        self._peer_pub = b""

    # --- public API ----------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def start(self, now: int) -> bytes:
        """Begin: the accepter sends its PAKE message, the inviter starts listening.

        Raises:
            LocalProtocolError: PAIR_INVITATION_EXPIRED if the invitation has already expired
                [PAIR-16] [PAIR-17]; INTERNAL_ERROR if called twice.
        """
        exp = self.invitation.expires_at
        if self.role is C.Role.INVITER and exp is None:
            exp = now + DEFAULT_EXPIRY_MS
        if exp is not None and now >= exp:
            raise LocalProtocolError(ErrorCode.PAIR_INVITATION_EXPIRED, "invitation expired")
        if self._state is not S.IDLE:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "start() called twice")
        self._expires_at = exp if self.role is C.Role.INVITER else None
        self._dispatch(I.START, now, None)
        return self.data_to_send()

    def receive_data(self, data: bytes, now: int) -> None:
        """Feed bytes from the Tor stream; complete frames are processed at once.  ``b""`` is
        end of stream (h11 convention), the same as :meth:`connection_lost`.

        Raises:
            RemoteProtocolError: (incl. DecodeError) after queueing ERROR and entering FAILED.
        """
        if not data:
            self.connection_lost(now)
            return
        if self._closed:
            return
        self._reader.feed(data)
        while not self._closed:
            head = self._reader.head_type
            try:
                frame = self._reader.next_frame()
            except DecodeError as exc:
                if self._state not in _TERMINAL and self._state is not S.IDLE:
                    # never answer a broken ERROR frame with one (p4-00 §7.2) [PAIR-46]
                    self._fail(exc.code, exc.message, send=head != FrameType.ERROR)
                self._closed = True
                raise
            if frame is None:
                return
            self.receive_frame(frame, now)

    def receive_frame(self, frame: Frame, now: int) -> None:
        """Process one decoded frame (its header and flags were checked by the framing codec)."""
        if self._state is S.IDLE:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "call start() first")
        if self._closed:
            return
        if frame.ignorable or frame.type in (FrameType.PADDING, FrameType.PONG):
            return  # [PAIR-45]
        if frame.type == FrameType.PING:
            if self._state not in _TERMINAL:
                self._out.append(Frame(FrameType.PONG, 0, frame.body))
            return
        try:
            inp = _FRAME_INPUTS.get(FrameType(frame.type))
        except ValueError:
            inp = None
        if inp is None:  # a known type that has no business in pairing (DATA, RV_*, ...)
            if self._state in _TERMINAL:
                return
            self._unexpected(f"frame type 0x{frame.type:02x}")
        else:
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

    def _dispatch(self, inp: Input, now: int, frame: Frame | None) -> None:
        row = self._table.get((self._state, inp))
        if row is None:
            if self._state is S.IDLE or inp is I.START:
                raise LocalProtocolError(
                    ErrorCode.INTERNAL_ERROR, f"{inp.value} not allowed in {self._state.value}"
                )
            if frame is None or self._state in _TERMINAL:
                return  # unlisted timer/connection input, or a frame after the end [PAIR-44]
            self._unexpected(f"{inp.value} in {self._state.value}")
            return
        nxt, action = row
        try:
            decode = frame is not None and inp is not I.ERROR and self._state not in _TERMINAL
            msg = decode_message(frame) if decode and frame is not None else None
            getattr(self, "_do_" + action)(now, msg if msg is not None else frame)
        except RemoteProtocolError as exc:
            self._fail(exc.code, exc.message, send=True)
            raise
        except _Terminate as t:
            self._fail(t.code, t.reason, send=t.send)
            return
        self._state = nxt
        if nxt in _TERMINAL:
            self._forget()

    def _unexpected(self, what: str) -> None:
        exc = RemoteProtocolError(ErrorCode.UNEXPECTED_MESSAGE, what)
        self._fail(exc.code, exc.message, send=True)  # [PAIR-43]
        raise exc

    def _fail(self, code: ErrorCode, reason: str, *, send: bool) -> None:
        if send:
            self._out.append(Frame(FrameType.ERROR, 0, error_body(code, reason)))
            self._closed = True
        self._end_code = code
        self._events.append(PairingFailed(code, reason))
        self._state = S.FAILED
        self._forget()

    def _forget(self) -> None:
        self._w = self._scalar = self._keys = self._final = None
        self._th = b""

    def _draw(self) -> bytes:
        if callable(self._rng):
            data = self._rng(C.SCALAR_DRAW_LEN)
        else:
            if self._rng_pos >= len(self._rng):
                raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "rng exhausted")
            data = self._rng[self._rng_pos]
            self._rng_pos += 1
        return C.draw_scalar(bytes(data))

    def _send(self, *msgs: Message) -> None:
        self._out.extend(encode_message(m) for m in msgs)

    # --- actions (p4-02 §8.2) --------------------------------------------------------------

    def _do_nothing(self, now: int, msg: object) -> None:
        pass

    def _do_listen(self, now: int, msg: object) -> None:
        pass  # the expiry deadline was set by start()

    def _do_send_pake(self, now: int, msg: object) -> None:
        self._begin(now)
        self._send(PairPake(self._own_element))

    def _begin(self, now: int) -> None:
        self._w = C.derive_w(self.invitation.password, self.invitation.slot)
        self._scalar = self._draw()
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
        self._peer_element = peer_element

    def _do_answer_pake(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairPake)
        if self._expires_at is not None and now >= self._expires_at:
            raise _Terminate(ErrorCode.PAIR_INVITATION_EXPIRED, "invitation expired", True)
        self._begin(now)  # from here on the invitation is consumed [PAIR-18]
        self._pake(msg.element)
        assert self._keys is not None
        self._send(PairPake(self._own_element), PairConfirm(self._keys.cb))

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
        self._check_mac(self._keys.cb, msg.mac)
        k_a, _ = self._identity_keys()
        sealed = C.seal_identity(k_a, self._th, self._signing_key, self.role)
        self._send(PairConfirm(self._keys.ca), PairIdentity(sealed))

    def _finish(self, accepter_pub: bytes, inviter_pub: bytes) -> None:
        assert self._keys is not None
        if accepter_pub == inviter_pub:
            raise RemoteProtocolError(ErrorCode.PAIR_IDENTITY_INVALID, "peer uses our identity")
        self._final = C.final_keys(self._keys.ke, self._th, accepter_pub, inviter_pub)

    def _paired(self) -> None:
        assert self._final is not None
        self._events.append(Paired(self._peer_pub, self._final.pair_root_key, self._final.sas))

    def _do_take_identity_send_own(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairIdentity)
        k_a, k_b = self._identity_keys()
        self._peer_pub = C.open_identity(k_a, self._th, msg.ciphertext, C.Role.ACCEPTER)
        own_pub = bytes(self._signing_key.verify_key)
        self._finish(self._peer_pub, own_pub)
        self._send(PairIdentity(C.seal_identity(k_b, self._th, self._signing_key, self.role)))

    def _do_take_identity_send_done(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairIdentity)
        _, k_b = self._identity_keys()
        self._peer_pub = C.open_identity(k_b, self._th, msg.ciphertext, C.Role.INVITER)
        self._finish(bytes(self._signing_key.verify_key), self._peer_pub)
        assert self._final is not None
        self._send(PairDone(C.done_mac(self._final.k_done, self._final.th2)))
        self._paired()

    def _do_check_done(self, now: int, msg: object) -> None:
        assert isinstance(msg, PairDone) and self._final is not None
        self._check_mac(C.done_mac(self._final.k_done, self._final.th2), msg.mac)
        self._paired()

    def _do_expire(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.PAIR_INVITATION_EXPIRED, "invitation expired", False)

    def _do_time_out(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.TIMEOUT, "pairing timed out", True)

    def _do_lost(self, now: int, msg: object) -> None:
        raise _Terminate(ErrorCode.PROTOCOL_VIOLATION, "connection lost during pairing", False)

    def _do_peer_error(self, now: int, msg: object) -> None:
        assert isinstance(msg, Frame)
        code, reason = _parse_error_body(msg.body)
        try:
            ecode = ErrorCode(code)
        except ValueError:
            ecode, reason = ErrorCode.PROTOCOL_VIOLATION, f"peer error 0x{code:04x}: {reason}"
        self._closed = True  # the peer closed this stream [PAIR-46]
        raise _Terminate(ecode, reason, False)

    def _do_refuse_burnt(self, now: int, msg: object) -> None:
        expired = self._end_code is ErrorCode.PAIR_INVITATION_EXPIRED
        code = ErrorCode.PAIR_INVITATION_EXPIRED if expired else ErrorCode.PAIR_INVITATION_BURNT
        self._out.append(Frame(FrameType.ERROR, 0, error_body(code, "invitation used")))
        self._closed = True
