"""Events the session machine hands to its driver (p4-04 §11.3); frozen and slotted.

The event names and fields are the ones the spec's test-vector interface lists; ``name`` is the
string a vector's ``{"event": NAME}`` carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

__all__ = [
    "Acked",
    "ConnectionClosed",
    "ConnectionFailed",
    "ConnectionOpen",
    "Event",
    "MessageReceived",
    "ReconnectNeeded",
    "SessionReset",
    "SignalReceived",
    "Status",
]


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


@dataclass(frozen=True, slots=True)
class ConnectionOpen:
    """The handshake on ``conn`` completed; ``active`` when traffic now moves to it [SES-32]."""

    name: ClassVar[str] = "CONNECTION_OPEN"
    conn: int
    generation: int
    active: bool


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """Both ENDs were exchanged (or the drain timer ran out): close the transport [SES-34]."""

    name: ClassVar[str] = "CONNECTION_CLOSED"
    conn: int


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The connection failed with ``code``; ``by_peer`` when the peer sent the ERROR frame."""

    name: ClassVar[str] = "CONNECTION_FAILED"
    conn: int
    code: int
    by_peer: bool = False

    def __post_init__(self) -> None:
        _require(0 <= self.code <= 0xFFFF, "code is u16")


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """The next message of the peer's stream, in order, exactly once per machine lifetime; its
    message id is ``(inc, seq)``.

    The driver stores it in the inbox and then calls ``inbox_committed(seq)`` [SES-6].  Messages
    delivered before a :class:`SessionReset` and not yet committed are stored without
    ``inbox_committed`` (their ids name the old numbering) [SES-57]."""

    name: ClassVar[str] = "MESSAGE"
    seq: int
    payload: bytes
    inc: bytes = b""


@dataclass(frozen=True, slots=True)
class Acked:
    """The peer durably holds every message up to ``through``: drop them from the outbox."""

    name: ClassVar[str] = "ACKED"
    through: int


@dataclass(frozen=True, slots=True)
class SignalReceived:
    """An RV_OFFER / RV_ANSWER frame arrived in-band on ``conn``: hand it to rendezvous."""

    name: ClassVar[str] = "SIGNAL"
    conn: int
    frame: bytes


@dataclass(frozen=True, slots=True)
class ReconnectNeeded:
    """A new generation should be set up now; ``cause`` is ``dead`` (no open connection left),
    ``no_direct`` (only the onion stream is open) or ``network`` (network-changed input)."""

    name: ClassVar[str] = "RECONNECT_NEEDED"
    cause: str


@dataclass(frozen=True, slots=True)
class Status:
    """What the application sees: ``connected``, ``reconnecting`` or ``offline`` [SES-8]."""

    name: ClassVar[str] = "STATUS"
    status: str


@dataclass(frozen=True, slots=True)
class SessionReset:
    """Continuity was broken (§10): ``lost_in`` / ``lost_out`` are inclusive seq ranges that may
    never be delivered, ``renumbered`` how many outbox messages got new numbers (each may reach
    the peer a second time)."""

    name: ClassVar[str] = "SESSION_RESET"
    kind: str  # "restored" (this side), "peer_restored", "peer_new"
    lost_in: tuple[int, int] | None = None
    lost_out: tuple[int, int] | None = None
    renumbered: int = 0


Event: TypeAlias = (
    ConnectionOpen | ConnectionClosed | ConnectionFailed | MessageReceived | Acked
    | SignalReceived | ReconnectNeeded | Status | SessionReset
)
