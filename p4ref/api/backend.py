"""What the local API needs from the running peer: the :class:`Backend` protocol.

The API server (:mod:`p4ref.api.server`) talks to the per-peer links only through this protocol,
so it runs unchanged on the real links of ``p4 up`` (``p4ref/link``) and on the in-memory
:class:`~p4ref.api.fake.FakeBackend` of the tests. The shape follows the link contract
(``channels-link.md``): a channel is opened or accepted by name on one peer's link; ``send`` returns
once the message is durable (in the outbox, committed); ``receive`` hands out messages with a
message id that stays the same across restarts until the message is confirmed; ``confirm`` is the
application's "consumed", which deletes the inbox row and releases the channel's credit; ``close``
half-closes our direction.

Peers are named by device ID (p4-02 §3.3) everywhere in this protocol; the server resolves the
names apps use. Errors are :class:`~p4ref.errors.P4Error` (registry codes) or
:class:`BackendError` (the few conditions the registry has no code for).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "Backend",
    "BackendError",
    "Channel",
    "LastReconnect",
    "LinkEvent",
    "Message",
    "PathType",
    "PeerInfo",
    "PeerStatus",
    "SendResult",
    "SessionStateName",
]

PathType = Literal["direct", "turn", "tor"]
SessionStateName = Literal["connected", "connecting", "offline", "failed"]
EventValue = str | int | float | bool | None


class BackendError(Exception):
    """A backend condition without a P4 registry code; ``code`` is an API error code name
    (``IDEMPOTENCY_CONFLICT``, ``CHANNEL_CLOSED``, ``BACKEND_UNAVAILABLE``)."""

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        self.message = message or code
        super().__init__(f"{code}: {self.message}")


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """A paired peer: its device ID (p4-02 §3.3) and the local name the user gave it."""

    device_id: str
    name: str


@dataclass(frozen=True, slots=True)
class LastReconnect:
    """When the session last moved to a new generation (unix time, seconds) and why, in words
    (``"network change"``, ``"liveness timeout"``, ``"peer restarted"``…)."""

    at: float
    reason: str


@dataclass(frozen=True, slots=True)
class PeerStatus:
    """One peer's link as ``p4 status`` shows it."""

    device_id: str
    name: str
    state: SessionStateName
    generation: int
    path: PathType | None  # None while no generation carries traffic
    rtt_ms: float | None
    bytes_sent: int
    bytes_received: int
    outbox_messages: int  # accepted by send, not yet acknowledged by the peer
    last_reconnect: LastReconnect | None


@dataclass(frozen=True, slots=True)
class Message:
    """One message received on a channel. ``id`` is unique within the channel and stable across
    restarts of either side until :meth:`Channel.confirm` is called with it."""

    id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SendResult:
    """``message_id`` of the durable message; ``replayed``: the idempotency key was seen before
    (for the same message), nothing new was queued."""

    message_id: str
    replayed: bool


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something that happened to a peer's link, for the event stream: ``kind`` is one of
    ``"state"`` (fields: state, generation, path, reason), ``"paired"``, ``"forgotten"`` (the
    peer list changed: the API starts or stops accepting channels of that peer), or a link
    event of its own (``connection_open``, ``connection_failed`` … with their fields)."""

    peer: str  # device ID
    kind: str
    fields: Mapping[str, EventValue] = field(default_factory=dict)


class Channel(Protocol):
    """One named channel with one peer (p4-05), as the link's asyncio object offers it."""

    @property
    def peer(self) -> str:
        """The peer's device ID."""
        ...

    @property
    def name(self) -> str: ...

    async def send(self, data: bytes, *, idempotency_key: str) -> SendResult:
        """Queue ``data`` as one message; return once it is committed to the outbox.

        A second call with the same ``idempotency_key`` and the same data (on the same channel)
        returns the first call's message id with ``replayed=True`` and queues nothing, also after
        a restart; with other data or another channel it raises ``BackendError
        ("IDEMPOTENCY_CONFLICT")``. May wait for channel credit (backpressure). Raises
        ``BackendError("CHANNEL_CLOSED")`` after :meth:`close`, ``P4Error(SES_OUTBOX_FULL)``
        when the outbox quota is reached."""
        ...

    async def receive(self) -> Message | None:
        """The next message from the peer, in order; None once the peer half-closed the channel
        and every message before that was returned. A message not confirmed is returned again
        (same id) after a restart."""
        ...

    async def confirm(self, message_id: str) -> None:
        """The application has consumed the message: delete it durably, release its credit."""
        ...

    async def close(self) -> None:
        """Half-close: no more data from us (the peer may go on sending)."""
        ...


class Backend(Protocol):
    """The running peer, as the local API uses it."""

    def peers(self) -> Sequence[PeerInfo]:
        """Every paired peer, in a stable order."""
        ...

    def status(self, peer: str) -> PeerStatus:
        """The link status of the peer with this device ID (P4Error PEER_UNKNOWN if none)."""
        ...

    async def open_channel(self, peer: str, name: str) -> Channel:
        """The channel ``name`` with ``peer``: the open one if there is one (whoever opened it),
        else a new one (OPEN queued durably). Raises P4Error PEER_UNKNOWN."""
        ...

    async def accept_channel(self, peer: str, prefix: str) -> Channel:
        """Wait for the next channel the peer opened whose name starts with ``prefix`` and that
        no earlier call in this process returned. After a restart every open channel, whoever
        opened it, is offered again. (The API gives each app a disjoint prefix, so every
        channel has at most one taker.)"""
        ...

    def events(self) -> AsyncIterator[LinkEvent]:
        """Link events as they happen (one consumer: the API server fans them out)."""
        ...

    def release(self, channel: Channel) -> None:
        """The API stops reading ``channel`` (its app was removed or changed scope): offer it
        to ``accept_channel`` again, and make ``receive`` hand out again, same ids, every
        message it returned that was not confirmed. Call only while no ``receive`` on it is
        pending."""
        ...
