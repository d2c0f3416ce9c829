"""The per-peer link: rendezvous + WebRTC generations + session machine + storage for one
paired peer (ARCHITECTURE decisions 5, 6, 8; p4-04 §4.2, §5, §8, §10).

Theory of operation
-------------------
The :class:`~p4ref.session.SessionMachine` decides everything (which connection carries
traffic, when a path is dead, when a new generation is needed, what to replay); this driver
moves bytes and time in and out of it and keeps the durability rules of p4-04 §4.2:

- *Send* (SES-5): :meth:`Link.submit` appends the payload to the outbox; only when that commit
  returned (``append_outbox(..., then=...)``, in seq order) is it given to ``machine.send``, so
  no frame ever carries a message that is not durable.  ``submit`` returns after the commit.
- *Receive* (SES-6, SES-38): every MESSAGE event is stored with ``store_inbox`` and handed to
  the application as soon as its row is planned, before the commit (p4-04 §8.7: until its
  confirm returns a message may come again, with the same id); once that commit returned
  ``machine.inbox_committed`` is called, so no SES_ACK covers a message that is not durable.
  An application that confirms before the row was taken into a commit saves the row: that
  commit carries only rx and the confirmation (SES-6: durably stored or durably consumed).
  Otherwise the row stays until the application calls :meth:`Link.confirm`; after a restart
  the unconfirmed rows are delivered again, first, with the same message id ``(inc, seq)``
  (SES-39).
- *State* (SES-7): ACKED → ``ack_outbox``; CONNECTION_OPEN and SESSION_RESET →
  ``save_session(machine.persistent_state())``; a new machine resumes from ``session_state``.
  Channel items that carry bytes of a file being sent are stored as references to the file
  (p4-06 FIL-39, :meth:`~p4ref.link.Channel.send_file_regions`); ``session_state`` rebuilds
  them from the file (:class:`~._channels.OutboxRefs`), or, when the file changed, replays a
  RESET of their channel with FILE_SOURCE_CHANGED instead and the channel is reset here too.
- *Timers*: one ``loop.call_at`` at ``machine.get_timer()``, re-armed after every step.

Generations (p4-04 §5.2, §8.5).  RECONNECT_NEEDED (a dead path, the network-changed input, a
forced change, the start) raises a *need*.  One generation is set up at a time: the side that
acts sends an RV_OFFER for ``G + 1`` (``G`` the pair's signalling high-water mark, SES-56),
the other answers; each side builds a fresh :class:`~p4ref.io.webrtc.Generation` (a fresh
RTCPeerConnection) and, once its data channel is open, calls ``machine.open`` with the DTLS
fingerprints as channel bindings.  The machine runs the in-band handshake and, when it
completes, moves traffic there and ends the old connection with SES_END (make-before-break);
the old RTCPeerConnection is closed in the background on CONNECTION_CLOSED.  The LOW peer (the
leader) offers at once; the HIGH peer waits ``high_delay`` after a dead path first, so the two
rarely cross, and when they do the rendezvous machine resolves the glare (p4-03 §8.5).

Signalling path (p4-04 §5.3).  While a data channel is active an OFFER travels in-band in
SES_SIGNAL and is checked by the stream machine of :mod:`._signalling`; otherwise it goes on the
kept-open onion stream, and so it does when the data channel has more than ``INBAND_BACKLOG``
queued (the frame would wait behind that bulk data).  The ANSWER takes the path its OFFER came
on (an OFFER on the stream says the peer has no working data channel, even while this side has
not noticed yet), under the same backlog rule.  An OFFER or ANSWER sent in-band on a path that
then died before the generation opened is re-sent on the stream (the same signed bytes; a peer
that already has them drops the copy, p4-03 RDV-69).  A gracefully ended connection is closed
only once its send queues drained, so nothing queued on it (an in-band OFFER) is dropped.

Tor as a data path (p4-04 §5.1, §5.1.1).  When the kept onion stream completes its RV_HELLO
exchange the signaller calls :meth:`Link._tor_open`, which opens a session connection on it
(generation 0, path ``tor``, connection id from :data:`TOR_CONN_BASE`, bound to the SHA-256 of
the two first RV_HELLO bodies); the signaller hands it the stream's session frames and its
end, and the link writes the machine's frames for it on the stream.  The machine makes it
active while no data channel is (SES-9, within TOR_WINDOW, SES-10) and asks for a generation;
the connection fails → the stream is closed, the stream ends → the connection closes
(SES-72).  :attr:`Link.path` and the ``path`` event say what carries the session (SES-73).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ..errors import ErrorCode, LocalProtocolError, P4Error
from ..framing import FrameType
from ..io.replay_store import ReplayStore
from ..io.session_store import SESSION_DB, Durability, Quota, SessionStore, StateSource
from ..io.signal import PeerReplay
from ..io.store import Profile
from ..io.tor import TorDriver
from ..io.webrtc import (
    DirectConfig,
    DirectPathError,
    Generation,
    IceServer,
    load_or_create_certificate,
)
from ..rendezvous import AnswerReceived, ByeReceived, OfferReceived
from ..session import (
    NO_INC,
    Acked,
    ConnectionClosed,
    ConnectionFailed,
    ConnectionOpen,
    Event,
    MessageReceived,
    ReconnectNeeded,
    SessionConfig,
    SessionMachine,
    SessionReset,
    SignalReceived,
    Status,
)
from ._channels import Channel, Channels, OutboxRefs
from ._signalling import SignalEvent, Signaller, Stream

__all__ = ["RECONNECT_CAUSES", "Delivery", "Link", "LinkConfig", "LinkEvent", "LinkStats"]

log = logging.getLogger(__name__)

#: An OFFER/ANSWER goes in-band only while the active data channel has less than this queued
#: (p4-04 §5.3 makes in-band a MAY; the fastest live route, ARCHITECTURE decision 6).
INBAND_BACKLOG = 256 * 1024

#: SES_MSG frames are handed to aiortc only while less than this is queued there unsent
#: (``Generation.backlog``); later ones wait in the link's own per-connection queue, which the
#: session's control frames (:data:`_JUMP`) may overtake: without it an ACK, PONG or in-band
#: OFFER waited behind up to ``dc_window`` (4 MiB) of bulk data in aiortc (measured on loopback:
#: 1.2–1.6 s behind 4 MiB, 50 ms behind 256 KiB; on a slow link it would pass PONG_TIMEOUT).
DC_QUEUE_LIMIT = 512 * 1024
#: Frames that may overtake held SES_MSG frames: each is independent of the message stream
#: (a cumulative ACK of the peer's stream, liveness, signalling); SES_END, the handshake and
#: ERROR keep their place.
_JUMP = frozenset({int(FrameType.SES_ACK), int(FrameType.PING), int(FrameType.PONG),
                   int(FrameType.SES_SIGNAL)})


#: Connection ids of session connections on onion streams (p4-04 §5.1.1): above every
#: generation number, which is a data channel's connection id.
TOR_CONN_BASE = 1 << 52


#: Open session stores by (event loop, file): every link of one profile in one process shares
#: its ``session.db`` (the store holds the file with an exclusive lock, so a second opener would
#: get PROFILE_LOCKED); the first opener's durability level and quota apply.
_STORES: dict[tuple[int, Path], tuple[asyncio.Future[SessionStore], list[int]]] = {}


async def _acquire_store(path: Path, synchronous: Durability, quota: Quota | None
                         ) -> SessionStore:
    loop = asyncio.get_running_loop()
    key = (id(loop), path.resolve())
    entry = _STORES.get(key)
    if entry is not None and entry[0].get_loop() is not loop:  # a loop that is gone
        entry = None
    if entry is None:
        fut: asyncio.Future[SessionStore] = asyncio.ensure_future(
            SessionStore.open(path, synchronous=synchronous, quota=quota))
        entry = (fut, [0])
        _STORES[key] = entry
    entry[1][0] += 1
    try:
        return await asyncio.shield(entry[0])
    except BaseException:
        entry[1][0] -= 1
        if _STORES.get(key) is entry and (entry[0].done() or entry[1][0] == 0):
            del _STORES[key]
        raise


async def _release_store(path: Path, store: SessionStore) -> None:
    key = (id(asyncio.get_running_loop()), path.resolve())
    entry = _STORES.get(key)
    if entry is not None and entry[0].done() and not entry[0].cancelled() \
            and entry[0].exception() is None and entry[0].result() is store:
        entry[1][0] -= 1
        if entry[1][0] > 0:
            await store.flush()
            return
        del _STORES[key]
    await store.close()


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How a :class:`Link` runs.

    ``host_addresses`` / ``ice_servers`` / ``open_timeout``: see
    :class:`~p4ref.io.webrtc.DirectConfig` (tests use ``("127.0.0.1",)``).
    ``synchronous`` / ``quota``: the session store's durability level and per-peer bounds.
    ``dial_only``: this device never publishes an onion and always dials (SES-15);
    ``peer_dial_only``: the peer is dial-only, so this side never dials and waits for it.
    ``high_delay``: seconds the HIGH peer waits before offering after a dead path (the LOW peer
    is the leader and offers at once).  ``follower_delay``: RDV-37's FOLLOWER_DELAY in seconds.
    ``channels``: every session message is a p4-05 channel item (use :meth:`Link.open_channel`
    and :meth:`Link.accept_channel`, not :meth:`Link.submit`/:meth:`Link.recv`);
    ``channel_window``: the per-channel receive window in bytes; a message up to half of it
    is delivered whole, a larger one in pieces.
    """

    host_addresses: tuple[str, ...] | None = None
    ice_servers: tuple[IceServer, ...] = ()
    open_timeout: float = 15.0
    synchronous: Durability = "FULL"
    quota: Quota | None = None
    session: SessionConfig | None = None
    dial_only: bool = False
    peer_dial_only: bool = False
    high_delay: float = 1.0
    follower_delay: float = 10.0
    channels: bool = False
    channel_window: int = 4 << 20


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message of the peer's stream, stored in the inbox (durable by the time its
    :meth:`Link.confirm` returns); ``(inc, seq)`` is its message id (p4-04 SES-39).  Delivered
    again after a restart until :meth:`Link.confirm` has returned."""

    inc: bytes
    seq: int
    payload: bytes

    @property
    def id(self) -> tuple[bytes, int]:
        return (self.inc, self.seq)


class _Row:
    """The callbacks of one received message's inbox row (``SessionStore.store_inbox``): one
    small object, not two closures and their cells per message, which would live until the
    commit and go through the cyclic GC's older generations (docs/performance.md)."""

    __slots__ = ("d", "link")

    def __init__(self, link: Link, d: Delivery) -> None:
        self.link = link
        self.d = d

    def planned(self) -> None:
        """The row is planned: a confirm may name it from now on."""
        if self.link._started:
            self.link._deliver(self.d)

    def committed(self, rx: int) -> None:
        self.link._row_committed(self.d.inc, rx)


