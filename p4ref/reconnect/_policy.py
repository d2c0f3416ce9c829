"""The reconnect policy of one paired peer, sans-I/O (spec p4-03 §8.8).

See the package docstring (:mod:`p4ref.reconnect`) for the API and the rules.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypeAlias

from .._table import transition_markdown
from ..errors import ErrorCode, LocalProtocolError
from ..rendezvous._derive import Role

__all__ = [
    "TRANSITIONS",
    "AbandonDial",
    "Action",
    "AppRequest",
    "Dial",
    "DialFailed",
    "DialSucceeded",
    "DirectDown",
    "DirectFailed",
    "DirectUp",
    "DropStreams",
    "Event",
    "GenerationWanted",
    "IncomingStream",
    "Kind",
    "NetworkChanged",
    "NudgeTor",
    "Path",
    "PathChanged",
    "ProbeStreams",
    "ReconnectConfig",
    "ReconnectPolicy",
    "RefetchDescriptor",
    "Republish",
    "StartGeneration",
    "State",
    "Stop",
    "StreamClosed",
    "Want",
    "backoff_ms",
    "transition_table_markdown",
]

Rng = Callable[[int], bytes]
Path = Literal["datachannel", "tor", "none"]


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True, slots=True)
class ReconnectConfig:
    """The constants of p4-03 §8.8 (milliseconds).  The defaults are the normative values."""

    backoff_initial_ms: int = 1_000  # BACKOFF_INITIAL
    backoff_factor: int = 2  # BACKOFF_FACTOR
    backoff_max_ms: int = 60_000  # BACKOFF_MAX
    follower_delay_ms: int = 10_000  # FOLLOWER_DELAY
    direct_backoff_initial_ms: int = 2_000  # DIRECT_BACKOFF_INITIAL
    direct_backoff_max_ms: int = 300_000  # DIRECT_BACKOFF_MAX
    republish_after: int = 3  # REPUBLISH_AFTER: earlier moves in the window before re-publishing
    republish_window_ms: int = 600_000  # REPUBLISH_WINDOW
    hsfetch_interval_ms: int = 2_000  # HSFETCH_INTERVAL: fewest ms between two refetches
    hedge_after_ms: int = 2_000  # DIAL_HEDGE: a dial this long without an outcome gets a sibling
    max_parallel_dials: int = 2  # DIAL_PARALLEL: dials in flight at most (1: no hedging)
    move_window_ms: int = 10_000  # MOVE_WINDOW: a stream ending this soon after a change ended
    #                               with it (RDV-82)
    lost_stream_delay_ms: int = 2_000  # LOST_STREAM_DELAY: HIGH's wait after its kept stream
    #                                    ended, instead of FOLLOWER_DELAY (RDV-83)

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{name} must be an int >= 0")
        if self.backoff_factor < 1 or self.backoff_initial_ms < 1:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "backoff must grow from >= 1 ms")
        if self.max_parallel_dials < 1 or self.hedge_after_ms < 1:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "at least one dial, hedge >= 1 ms")


def backoff_ms(attempt: int, initial: int, factor: int, cap: int, r: int) -> int:
    """``d − floor(d · r / 131072)`` with ``d = min(initial · factor^attempt, cap)`` and ``r`` a
    16-bit value: a wait in ``(d/2, d]`` [RDV-38]."""
    d = cap if attempt >= 64 else min(initial * factor**attempt, cap)
    return d - d * r // 131072


# ------------------------------------------------------------------------------ events (inputs)


@dataclass(frozen=True, slots=True)
class Want:
    """The link wants a session with the peer (it starts, or the session asked for a stream)."""


@dataclass(frozen=True, slots=True)
class AppRequest:
    """The application asked to connect now ("retry now" button, app brought to the foreground):
    resets the backoff and dials at once if this peer may dial [RDV-64]."""


@dataclass(frozen=True, slots=True)
class Stop:
    """The link no longer wants a session (shutdown, peer forgotten, user went offline)."""


@dataclass(frozen=True, slots=True)
class NetworkChanged:
    """The OS reported a network change (:class:`p4ref.io.netwatch.NetworkChanged`) [RDV-63]."""


@dataclass(frozen=True, slots=True)
class DialSucceeded:
    """A dial this peer started produced an authenticated onion stream (PEER_AUTHENTICATED)."""


@dataclass(frozen=True, slots=True)
class DialFailed:
    """A dial this peer started failed before authentication; ``code`` is the error (e.g.
    TOR_ONION_UNREACHABLE, TIMEOUT, a rendezvous error), for the log only."""

    code: int = int(ErrorCode.TIMEOUT)


@dataclass(frozen=True, slots=True)
class IncomingStream:
    """A stream the peer dialed was authenticated (PEER_AUTHENTICATED as acceptor) [RDV-64]."""


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The last authenticated onion stream to the peer ended (BYE, ERROR, EOF, PING timeout)."""


