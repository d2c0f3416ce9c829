"""What the channel multiplexer reports to its driver (p4-05 §9, §13); frozen and slotted.

``kind`` is the string a vector's ``{"event": NAME}`` carries; the fields are those of the spec's
event table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

__all__ = [
    "ChannelData",
    "ChannelEvent",
    "ChannelHalfClosed",
    "ChannelInfo",
    "ChannelOpened",
    "ChannelReset",
    "ChannelsFailed",
    "CreditGranted",
]


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(what)


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    """The peer opened channel ``chan`` [CHN-20]."""

    kind: ClassVar[str] = "CHANNEL_OPENED"
    chan: int
    name: str  # the channel name (§5.3)


@dataclass(frozen=True, slots=True)
class ChannelData:
    """Bytes of the peer's direction of ``chan``, first byte at ``offset`` [CHN-24].

    Delivered once per machine lifetime; after a restart, from the consumed offset again.
    ``end_of_message``: a message ends after the last byte of ``data``."""

    kind: ClassVar[str] = "CHANNEL_DATA"
    chan: int
    offset: int
    data: bytes
    end_of_message: bool

    def __post_init__(self) -> None:
        _require(len(self.data) >= 1, "DATA delivers at least one byte")

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class ChannelHalfClosed:
    """The peer closed its direction of ``chan`` at ``final`` bytes (CHN-34)."""

    kind: ClassVar[str] = "CHANNEL_HALF_CLOSED"
    chan: int
    final: int


@dataclass(frozen=True, slots=True)
class ChannelReset:
    """``chan`` was aborted: by the peer's RESET (``by_peer``), or because the peer broke a
    channel rule, in which case this side sent RESET with ``code`` (§8.2, CHN-37)."""

    kind: ClassVar[str] = "CHANNEL_RESET"
    chan: int
    code: int
    by_peer: bool

    def __post_init__(self) -> None:
        _require(0 <= self.code <= 0xFFFF, "code is u16")


@dataclass(frozen=True, slots=True)
class CreditGranted:
    """The peer raised the limit of this side's direction of ``chan``: ``credit`` bytes may be
    written now (``limit`` minus the bytes already written) [CHN-26]."""

    kind: ClassVar[str] = "CREDIT_GRANTED"
    chan: int
    credit: int
    limit: int


@dataclass(frozen=True, slots=True)
class ChannelsFailed:
    """The item stream is broken (§10.1, CHN-40): the multiplexer stopped."""

    kind: ClassVar[str] = "CHANNELS_FAILED"
    code: int


ChannelEvent: TypeAlias = (
    ChannelOpened | ChannelData | ChannelHalfClosed | ChannelReset | CreditGranted | ChannelsFailed
)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """One live channel as :meth:`ChannelMux.channels` reports it (§11.1).

    ``sent``/``send_limit``: bytes this side wrote and the peer's limit for them;
    ``received``/``consumed``/``recv_limit``: bytes delivered this lifetime, confirmed by the
    application, and the limit this side announced; ``final``: the peer's final offset once it
    closed its direction."""

    chan: int
    name: str
    state: str
    local: bool  # opened by this side
    sent: int
    send_limit: int
    received: int
    consumed: int
    recv_limit: int
    final: int | None

    @property
    def credit(self) -> int:
        return max(0, self.send_limit - self.sent)