class _Stored:
    """``then`` of one outbox row (``SessionStore.append_outbox``), as :class:`_Row`."""

    __slots__ = ("link", "payload")

    def __init__(self, link: Link, payload: bytes) -> None:
        self.link = link
        self.payload = payload

    def __call__(self, seq: int) -> None:
        self.link._stored(self.payload, seq)


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """What the link reports: ``status`` (``connected`` / ``reconnecting`` / ``offline``,
    SES-8), ``connection_open`` (``generation``, ``active``), ``connection_closed``,
    ``connection_failed`` (``generation``, ``code``, ``by_peer``; generation 0 is a session
    connection on the onion stream), ``generation_failed`` (the data channel never opened:
    ``code``), ``path`` (the path that carries the session changed: ``detail`` is
    ``datachannel``, ``tor`` — small messages only, a new generation is being set up — or
    ``none``; p4-03 RDV-68), ``session_reset`` (``detail``), ``channel_reset`` (at a start:
    a channel whose unacknowledged items named bytes of a file that changed was reset, ``code``
    FILE_SOURCE_CHANGED, ``detail`` which and why), ``bye`` (the peer
    closed a signalling stream with a signed RV_BYE: ``code`` its reason, e.g. RDV_UNKNOWN_PEER
    when the peer forgot this device; ``detail`` the code's name)."""

    kind: str
    status: str | None = None
    generation: int | None = None
    code: int | None = None
    by_peer: bool = False
    active: bool = False
    detail: str = ""