@dataclass(frozen=True, slots=True)
class GenerationWanted:
    """The session machine asked for a new generation (p4-04 RECONNECT_NEEDED); ``cause`` is
    ``dead``, ``no_direct`` or ``network``."""

    cause: str = "dead"


@dataclass(frozen=True, slots=True)
class DirectUp:
    """A generation's data channel opened and its session handshake completed."""

    generation: int = 0


@dataclass(frozen=True, slots=True)
class DirectDown:
    """The open data-channel connection failed or closed (p4-04 §10)."""


@dataclass(frozen=True, slots=True)
class DirectFailed:
    """A generation was abandoned: its data channel did not open within CONNECT_TIMEOUT
    (p4-04 SES-55), or ICE failed."""


Event: TypeAlias = (
    Want | AppRequest | Stop | NetworkChanged | DialSucceeded | DialFailed | IncomingStream
    | StreamClosed | GenerationWanted | DirectUp | DirectDown | DirectFailed
)


# ------------------------------------------------------------------------------ actions (outputs)


@dataclass(frozen=True, slots=True)
class Dial:
    """Open a stream to the peer's onion now (epochs as RDV-14); report the outcome with
    :class:`DialSucceeded` / :class:`DialFailed`.  ``attempt`` counts failures since the last
    reset (0 = first try)."""

    attempt: int


@dataclass(frozen=True, slots=True)
class AbandonDial:
    """Give up the dial in flight (it runs over the old network); do not report its outcome."""


@dataclass(frozen=True, slots=True)
class NudgeTor:
    """Tell a tor that P⁴ launched to drop its dead connections: ``DisableNetwork 1`` then ``0``
    (:func:`p4ref.io.netwatch.nudge_tor`) [RDV-63]."""


@dataclass(frozen=True, slots=True)
class Republish:
    """Remove this peer's onion and add it again with the same key, then wait for the upload
    (fresh introduction points and descriptor) [RDV-66]."""


@dataclass(frozen=True, slots=True)
class RefetchDescriptor:
    """Refetch the peer's onion descriptor (``HSFETCH``) before the next dial [RDV-66]."""


@dataclass(frozen=True, slots=True)
class DropStreams:
    """Close (without waiting for a BYE to arrive) every onion stream that was authenticated
    before this network change: the nudge broke its circuits [RDV-63]."""


@dataclass(frozen=True, slots=True)
class ProbeStreams:
    """Send a PING on every kept-open onion stream; it is dead after PONG_TIMEOUT [RDV-63]."""


@dataclass(frozen=True, slots=True)
class StartGeneration:
    """Run p4-03 signalling for a new generation now, over the fastest live route (the data
    channel in-band, else the onion stream) [RDV-67]."""

    cause: str


@dataclass(frozen=True, slots=True)
class PathChanged:
    """The path carrying the session changed: ``datachannel``, ``tor`` (fallback: small
    messages only, TOR_WINDOW) or ``none``; tell the application [RDV-68]."""

    path: Path


Action: TypeAlias = (
    Dial | AbandonDial | NudgeTor | Republish | RefetchDescriptor | DropStreams | ProbeStreams
    | StartGeneration | PathChanged
)


# ------------------------------------------------------------------------------ the table


