"""Events the rendezvous machine hands to its driver (p4-03 §9); frozen and slotted.

Every field the peer sent has already been decoded, signature-checked, epoch-checked,
replay-checked and generation-checked when an event is created; ``__post_init__`` re-checks the
shapes so a bug in the machine cannot leak a malformed value upward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ._codec import FINGERPRINT_LEN, MAX_SDP_BYTES
from ._derive import Role

__all__ = [
    "AnswerReceived",
    "Bye",
    "Event",
    "OfferReceived",
    "PeerAuthenticated",
    "PeerReset",
    "RendezvousFailed",
]


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


@dataclass(frozen=True, slots=True)
class PeerAuthenticated:
    """Both HELLOs checked: the stream is bound to ``peer_pub`` [RDV-26]."""

    peer_pub: bytes
    epoch: int
    my_role: Role
    #: The peer's announced ``last_generation`` and session incarnation [RDV-59], [RDV-60].
    peer_generation: int = 0
    peer_incarnation: bytes = bytes(16)

    def __post_init__(self) -> None:
        _require(len(self.peer_pub) == 32, "peer_pub is 32 bytes")
        _require(len(self.peer_incarnation) == 16, "peer_incarnation is 16 bytes")


@dataclass(frozen=True, slots=True)
class PeerReset:
    """The peer's HELLO shows its state went backwards or was replaced [RDV-61]: ``cause`` is
    ``generation`` (its ``last_generation`` is below the highest it had announced or signed
    before), ``incarnation`` (another incarnation than the stored one) or ``both``.  Reported,
    never refused: the stream stays authenticated; p4-04 §9 decides what was lost."""

    cause: str

    def __post_init__(self) -> None:
        _require(self.cause in ("generation", "incarnation", "both"), "cause")


@dataclass(frozen=True, slots=True)
class OfferReceived:
    """A valid OFFER for a new generation; answer it with ``send_answer``.  ``glare`` is true when
    this side (the follower) dropped its own OFFER of the same generation [RDV-35]."""

    generation: int
    sdp: str
    fingerprint: bytes
    last_rx: int
    glare: bool = False

    def __post_init__(self) -> None:
        _require(len(self.fingerprint) == FINGERPRINT_LEN, "fingerprint is 32 bytes [RDV-19]")
        _require(0 < len(self.sdp.encode("utf-8")) <= MAX_SDP_BYTES, "SDP size [RDV-18]")


@dataclass(frozen=True, slots=True)
class AnswerReceived:
    """The peer answered our OFFER: generation ``generation`` may start (hand off to L4)."""

    generation: int
    sdp: str
    fingerprint: bytes
    last_rx: int

    def __post_init__(self) -> None:
        _require(len(self.fingerprint) == FINGERPRINT_LEN, "fingerprint is 32 bytes [RDV-19]")


@dataclass(frozen=True, slots=True)
class Bye:
    """The peer closed the stream with a signed BYE; ``reason`` is a registry code."""

    reason: int

    def __post_init__(self) -> None:
        _require(0 <= self.reason <= 0xFFFF, "reason is u16 [RDV-22]")


@dataclass(frozen=True, slots=True)
class RendezvousFailed:
    """The stream failed.  ``by_peer``: the peer sent an ERROR frame; otherwise this side
    detected ``code`` (and queued an ERROR frame carrying it) [RDV-43]."""

    code: int  # an ErrorCode value; a peer may send a code this side does not know
    by_peer: bool = False

    def __post_init__(self) -> None:
        _require(0 <= self.code <= 0xFFFF, "code is u16")


Event: TypeAlias = (
    PeerAuthenticated | PeerReset | OfferReceived | AnswerReceived | Bye | RendezvousFailed
)