#: What :attr:`LinkStats.last_reconnect_cause` says: a dead path (liveness), the OS network
#: change input, no direct path in time, a forced change (tests, benchmarks), this process
#: (re)starting, or the peer's OFFER (the peer decided: its restart, its network change, …).
#: Seconds a STUN/TURN server that gave no candidate stays out of new generations (unless a
#: network change or a failed generation brings it back first): aioice waits 5 s for it each
#: time otherwise (issue 12: dead servers skipped, not waited for).
SILENT_SKIP_S = 300

RECONNECT_CAUSES = ("dead", "network", "no_direct", "forced", "restart", "peer")


@dataclass(frozen=True, slots=True)
class LinkStats:
    """What ``p4 status`` and the local API show about a link (:meth:`Link.stats`).

    ``path``: the active connection's path, ``direct`` (host, server- or peer-reflexive ICE
    candidates) or ``turn`` (a TURN relay candidate on either side), ``tor`` (the kept-open
    onion stream carries the session: small messages only, p4-04 §5.1), None without an
    active connection;
    ``candidates``: the selected ICE pair's candidate types ``(local, remote)`` when known.
    ``rtt_ms``: the round-trip time of the active connection's last answered session PING
    (p4-04 §10; any path), else SCTP's smoothed round-trip time on its data channel.
    ``bytes_sent`` / ``bytes_received``: session frame bytes on data channels since
    :meth:`Link.start`.
    ``outbox_messages``: accepted, not yet acknowledged by the peer.  ``last_reconnect_at``
    (unix seconds) and ``last_reconnect_cause`` (one of :data:`RECONNECT_CAUSES`): when the
    last generation became active and why it was set up."""

    path: str | None
    candidates: tuple[str, str] | None
    rtt_ms: float | None
    bytes_sent: int
    bytes_received: int
    outbox_messages: int
    last_reconnect_at: float | None
    last_reconnect_cause: str | None


@dataclass(eq=False)
class _Gen:
    """One generation this link set up, offered or answered."""

    number: int
    offerer: bool
    serial: int  # the need counter when it was started
    cause: str = "peer"  # why it was set up (RECONNECT_CAUSES)
    g: Generation | None = None
    opened: bool = False  # machine.open was called
    cancelled: bool = False
    early: list[bytes] = field(default_factory=list)
    inband_frame: bytes | None = None  # our OFFER or ANSWER, if it went in-band
    answered: bool = False
    held: collections.deque[bytes] = field(default_factory=collections.deque)  # not in aiortc
    held_bytes: int = 0
    pump: asyncio.Task[None] | None = None