class State(StrEnum):
    IDLE = "IDLE"  # no session wanted
    WAIT_DIAL = "WAIT_DIAL"  # no stream; a dial is due at the deadline
    DIALING = "DIALING"  # one dial or more in flight (hedged, RDV-70)
    AWAIT_PEER = "AWAIT_PEER"  # no stream; the peer is dial-only, so it dials [RDV-65]
    CONNECTED = "CONNECTED"  # an authenticated onion stream exists (either direction)


class Kind(StrEnum):
    WANT = "want"
    APP_REQUEST = "app_request"
    STOP = "stop"
    NETWORK_CHANGED = "network_changed"
    DIAL_SUCCEEDED = "dial_succeeded"
    DIAL_FAILED = "dial_failed"
    INCOMING = "incoming_stream"
    STREAM_CLOSED = "stream_closed"
    TIMER = "dial timer"


_KIND: dict[type, Kind] = {
    Want: Kind.WANT,
    AppRequest: Kind.APP_REQUEST,
    Stop: Kind.STOP,
    NetworkChanged: Kind.NETWORK_CHANGED,
    DialSucceeded: Kind.DIAL_SUCCEEDED,
    DialFailed: Kind.DIAL_FAILED,
    IncomingStream: Kind.INCOMING,
    StreamClosed: Kind.STREAM_CLOSED,
}

S, K = State, Kind
#: ``{(state, kind): (next state, action)}``; every pair is present.  ``seek`` means "AWAIT_PEER
#: when the peer is dial-only, else WAIT_DIAL with the deadline the action set (now) or, if it
#: set none, now + the role's initial delay"; ``seek_if_nudged`` is ``seek`` for a tor P⁴
#: launched and ``same`` otherwise; ``same`` keeps the state.
TRANSITIONS: dict[tuple[State, Kind], tuple[State | str, str]] = {}
for _s in State:
    for _k in Kind:
        TRANSITIONS[(_s, _k)] = ("same", "ignore")
    TRANSITIONS[(_s, K.STOP)] = (S.IDLE, "stop")
    TRANSITIONS[(_s, K.INCOMING)] = (S.CONNECTED, "connected")
    TRANSITIONS[(_s, K.NETWORK_CHANGED)] = ("same", "moved")
TRANSITIONS.update({
    (S.IDLE, K.WANT): ("seek", "want"),
    (S.IDLE, K.APP_REQUEST): ("seek", "dial_now"),
    (S.IDLE, K.DIAL_SUCCEEDED): (S.CONNECTED, "connected"),
    (S.WAIT_DIAL, K.APP_REQUEST): ("seek", "dial_now"),
    (S.WAIT_DIAL, K.TIMER): (S.DIALING, "dial"),
    (S.WAIT_DIAL, K.DIAL_SUCCEEDED): (S.CONNECTED, "connected"),
    (S.WAIT_DIAL, K.NETWORK_CHANGED): ("seek", "moved_redial"),
    (S.DIALING, K.DIAL_SUCCEEDED): (S.CONNECTED, "connected"),
    (S.DIALING, K.DIAL_FAILED): ("WAIT_DIAL if none in flight", "dial_failed"),
    (S.DIALING, K.TIMER): (S.DIALING, "hedge"),
    (S.DIALING, K.NETWORK_CHANGED): ("seek", "moved_abandon"),
    (S.DIALING, K.STOP): (S.IDLE, "stop_abandon"),
    (S.DIALING, K.INCOMING): (S.CONNECTED, "connected_abandon"),
    (S.AWAIT_PEER, K.DIAL_SUCCEEDED): (S.CONNECTED, "connected"),
    (S.CONNECTED, K.STREAM_CLOSED): ("seek", "closed"),
    (S.CONNECTED, K.NETWORK_CHANGED): ("seek_if_nudged", "moved_connected"),
})
del _s, _k


def transition_table_markdown() -> str:
    """The table of p4-03 §8.8.4, generated from :data:`TRANSITIONS` (pairs that change nothing
    are left out)."""
    return transition_markdown(
        (state.value, kind.value,
         state.value if nxt == "same" else nxt.value if isinstance(nxt, State) else nxt, action)
        for (state, kind), (nxt, action) in TRANSITIONS.items() if action != "ignore")


# ------------------------------------------------------------------------------ the policy


class ReconnectPolicy:
    """When to dial, when to re-signal, what to do to tor; one per paired peer (see the package
    docstring)."""

    def __init__(
        self,
        role: Role | str,
        *,
        rng: Rng,
        dial_only: bool = False,
        peer_dial_only: bool = False,
        tor_launched: bool = True,
        config: ReconnectConfig | None = None,
    ) -> None:
        if dial_only and peer_dial_only:
            raise LocalProtocolError(
                ErrorCode.MESSAGE_INVALID, "two dial-only peers cannot reach each other"
            )
        self.role = Role(role)
        self.dial_only = dial_only
        self.peer_dial_only = peer_dial_only
        self.tor_launched = tor_launched
        self.config = config if config is not None else ReconnectConfig()
        self._rng = rng
        self.state = State.IDLE
        self._deadline: int | None = None  # dial deadline (WAIT_DIAL only)
        self._failures = 0  # consecutive failed dials since the last reset
        self._in_flight = 0  # dials started and not yet reported (DIALING only)
        self._hedge_at: int | None = None  # when another dial joins the ones in flight
        self._moves: deque[int] = deque()  # times of recent network changes
        self._last_refetch: int | None = None
        # the direct path (generations)
        self.direct = False
        self._gen_wanted: str | None = None  # cause of a pending generation request
        self._gen_failures = 0
        self._gen_not_before = 0
        self._path: Path = "none"

    # ---------------------------------------------------------------- queries

    @property
    def path(self) -> Path:
        """What carries the session now [RDV-68]."""
        return self._path

    @property
    def failures(self) -> int:
        return self._failures

    def may_dial(self) -> bool:
        """This peer dials when the peer publishes (it is not dial-only) [RDV-65]."""
        return not self.peer_dial_only

    def next_deadline(self) -> int | None:
        """The earliest time :meth:`on_timer` has something to do, or ``None``."""
        hedge = self._hedge_at if self.state is State.DIALING else None
        times = [t for t in (self._deadline, hedge, self._generation_deadline()) if t is not None]
        return min(times) if times else None

    def should_dial(self, now: int) -> bool:
        """True when a dial is due: WAIT_DIAL and its deadline has come, or DIALING and another
        (hedged) dial is due [RDV-70]."""
        due = self._deadline if self.state is State.WAIT_DIAL else (
            self._hedge_at if self.state is State.DIALING else None)
        return due is not None and now >= due

    # ---------------------------------------------------------------- inputs

    def on_event(self, event: Event, now: int) -> list[Action]:
        """Apply one event at ``now`` (ms, monotonic); returns the actions to take, in order.
        A dial that is due at once is part of the same result (no separate timer call)."""
        out: list[Action] = []
        if isinstance(event, GenerationWanted | DirectUp | DirectDown | DirectFailed):
            self._direct_event(event, now, out)
        else:
            if isinstance(event, NetworkChanged):
                self._network_changed(now, out)
            self._apply(_KIND[type(event)], event, now, out)
        self._settle(now, out)
        return out

    def on_timer(self, now: int) -> list[Action]:
        """Fire what is due at ``now`` (a dial, a delayed generation)."""
        out: list[Action] = []
        self._settle(now, out)
        return out

    # ---------------------------------------------------------------- internals

    def _apply(self, kind: Kind, event: Event | None, now: int, out: list[Action]) -> None:
        nxt, action = TRANSITIONS[(self.state, kind)]
        getattr(self, "_a_" + action)(now, out)
        if nxt == "seek" or (nxt == "seek_if_nudged" and self.tor_launched):
            self._seek(now)
        elif isinstance(nxt, State):
            self.state = nxt
        if self.state is not State.WAIT_DIAL:
            self._deadline = None
        if self.state is not State.DIALING:
            self._in_flight = 0
            self._hedge_at = None

    def _settle(self, now: int, out: list[Action]) -> None:
        if self.should_dial(now):
            self._apply(Kind.TIMER, None, now, out)
        gen = self._generation_deadline()
        if gen is not None and now >= gen and self._gen_wanted is not None:
            out.append(StartGeneration(self._gen_wanted))
            self._gen_wanted = None
        self._update_path(out)

    def _seek(self, now: int) -> None:
        """No stream: wait for the peer (it is dial-only) or schedule a dial [RDV-37], [RDV-65].
        An action that wants the dial at once has set ``self._deadline = now`` already."""
        if not self.may_dial():
            self.state = State.AWAIT_PEER
            self._deadline = None
            return
        if self._deadline is None:
            self._deadline = now + self._initial_delay()
        self.state = State.WAIT_DIAL

    def _initial_delay(self) -> int:
        """LOW (the leader) and a dial-only peer dial at once; HIGH waits FOLLOWER_DELAY so the
        LOW peer's dial wins the race [RDV-37], [RDV-65]."""
        if self.role is Role.LOW or self.dial_only:
            return 0
        return self.config.follower_delay_ms

    def _jitter(self, attempt: int, initial: int, cap: int) -> int:
        r = int.from_bytes(bytes(self._rng(2))[:2].rjust(2, b"\x00"), "big")
        return backoff_ms(attempt, initial, self.config.backoff_factor, cap, r)

    def _network_changed(self, now: int, out: list[Action]) -> None:
        """Tor first: nudge (a tor P⁴ launched), re-publish after repeated moves [RDV-63],
        [RDV-66]; then every backoff is reset [RDV-64]."""
        window = self.config.republish_window_ms
        while self._moves and now - self._moves[0] >= window:
            self._moves.popleft()
        earlier = len(self._moves)
        self._moves.append(now)
        if self.tor_launched:
            out.append(NudgeTor())
        if not self.dial_only and earlier >= self.config.republish_after:
            out.append(Republish())
        self._failures = 0
        self._last_refetch = None
        self._gen_failures = 0
        self._gen_not_before = now

    def _reset_now(self, now: int) -> None:
        self._failures = 0
        self._deadline = now

    # actions of the table (``now``, output list)

    def _a_ignore(self, now: int, out: list[Action]) -> None:
        pass

    def _a_want(self, now: int, out: list[Action]) -> None:
        self._deadline = None

    def _a_dial_now(self, now: int, out: list[Action]) -> None:
        self._reset_now(now)

    def _a_closed(self, now: int, out: list[Action]) -> None:
        """The last authenticated stream ended.  Within ``MOVE_WINDOW`` of a network change this
        peer saw, it ended with that change (a probe unanswered, a system tor dropping the
        circuits): dial at once, as RDV-64 says for the change itself [RDV-82].  Else LOW and a
        dial-only peer dial at once and HIGH after ``LOST_STREAM_DELAY``, not FOLLOWER_DELAY: the
        stream died at both ends at once, and LOW's dial fails while HIGH's own onion is down
        with it (HIGH's NAT rebound) [RDV-83]."""
        c = self.config
        if self._moves and now - self._moves[-1] <= c.move_window_ms:
            self._reset_now(now)
        else:
            self._deadline = now + min(self._initial_delay(), c.lost_stream_delay_ms)

    def _a_moved(self, now: int, out: list[Action]) -> None:
        pass  # IDLE or AWAIT_PEER: tor was nudged; nothing to dial

    def _a_moved_redial(self, now: int, out: list[Action]) -> None:
        """The peer that detects a change dials at once, whatever its role [RDV-64]."""
        self._reset_now(now)

    def _a_moved_abandon(self, now: int, out: list[Action]) -> None:
        out.append(AbandonDial())
        self._reset_now(now)

    def _a_moved_connected(self, now: int, out: list[Action]) -> None:
        """With a nudge every circuit is gone: drop the streams and dial at once.  Without one
        (a system tor) the streams may live: probe them [RDV-63]."""
        if self.tor_launched:
            out.append(DropStreams())
            self._reset_now(now)
        else:
            out.append(ProbeStreams())

    def _a_dial(self, now: int, out: list[Action]) -> None:
        out.append(Dial(self._failures))
        self._in_flight = 1
        self._schedule_hedge(now)

    def _schedule_hedge(self, now: int) -> None:
        c = self.config
        more = self._in_flight < c.max_parallel_dials
        self._hedge_at = now + c.hedge_after_ms if more else None

    def _refetch(self, now: int, out: list[Action]) -> None:
        """Refetch the peer's descriptor, at most every HSFETCH_INTERVAL [RDV-62]."""
        last = self._last_refetch
        if last is None or now - last >= self.config.hsfetch_interval_ms:
            self._last_refetch = now
            out.append(RefetchDescriptor())

    def _a_hedge(self, now: int, out: list[Action]) -> None:
        """A dial in flight for DIAL_HEDGE without an outcome gets a sibling on a fresh circuit,
        after a descriptor refetch: after the peer's move its first circuit often waits on a
        dead introduction, or on a descriptor the peer has replaced [RDV-70]."""
        if self._in_flight < self.config.max_parallel_dials:
            self._refetch(now, out)
            out.append(Dial(self._failures))
            self._in_flight += 1
        self._schedule_hedge(now)

    def _a_dial_failed(self, now: int, out: list[Action]) -> None:
        """Refetch the descriptor; when no dial is left in flight, back off [RDV-62], [RDV-66],
        [RDV-70]."""
        c = self.config
        self._refetch(now, out)
        self._in_flight = max(0, self._in_flight - 1)
        if self._in_flight:
            if self._hedge_at is None:
                self._schedule_hedge(now)
            return
        self._deadline = now + self._jitter(self._failures, c.backoff_initial_ms, c.backoff_max_ms)
        self._failures = min(self._failures + 1, 64)
        self.state = State.WAIT_DIAL

    def _a_connected(self, now: int, out: list[Action]) -> None:
        if self.state is State.DIALING and self._in_flight > 1:
            out.append(AbandonDial())  # the siblings still in flight [RDV-70]
        self._failures = 0
        self._last_refetch = None

    def _a_connected_abandon(self, now: int, out: list[Action]) -> None:
        """The peer's stream was authenticated while our dial was in flight: abandon ours (if it
        completes anyway, stream glare is RDV-39's)."""
        out.append(AbandonDial())
        self._a_connected(now, out)

    def _a_stop(self, now: int, out: list[Action]) -> None:
        self._gen_wanted = None
        self.direct = False

    def _a_stop_abandon(self, now: int, out: list[Action]) -> None:
        out.append(AbandonDial())
        self._a_stop(now, out)

    # the direct path --------------------------------------------------------------------

    def _generation_deadline(self) -> int | None:
        """A pending generation starts once a connection can carry its OFFER (a data channel or
        an onion stream) and its backoff has passed [RDV-67]."""
        if self._gen_wanted is None or self.state is State.IDLE:
            return None
        if not (self.direct or self.state is State.CONNECTED):
            return None
        return self._gen_not_before

    def _direct_event(self, event: Event, now: int, out: list[Action]) -> None:
        c = self.config
        if self.state is State.IDLE:
            return  # the link stopped: nothing to start, nothing to report
        if isinstance(event, GenerationWanted):
            self._gen_wanted = event.cause if event.cause else "dead"
            if event.cause == "network":
                self._gen_failures = 0
                self._gen_not_before = now
        elif isinstance(event, DirectUp):
            self.direct = True
            self._gen_failures = 0
            self._gen_not_before = now
            self._gen_wanted = None
        elif isinstance(event, DirectDown):
            self.direct = False
        elif isinstance(event, DirectFailed):
            wait = self._jitter(self._gen_failures, c.direct_backoff_initial_ms,
                                c.direct_backoff_max_ms)
            self._gen_failures = min(self._gen_failures + 1, 64)
            self._gen_not_before = now + wait
            self._gen_wanted = "no_direct"

    def _update_path(self, out: list[Action]) -> None:
        path: Path = (
            "datachannel" if self.direct
            else "tor" if self.state is State.CONNECTED
            else "none"
        )
        if path != self._path:
            self._path = path
            out.append(PathChanged(path))