class Link:
    """One paired peer's session over generations of direct data channels (module docstring).

    Build with :meth:`open` (from a profile) or the constructor, then ``await start()``.
    """

    def __init__(self, *, identity_seed: bytes, peer_pub: bytes, pair_root_key: bytes,
                 home: Path | str, tor: TorDriver, config: LinkConfig | None = None,
                 on_event: Callable[[LinkEvent], None] | None = None) -> None:
        self._seed = bytes(identity_seed)
        self.peer_pub = bytes(peer_pub)
        self._root = bytes(pair_root_key)
        self.home = Path(home)
        self._tor = tor
        self.config = config or LinkConfig()
        self._on_event = on_event
        self._subscribers: list[asyncio.Queue[LinkEvent]] = []
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()
        self._gens: dict[int, _Gen] = {}
        self._live: set[int] = set()  # connections the machine knows and that are not over
        self._onion: dict[int, Stream] = {}  # session connections on onion streams [SES-70]
        self._tor_next = TOR_CONN_BASE
        self._path = "none"  # what carries the session (LinkEvent "path", RDV-68)
        self._pending: _Gen | None = None
        self._need = False
        self._need_serial = 0
        self._need_cause = ""
        self._silent: dict[str, float] = {}  # STUN/TURN URL -> when it last gave no candidate
        self._fresh_hosts: tuple[str, ...] | None = None  # the new network's addresses [SES-75]
        self._failures = 0
        self._kick = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: int | None = None
        self._processing = False
        self._again = False
        self._process_pending = False
        self._status = "offline"
        self._given_up = False  # machine.give_up was called: offline while trying [SES-8]
        self._started = False
        self.generations_opened = 0
        self.bytes_sent = 0
        self.bytes_received = 0
        self._last_reconnect: tuple[float, str] | None = None
        self._resumed = False  # a session state existed at start (a restart, not a first run)
        self.store: SessionStore
        self.machine: SessionMachine
        self.channels: Channels | None = None
        self.signaller: Signaller
        self._direct: DirectConfig

    @classmethod
    def open(cls, home: Path | str, peer: str, *, tor: TorDriver,
             config: LinkConfig | None = None,
             on_event: Callable[[LinkEvent], None] | None = None) -> Link:
        """The link to ``peer`` (a name or device ID) of the profile at ``home``."""
        profile = Profile.open(home)
        rec = profile.peer(peer)
        return cls(identity_seed=profile.identity.seed, peer_pub=rec.identity_key,
                   pair_root_key=rec.pair_root_key, home=home, tor=tor, config=config,
                   on_event=on_event)

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Open the store, resume the session, publish/dial, and start setting up a
        generation.  Unconfirmed inbox messages are queued for :meth:`recv` first."""
        cfg = self.config
        self.store = await _acquire_store(self.home / SESSION_DB, cfg.synchronous, cfg.quota)
        refs = OutboxRefs()  # file-backed channel items are read back from their files
        try:
            state = await self.store.session_state(self.peer_pub, refs)
        finally:
            refs.close()
        self.machine = SessionMachine(self._seed, self.peer_pub, rng=os.urandom, state=state,
                                      config=cfg.session)
        self._resumed = state is not None
        if state is None:
            await self.store.create_session(self.peer_pub, self.machine.s.inc)
        if cfg.channels:
            from ..channels import ChannelConfig

            self.channels = Channels(self, ChannelConfig(window=cfg.channel_window))
            if refs.changed:
                self.channels.sources_changed(refs.changed)
                for chan in sorted(refs.changed):
                    self._emit(LinkEvent("channel_reset", code=int(ErrorCode.FILE_SOURCE_CHANGED),
                                         detail=f"channel {chan}: {refs.changed[chan]}"))
        elif refs.changed:
            log.warning("outbox items of a changed file replayed as channel RESETs: %s",
                        refs.changed)
        for row in await self.store.inbox(self.peer_pub):
            self._deliver(Delivery(row.inc, row.seq, row.payload))
        if self.channels is not None:
            self.channels.resync()
        self._direct = DirectConfig(
            ice_servers=cfg.ice_servers, host_addresses=cfg.host_addresses,
            certificate=load_or_create_certificate(self.home), open_timeout=cfg.open_timeout)
        marks = cast(ReplayStore, self.store.replay_marks())  # the same interface (RDV-52)
        replay = PeerReplay(self.peer_pub, marks)
        self.signaller = Signaller(
            self._tor, self._seed, self.machine.my_pub, self.peer_pub, self._root, replay,
            dial_only=cfg.dial_only, peer_dial_only=cfg.peer_dial_only,
            follower_delay=cfg.follower_delay, on_change=self._kick.set,
            incarnation=lambda: self.machine.s.inc,
            peer_incarnation=lambda: None if self.machine.s.peer_inc == NO_INC
            else self.machine.s.peer_inc)
        self.signaller.on_stream_ready = self._tor_open
        self.signaller.on_session_data = self._tor_data
        self.signaller.on_stream_end = self._tor_end
        self._started = True
        self._tasks.append(asyncio.create_task(self._signal_loop()))
        self._tasks.append(asyncio.create_task(self._reconnect_loop()))
        # before the rendezvous is published: a generation the peer sets up while it is (its
        # dial can come in before signaller.start returns) meets this need and ends it, rather
        # than being followed by a needless second one [SES-77]
        self._raise_need("start")
        await self.signaller.start()

    async def stop(self, *, forget: bool = False) -> None:
        """Close everything; what was accepted stays durable for the next :meth:`start`.
        ``forget``: the user forgot the peer: its session data is deleted instead
        (:meth:`SessionStore.forget_peer <p4ref.io.session_store.SessionStore.forget_peer>`)."""
        if not self._started:
            return
        self._started = False
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(BaseException):
                await t
        if self._timer is not None:
            self._timer.cancel()
        self._live.clear()
        self._onion.clear()
        for rec in list(self._gens.values()):
            if rec.g is not None:
                self._closing.append(rec.g.close())
        self._gens.clear()
        await self.signaller.close()
        if forget:
            await self.store.forget_peer(self.peer_pub)
        await _release_store(self.home / SESSION_DB, self.store)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
        self._set_status("offline")

    # ------------------------------------------------------------------ application API

    @property
    def status(self) -> str:
        return self._status

    async def submit(self, payload: bytes) -> int:
        """Accept one session message (0 … MAX_PAYLOAD bytes); returns its seq once it is
        durable in the outbox [SES-5]; SES_OUTBOX_FULL when the quota is reached."""
        return await asyncio.shield(self._append(bytes(payload)))

    def _append(self, payload: bytes, channel_state: bytes | StateSource | None = None,
                ref: str | None = None) -> asyncio.Future[int]:
        """Append to the outbox now (seq order = call order); the machine gets the message
        only once its row is durable [SES-5].  With ``ref`` (a file reference naming exactly
        ``payload``'s bytes, :mod:`p4ref.io.fileref`) the row stores the reference, not the
        bytes; the machine still gets ``payload``."""
        then = _Stored(self, payload)
        if ref is not None:
            return self.store.append_outbox(self.peer_pub, None, ref=ref, size=len(payload),
                                            then=then, channel_state=channel_state)
        return self.store.append_outbox(self.peer_pub, payload, then=then,
                                        channel_state=channel_state)

    def _confirm_row(self, row: tuple[bytes, int],
                     channel_state: bytes | StateSource | None = None
                     ) -> asyncio.Future[None]:
        """Confirm an inbox row for the channel layer: the future is done (None) once durable."""
        return self.store.confirm(self.peer_pub, row[0], row[1], channel_state=channel_state,
                                  report=False)

    def _deliver(self, d: Delivery) -> None:
        if self.channels is not None:
            self.channels.receive(d)
        else:
            self._deliveries.put_nowait(d)

    # --- channels (LinkConfig.channels) ---

    def _layer(self) -> Channels:
        if self.channels is None:
            raise LocalProtocolError(ErrorCode.UNEXPECTED_MESSAGE,
                                     "channels are off (LinkConfig.channels)")
        return self.channels

    async def open_channel(self, name: str) -> Channel:
        """Open a channel to the peer (p4-05); returns once its OPEN is durable."""
        return await self._layer().open(name)

    async def accept_channel(self) -> Channel:
        """The next channel the peer opened (after a restart, every live one again)."""
        return await self._layer().incoming.get()

    def channel(self, name: str, *, local: bool = True) -> Channel | None:
        """A live channel by name: one this side opened (``local``, e.g. to resume writing
        after a restart), or one the peer opened (names are not unique across the sides)."""
        return self._layer().channel(name, local)

    async def recv(self) -> Delivery:
        """The next message of the peer's stream, in order (stored in the inbox; see
        :class:`Delivery`)."""
        return await self._deliveries.get()

    def recv_nowait(self) -> Delivery | None:
        try:
            return self._deliveries.get_nowait()
        except asyncio.QueueEmpty:
            return None

    async def deliveries(self) -> AsyncIterator[Delivery]:
        while True:
            yield await self.recv()

    async def confirm(self, message: Delivery | tuple[bytes, int]) -> bool:
        """The application consumed the message: its inbox row is deleted (durably when this
        returns) and its quota released; False if it was not there."""
        inc, seq = message.id if isinstance(message, Delivery) else message
        return await asyncio.shield(self.store.confirm(self.peer_pub, inc, seq))

    async def events(self) -> AsyncIterator[LinkEvent]:
        """Every :class:`LinkEvent` from now on."""
        q: asyncio.Queue[LinkEvent] = asyncio.Queue()
        self._subscribers.append(q)
        try:
            while True:
                yield await q.get()
        finally:
            self._subscribers.remove(q)

    async def goodbye(self, code: int = ErrorCode.NO_ERROR) -> None:
        """Send a signed RV_BYE with ``code`` (e.g. RDV_UNKNOWN_PEER: this device forgot the
        peer) on every open signalling stream and close them (p4-03 §8.7); the link keeps
        running (it dials or accepts again as usual) until :meth:`stop`."""
        await self.signaller.goodbye(code)

    def force_generation(self) -> None:
        """Set up a new generation now (tests, benchmarks); traffic stays on the current one
        until the new one's handshake completes."""
        self.signaller.app_request()  # without a stream: dial now, backoff reset
        self._raise_need("forced")

    def network_changed(self, gained: Iterable[str] = ()) -> None:
        """The OS reported a network change (p4-04 SES-48, SES-49; p4-03 §8.8).  ``gained``:
        the local addresses it brought (:attr:`p4ref.io.netwatch.NetworkChanged.gained`); the
        next generations gather host candidates on those only, until one opens or fails, when
        no ``host_addresses`` are configured [SES-75]."""
        self._silent.clear()  # a server silent on the old network may answer on the new one
        fresh = tuple(sorted(set(gained)))
        self._fresh_hosts = fresh if fresh and self.config.host_addresses is None else None
        self.signaller.network_changed()
        self._failures = 0  # the generation backoff restarts (p4-03 RDV-67)
        self.machine.network_changed(self._now())
        self._process()

    def probe(self) -> None:
        """Ask for a liveness verdict on the active path within PROBE_BUSY + PONG_TIMEOUT."""
        self.machine.probe(self._now())
        self._process()

    def stats(self) -> LinkStats:
        """Path, RTT, byte counters, outbox size and the last reconnect (:class:`LinkStats`)."""
        a = self.machine.active if self._started else None
        rec = self._gens.get(a) if a is not None else None
        g = rec.g if rec is not None else None
        on_tor = a is not None and a in self._onion
        try:
            wm = self.store.watermarks(self.peer_pub)
            outbox = wm.tx_next - 1 - wm.acked
        except (AttributeError, P4Error):
            outbox = 0
        last = self._last_reconnect
        return LinkStats(path="tor" if on_tor else None if g is None else g.path_type,
                         candidates=None if g is None else g.candidate_types,
                         rtt_ms=self._rtt_ms(a, g),
                         bytes_sent=self.bytes_sent, bytes_received=self.bytes_received,
                         outbox_messages=outbox,
                         last_reconnect_at=None if last is None else last[0],
                         last_reconnect_cause=None if last is None else last[1])

    def _rtt_ms(self, active: int | None, g: Generation | None) -> float | None:
        ping = None if active is None else self.machine.rtt_ms(active)
        if ping is not None:
            return float(ping)
        return None if g is None else g.rtt_ms

    @property
    def active_generation(self) -> int | None:
        """The active connection's generation (0: the onion stream), None without one."""
        a = self.machine.active
        return None if a is None else 0 if a in self._onion else a

    @property
    def path(self) -> str:
        """What carries the session: ``datachannel``, ``tor`` or ``none`` (p4-03 RDV-68)."""
        return self._path

    # ------------------------------------------------------------------ the machine

    def _now(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def _emit(self, ev: LinkEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(ev)
            except Exception:
                log.exception("on_event failed")
        for q in self._subscribers:
            q.put_nowait(ev)

    def _set_status(self, status: str) -> None:
        if status != self._status:
            self._status = status
            self._emit(LinkEvent("status", status=status))

    def _update_status(self) -> None:
        st = self.machine.status
        if st != "connected" and not self._given_up and (self._need or self._pending is not None):
            st = "reconnecting"
        self._set_status(st)

    def _check_offline(self) -> None:
        """``offline`` while the signaller has given up for now (no signalling path, long
        backoff) and nothing is being set up: ``machine.give_up`` (p4-04 §11.3); back to
        ``reconnecting`` as soon as a signalling path exists again [SES-8]."""
        gave_up = (self._started and self.machine.active is None and self._pending is None
                   and self.signaller.given_up)
        if gave_up and not self._given_up:
            self._given_up = True
            log.info("no signalling path to the peer: offline (still trying)")
            self.machine.give_up(self._now())
            self._process()
        elif not gave_up and self._given_up:
            self._given_up = False
        self._update_status()

    def _process_soon(self) -> None:
        """:meth:`_process` once the current callbacks are done (a commit completes hundreds
        of appends in one go: their frames go out together)."""
        if not self._process_pending:
            self._process_pending = True
            asyncio.get_running_loop().call_soon(self._process_deferred)

    def _process_deferred(self) -> None:
        self._process_pending = False
        self._process()

    def _process(self) -> None:
        """Send what the machine queued, handle its events, re-arm its timer."""
        if self._processing:
            self._again = True
            return
        self._processing = True
        try:
            m = self.machine
            while True:
                self._again = False
                for conn, data in m.data_to_send():
                    rec = self._gens.get(conn)
                    if rec is not None and rec.g is not None and rec.g.state == "open":
                        self._send_frame(rec, rec.g, data)
                    elif (st := self._onion.get(conn)) is not None:
                        st.write(data)
                ev = m.next_event()
                if ev is not None:
                    self._handle(ev)
                    continue
                if not self._again:
                    break
        finally:
            self._processing = False
        self._arm_timer()
        self._update_path()

    def _update_path(self) -> None:
        a = self.machine.active if self._started else None
        path = "none" if a is None else "tor" if a in self._onion else "datachannel"
        if path != self._path:
            self._path = path
            log.info("the session is carried by: %s", path)
            self._emit(LinkEvent("path", detail=path))

    # --- the session connection on the kept onion stream (p4-04 §5.1.1) ---

    def _tor_open(self, st: Stream) -> None:
        """The kept stream completed its RV_HELLO exchange: open a session connection on it,
        generation 0, bound to the two first RV_HELLO bodies [SES-2, SES-70]."""
        if not self._started or st.hello_sent is None or st.hello_received is None:
            return
        conn = self._tor_next
        self._tor_next += 1
        try:
            self.machine.open(conn, 0, "tor", hashlib.sha256(st.hello_sent).digest(),
                              hashlib.sha256(st.hello_received).digest(), self._now())
        except LocalProtocolError as exc:
            log.info("no session connection on the onion stream: %s", exc)
            return
        st.session = conn
        self._onion[conn] = st
        self._live.add(conn)
        self._process()

    def _tor_data(self, st: Stream, data: bytes) -> None:
        conn = st.session
        if conn is not None and conn in self._live and self._started:
            self.machine.receive_data(conn, data, self._now())
            self._process()

    def _tor_end(self, st: Stream) -> None:
        conn = st.session
        if conn is not None and conn in self._live and self._started:
            self.machine.receive_data(conn, b"", self._now())
            self._process()

    def _send_frame(self, rec: _Gen, g: Generation, data: bytes) -> None:
        """Hand one frame to aiortc, or hold a SES_MSG while aiortc has DC_QUEUE_LIMIT queued;
        a control frame of :data:`_JUMP` overtakes held frames, any other keeps its place."""
        ftype = data[1] if len(data) > 1 else -1
        if (rec.held and ftype not in _JUMP) or (
                ftype == FrameType.SES_MSG and g.backlog >= DC_QUEUE_LIMIT):
            rec.held.append(data)
            rec.held_bytes += len(data)
            if rec.pump is None:
                rec.pump = asyncio.create_task(self._pump(rec, g))
            return
        self._hand(g, data)

    def _hand(self, g: Generation, data: bytes) -> None:
        with contextlib.suppress(P4Error):
            g.send(data)
            self.bytes_sent += len(data)

    async def _pump(self, rec: _Gen, g: Generation) -> None:
        """Move held frames into aiortc as its queue drains (``Generation.below``)."""
        try:
            while rec.held and g.state == "open" and self._gens.get(rec.number) is rec:
                if g.backlog >= DC_QUEUE_LIMIT:
                    with contextlib.suppress(P4Error):  # closed: the loop's test ends it
                        await g.below(DC_QUEUE_LIMIT)
                    continue
                data = rec.held.popleft()
                rec.held_bytes -= len(data)
                self._hand(g, data)
        finally:
            rec.pump = None

    def _flush_held(self, rec: _Gen) -> None:
        """An ended connection: what is held (its SES_END or ERROR last) goes to aiortc."""
        if rec.g is not None and rec.g.state == "open":
            while rec.held:
                self._hand(rec.g, rec.held.popleft())
        rec.held.clear()
        rec.held_bytes = 0

    def _arm_timer(self) -> None:
        """Arm the loop's timer for the machine's next deadline.  An armed timer that is not
        later than it is kept: firing early is harmless (``handle_timer`` fires only what is
        due, then this re-arms), and a deadline that moves later with every frame (liveness)
        then costs no timer per message: each cancelled handle stays in asyncio's heap and
        made every other timer of the process dearer."""
        d = self.machine.get_timer() if self._started else None
        if self._timer is not None and self._timer_at is not None and (
                d is None or self._timer_at <= d):
            return
        if d == self._timer_at and (d is None or self._timer is not None):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = d
        if d is not None:
            self._timer = asyncio.get_running_loop().call_at(d / 1000, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at or 0
        self._timer = None
        self._timer_at = None
        if not self._started:
            return
        self.machine.handle_timer(max(self._now(), at))
        self._process()

    def _handle(self, ev: Event) -> None:
        if isinstance(ev, MessageReceived):
            self._store_in(ev)
        elif isinstance(ev, Acked):
            self._track(self.store.ack_outbox(self.peer_pub, ev.through))
        elif isinstance(ev, SignalReceived):
            log.debug("SES_SIGNAL on connection %d", ev.conn)
            self.signaller.receive_inband(ev.frame)
        elif isinstance(ev, ConnectionOpen):
            self._save()
            rec = self._gens.get(ev.conn)
            if rec is not None and rec is self._pending:  # set up: the next one may start
                self._pending = None
                self._kick.set()
            if (st := self._onion.get(ev.conn)) is not None:
                self.signaller.session_opened(st)  # a stream it replaces may close [SES-78]
            if ev.active and ev.conn not in self._onion:
                self.generations_opened += 1
                self._fresh_hosts = None  # a data channel is up: every address again [SES-75]
                if rec is not None and (self.generations_opened > 1 or self._resumed):
                    self._last_reconnect = (time.time(), rec.cause)
                if self.channels is not None:
                    self.channels.resync()
                if rec is not None and (rec.serial >= self._need_serial
                                        or self._need_cause == "no_direct"):
                    self._need = False  # (any data channel ends a need for one [SES-10])
                    self._failures = 0
            self._emit(LinkEvent("connection_open", generation=ev.generation, active=ev.active))
            self._update_status()
        elif isinstance(ev, ConnectionClosed | ConnectionFailed):
            was_active = ev.conn in self._live
            p = self._pending
            if p is not None and p.number == ev.conn and p.opened:  # its handshake failed
                self._pending = None
            gen = 0 if ev.conn in self._onion else ev.conn
            self._drop_conn(ev.conn, graceful=isinstance(ev, ConnectionClosed))
            if isinstance(ev, ConnectionFailed):
                log.info("connection %d failed: 0x%04x%s", ev.conn, ev.code,
                         " (by peer)" if ev.by_peer else "")
                self._emit(LinkEvent("connection_failed", generation=gen, code=ev.code,
                                     by_peer=ev.by_peer))
                if gen and ev.code == ErrorCode.TIMEOUT and not ev.by_peer:
                    self.signaller.path_died()  # its onion stream may be dead too [RDV-80]
            else:
                self._emit(LinkEvent("connection_closed", generation=gen))
            if was_active and (self.machine.active is None
                               or self.machine.active in self._onion):
                self._resend_inband()  # no data channel left to carry it
            self._kick.set()
        elif isinstance(ev, ReconnectNeeded):
            self._raise_need(ev.cause)
        elif isinstance(ev, Status):
            self._update_status()
        elif isinstance(ev, SessionReset):
            self._save()
            self._emit(LinkEvent("session_reset", detail=repr(ev)))

    def _track(self, fut: asyncio.Future[object] | asyncio.Future[None]) -> None:
        def done(f: asyncio.Future[object] | asyncio.Future[None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("session store write failed: %r", f.exception())
        fut.add_done_callback(done)

    def _save(self) -> None:
        self._track(self.store.save_session(self.peer_pub, self.machine.persistent_state()))

    def _store_in(self, ev: MessageReceived) -> None:
        row = _Row(self, Delivery(ev.inc or self.machine.s.peer_inc, ev.seq, ev.payload))
        self.store.store_inbox(self.peer_pub, row.d.inc, ev.seq, ev.payload,
                               planned=row.planned, then=row.committed)

    def _stored(self, payload: bytes, seq: int) -> None:
        """An outbox row is durable: the machine gets its message [SES-5]."""
        got = self.machine.send(payload, self._now())
        if got != seq:  # only across a re-incarnation, which renumbers both (p4-04 §9)
            log.warning("message stored as seq %d is seq %d in the machine", seq, got)
        self._process_soon()  # once for the whole commit, not once per message

    def _row_committed(self, inc: bytes, rx: int) -> None:
        """An inbox row of ``inc`` is durable, and rx with it (SessionStore.store_inbox's
        ``then``): the machine may acknowledge up to it [SES-6]."""
        m = self.machine
        if not self._started or inc != m.s.peer_inc:
            return  # delivered before a SESSION_RESET: never acknowledged [SES-57]
        through = min(rx, m.rx_next - 1)
        if through > m.s.rx:
            with contextlib.suppress(LocalProtocolError):
                m.inbox_committed(through, self._now())
            self._process_soon()

    # ------------------------------------------------------------------ generations

    def _raise_need(self, cause: str) -> None:
        self._need = True
        self._need_serial += 1
        self._need_cause = cause
        self._kick.set()
        self._update_status()

    def _drop_conn(self, conn: int, *, graceful: bool = False) -> None:
        """The machine is done with ``conn``: close its RTCPeerConnection in the background —
        after a graceful end only once what this side queued has reached the peer (the peer's
        last frames were all received: its SES_END came after them)."""
        self._live.discard(conn)
        st = self._onion.pop(conn, None)
        if st is not None:
            if not graceful:  # its ERROR is written: the stream ends with it [SES-72]
                self.signaller.drop_stream(st)
            return
        rec = self._gens.pop(conn, None)
        if rec is not None and rec.g is not None:
            self._flush_held(rec)  # in order, as the machine queued them (an ERROR last)
            if graceful:
                self._closing.append(asyncio.create_task(rec.g.close_when_drained()))
            else:
                self._closing.append(rec.g.close())
            self._closing = [t for t in self._closing if not t.done()]

    def _abandon(self, rec: _Gen) -> None:
        rec.cancelled = True
        if self._pending is rec:
            self._pending = None
        if not rec.opened:
            self._gens.pop(rec.number, None)
            if rec.g is not None:
                self._closing.append(rec.g.close())

    def _inband(self, rec: _Gen | None = None) -> Callable[[bytes], bool]:
        def carry(frame: bytes) -> bool:
            m = self.machine
            a = m.active
            if a is None or a not in self._live:
                return False
            cur = self._gens.get(a)
            if cur is not None and cur.g is not None \
                    and cur.g.backlog + cur.held_bytes > INBAND_BACKLOG:
                return False  # it would wait behind bulk data: the stream is faster now
            try:
                m.send_signal(frame, self._now())
            except LocalProtocolError:
                return False
            log.debug("SES_SIGNAL sent on connection %d", a)
            if rec is not None:
                rec.inband_frame = frame
            self._process()
            return True
        return carry

    def _resend_inband(self) -> None:
        """The active path died while our OFFER (unanswered) or ANSWER (generation not open)
        of the pending generation was in-band: send the same bytes on the stream; a peer that
        already has them drops the copy (p4-03 RDV-69)."""
        p = self._pending
        if p is None or p.inband_frame is None or p.opened or (p.offerer and p.answered):
            return
        log.info("active path gone with generation %d's signalling in-band: re-sent on the"
                 " stream", p.number)
        self.signaller.resend_on_stream(p.inband_frame)
        p.inband_frame = None

    def _new_gen(self, number: int, offerer: bool) -> _Gen:
        cause = "peer"
        if self._need:
            cause = "restart" if self._need_cause == "start" else self._need_cause
        rec = _Gen(number, offerer, self._need_serial, cause)
        self._pending = rec
        return rec

    def _callbacks(self, number: int) -> dict[str, Callable[..., None]]:
        return {"on_message": functools.partial(self._on_dc_data, number),
                "on_closed": functools.partial(self._on_dc_data, number, b"")}

    def _on_dc_data(self, number: int, data: bytes) -> None:
        rec = self._gens.get(number)
        if rec is None or not self._started:
            return
        if not rec.opened:
            rec.early.append(data)
            return
        if number in self._live:
            self.bytes_received += len(data)
            self.machine.receive_data(number, data, self._now())
            if data:
                self._process_soon()  # one pass for the messages aiortc hands over together
            else:
                self._process()

    async def _reconnect_loop(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            self._check_offline()
            if not self._need or self._pending is not None or not self.signaller.ready:
                continue
            if not self.machine.is_low and self._need_cause in ("dead", "start", "no_direct"):
                await asyncio.sleep(self.config.high_delay)  # the leader offers first
                if not self._need or self._pending is not None or not self.signaller.ready:
                    continue
            try:
                await self._offer()
            except P4Error as exc:
                log.info("offer failed: %s", exc)
                self._retry_later()
            except Exception:  # e.g. OSError from aioice's gathering during a move: this loop
                log.exception("offer failed")  # is the only offerer, it must survive
                self._retry_later()

    def _direct_now(self) -> DirectConfig:
        """The configuration of the next generation: without the STUN/TURN URLs that gave no
        candidate lately (:meth:`_note_silent`), so that it does not wait for them again."""
        now = time.monotonic()
        self._silent = {u: t for u, t in self._silent.items() if now - t < SILENT_SKIP_S}
        direct = self._direct.without(self._silent)
        if self._fresh_hosts is not None:  # candidates on the new network only [SES-75]
            direct = dataclasses.replace(direct, host_addresses=self._fresh_hosts)
        return direct

    def _note_silent(self, g: Generation) -> None:
        for url in g.silent_servers:
            if url not in self._silent:
                log.warning("%s gave no candidate while gathering: left out of the next "
                            "generations until a network change, a failed generation or %d s",
                            url, SILENT_SKIP_S)
            self._silent[url] = time.monotonic()

    def _retry_later(self) -> None:
        self._failures += 1
        delay = min(0.25 * 2 ** self._failures, 10.0)
        asyncio.get_running_loop().call_later(delay, self._kick.set)

    async def _offer(self) -> None:
        number = max(self.signaller.generation(), self.machine.s.generation) + 1
        rec = self._new_gen(number, True)
        try:
            g = await Generation.offer(number, self._direct_now(), **self._callbacks(number))
        except BaseException:
            self._abandon(rec)
            raise
        rec.g = g
        self._note_silent(g)
        if rec.cancelled or number <= self.signaller.generation():
            self._abandon(rec)
            g.close()
            return
        self._gens[number] = rec
        try:
            self.signaller.offer(g.local_sdp, g.local_fingerprint, number,
                                 self.machine.rx_next - 1, self._inband(rec))
        except P4Error:
            self._abandon(rec)
            raise
        raced = rec.inband_frame is not None and self._need_cause == "network"
        if raced and rec.inband_frame is not None:  # the data channel may have died with the
            self.signaller.resend_on_stream(rec.inband_frame)  # change: both routes [SES-74]
        log.info("OFFER %d sent %s (%s)", number, "in-band and on the stream" if raced
                 else "in-band" if rec.inband_frame else "on the stream", self._need_cause)
        self._update_status()

    async def _signal_loop(self) -> None:
        while True:
            se = await self.signaller.events.get()
            try:
                await self._on_signal(se)
            except Exception:
                log.exception("signalling event %r", se.event)

    async def _on_signal(self, se: SignalEvent) -> None:
        ev = se.event
        p = self._pending
        if ev is None:  # the stream ended: an unanswered OFFER bound to it is void
            if p is not None and p.offerer and not p.answered:
                self._abandon(p)
                self._kick.set()
            return
        if isinstance(ev, ByeReceived):  # the peer said why it closed the stream
            log.info("the peer closed its signalling stream: BYE %s", peer_error(ev.reason))
            self._emit(LinkEvent("bye", code=ev.reason, by_peer=True, detail=peer_error(ev.reason)))
            return
        if isinstance(ev, OfferReceived):
            log.info("OFFER %d received %s%s", ev.generation,
                     "in-band" if se.inband else "on the stream", " (glare)" if ev.glare else "")
            if p is not None and not p.opened:
                self._abandon(p)  # lost glare, or superseded by the peer's newer OFFER
            self.signaller.replay.advance(ev.generation)  # durable before we answer [RDV-52]
            rec = self._new_gen(ev.generation, False)
            try:
                g = await Generation.answer(ev.generation, ev.sdp, ev.fingerprint,
                                            self._direct_now(),
                                            **self._callbacks(ev.generation))
            except P4Error as exc:
                log.info("OFFER %d unusable: %s", ev.generation, exc)
                self._abandon(rec)
                self._kick.set()
                return
            rec.g = g
            self._note_silent(g)
            if rec.cancelled:
                g.close()
                return
            self._gens[ev.generation] = rec
            try:
                # the ANSWER takes the OFFER's path: an OFFER on the stream means the peer has
                # no working data channel, whatever this side still believes about it
                self.signaller.answer(se.stream, g.local_sdp, g.local_fingerprint,
                                      self.machine.rx_next - 1,
                                      self._inband(rec) if se.inband else None)
            except (P4Error, LocalProtocolError) as exc:
                log.info("ANSWER %d not sent: %s", ev.generation, exc)
                self._abandon(rec)
                self._kick.set()
                return
            rec.answered = True
            log.info("ANSWER %d sent %s", ev.generation,
                     "in-band" if rec.inband_frame else "on the stream")
            self._tasks.append(asyncio.create_task(self._await_open(rec)))
        elif isinstance(ev, AnswerReceived):
            log.info("ANSWER %d received %s", ev.generation,
                     "in-band" if se.inband else "on the stream")
            if p is None or not p.offerer or p.g is None or p.number != ev.generation:
                return
            p.answered = True
            try:
                await p.g.accept_answer(ev.sdp, ev.fingerprint)
            except P4Error as exc:
                log.info("ANSWER %d unusable: %s", ev.generation, exc)
                self._abandon(p)
                self._retry_later()
                return
            self._tasks.append(asyncio.create_task(self._await_open(p)))

    async def _await_open(self, rec: _Gen) -> None:
        assert rec.g is not None
        try:
            b = await rec.g.opened()
        except DirectPathError as exc:
            if not rec.cancelled:
                self._emit(LinkEvent("generation_failed", generation=rec.number, code=exc.code,
                                     detail=exc.reason))
                self._silent.clear()  # perhaps a server skipped wrongly: ask them all again
                self._fresh_hosts = None  # and every local address [SES-75]
                self._abandon(rec)
                self._retry_later()
            return
        finally:
            self._tasks = [t for t in self._tasks if not t.done()]
        if rec.cancelled or not self._started:
            return
        m = self.machine
        try:
            m.open(rec.number, rec.number, "datachannel", b.local, b.remote, self._now())
        except LocalProtocolError as exc:
            log.info("generation %d not opened: %s", rec.number, exc)
            if self._pending is rec:
                self._pending = None
            self._gens.pop(rec.number, None)
            self._closing.append(rec.g.close())
            self._kick.set()
            return
        rec.opened = True
        self._live.add(rec.number)
        early, rec.early = rec.early, []
        self._process()
        for data in early:
            if rec.number in self._live:
                m.receive_data(rec.number, data, self._now())
                self._process()
        self._kick.set()


def peer_error(code: int) -> str:
    """A registry name for ``code`` (for logs and test output)."""
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"0x{code:04x}"
