"""Signalling for one paired peer: the kept-open onion stream and in-band RV frames
(p4-03 §8.6, §8.7 RDV-40, RDV-57; p4-04 §5.3, §5.4).

Theory of operation
-------------------
A :class:`Signaller` keeps *one* authenticated onion stream to the peer open for as long as the
link runs (ARCHITECTURE decision 4), and drives that stream's
:class:`~p4ref.rendezvous.RendezvousMachine` for its whole life, not just for one exchange:

- *Publishing and dialing.*  Unless this device is dial-only it publishes its derived onion for
  the pair and accepts streams on it.  When to dial is the pure
  :class:`~p4ref.reconnect.ReconnectPolicy` of p4-03 §8.8 (:attr:`Signaller.policy`), fed
  with the stream events (an authenticated incoming stream, our dial's outcome, the current
  stream's end), :meth:`network_changed` and :meth:`app_request`: the LOW peer and a dial-only
  one (SES-15) dial at once, HIGH after ``follower_delay`` unless a stream exists (RDV-37); a
  peer configured as dial-only is never dialed (it publishes nothing); failed dials back off
  with jitter, reset by a network change, an application request or an incoming stream; a
  dial without an outcome after 2 s gets a hedged sibling; after repeated moves the onions are
  re-published; a tor this process launched is nudged first (``DisableNetwork`` 1 → 0) and the
  streams dropped, else every stream is probed with a PING (RDV-63).  Every dial opens its
  stream on a circuit of its own (RDV-79): tor would otherwise attach it to the rendezvous
  circuit of an earlier stream to the same onion, which is dead once the peer moved.  Not
  carried out here: RefetchDescriptor (``TorDriver.open_stream`` refetches by itself) and the
  policy's generation scheduling (the link keeps its own).
- *Two authenticated streams* (RDV-39).  When something arrived on the older one within the
  last second, both live (dial glare): the one the LOW peer dialed is kept and the other is
  closed with BYE RDV_DUPLICATE_STREAM — when the closed one carries the session connection,
  only once the kept one's has opened (make-before-break, p4-04 SES-78).  Otherwise the older
  one may have died with a network change that this device did not see (the peer moved): the
  newer one becomes the kept stream at once (its session connection opens, OFFERs bind to it)
  while a PING probes the older; a PONG within ``PONG_TIMEOUT`` applies the LOW rule, silence
  closes the older one.  A stream the peer refused as a duplicate while this side has no other
  one (the peer kept a stream this side already dropped, e.g. after a move) makes this side
  dial again at once (RDV-81).
- *One signalling state per pair* (SES-56).  Every stream machine shares the process's
  :class:`~p4ref.io.signal.PeerReplay` of the pair (nonce cache RDV-27, high-water mark RDV-52,
  persisted in the session store), and an OFFER or ANSWER carried in-band (SES_SIGNAL on the
  current data channel) is fed to the machine of the open stream with :meth:`receive_inband`,
  which checks it exactly as if it had arrived on the stream (signature, epoch, replay cache,
  ``stream_nonce``, generation; SES-13, RDV-57).  Without an open stream a carried frame is
  refused (RDV_REPLAY) and in-band signalling is impossible (RDV-57).
- *Routing outgoing OFFER/ANSWER.*  :meth:`offer` and :meth:`answer` take an ``inband``
  callable: when it accepts the encoded frame (the link has an active data channel), the frame
  travels in-band; otherwise on the stream.  Everything else the machine queues (HELLOs, PONGs,
  ERROR) goes on the stream.  The mark is advanced durably before an OFFER is sent or an
  OFFER is answered (RDV-52), so a replayed OFFER is stale after a restart.

Events (:class:`~p4ref.rendezvous.OfferReceived`, :class:`~p4ref.rendezvous.AnswerReceived`,
failures) are put, with the stream they came from, on :attr:`events`; the link consumes them
in one task, so answering (which awaits aiortc) is serialised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from ..errors import DecodeError, ErrorCode, LocalProtocolError, P4Error
from ..framing import HEADER_LEN, Frame, FrameType, Path, decode_frame, encode_frame, ping_body
from ..io.pump import unix_ms
from ..io.signal import ONION_PORT, PeerReplay
from ..io.tor import OnionHandle, TorDriver
from ..reconnect import (
    AbandonDial,
    Action,
    AppRequest,
    Dial,
    DialFailed,
    DialSucceeded,
    DropStreams,
    IncomingStream,
    NetworkChanged,
    NudgeTor,
    ProbeStreams,
    ReconnectConfig,
    ReconnectPolicy,
    Republish,
    Stop,
    StreamClosed,
    Want,
)
from ..reconnect import Event as PolicyEvent
from ..rendezvous import (
    FOLLOWER_DELAY_MS,
    TERMINAL,
    AnswerReceived,
    ByeReceived,
    OfferReceived,
    PeerAuthenticated,
    PeerReset,
    RendezvousFailed,
    RendezvousMachine,
    State,
    derive_epoch_keys,
    epochs_to_dial,
    epochs_to_publish,
)
from ..session import HANDSHAKE_TIMEOUT_MS, PONG_TIMEOUT_MS

__all__ = ["SignalEvent", "Signaller", "Stream"]

log = logging.getLogger(__name__)

_READ = 16384
_READY = (State.READY, State.OFFER_SENT, State.OFFER_RECEIVED, State.ANSWERED)
#: Core frames that belong to the session connection on a stream once it exists (SES-71).
_CORE_TO_SESSION = frozenset({int(FrameType.PING), int(FrameType.PONG),
                              int(FrameType.PADDING)})

#: Consecutive failed dials after which the signaller counts as having given up for now (the
#: backoff is then ≥ 4 s and growing): the link reports ``offline`` (p4-04 SES-8, §11.3) while
#: it keeps dialing in the background.
OFFLINE_AFTER_FAILURES = 3

#: RDV-39: a stream on which something arrived this recently (seconds) is alive without a PING.
RECENT_RX = 1.0

#: ``inband(frame_bytes) -> bool``: carry one RV frame in a SES_SIGNAL; False: not possible now.
InBand = Callable[[bytes], bool]


@dataclass(eq=False)
class Stream:
    """One onion stream and its rendezvous machine; ``session`` is the session connection the
    link runs on it (p4-04 §5.1.1), ``hello_sent`` / ``hello_received`` the bodies of the first
    RV_HELLO each way (its channel bindings, SES-2)."""

    machine: RendezvousMachine
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    dialed_by_low: bool
    authenticated: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    session: int | None = None
    hello_sent: bytes | None = None
    hello_received: bytes | None = None
    buf: bytearray = field(default_factory=bytearray, repr=False)
    #: loop time of the last bytes received (RDV-39 asks whether the stream spoke lately)
    last_rx: float = 0.0
    #: the nonce of the RDV-39 PING that probes this stream, and its PONG's arrival
    probe: bytes | None = None
    probe_ok: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    #: the peer closed it with RV_BYE RDV_DUPLICATE_STREAM (it kept another stream, RDV-39)
    refused: bool = False
    #: the transport ended (EOF or a reset): what the machine reports next is that, not an ERROR
    eof: bool = False
    #: the session connection on it has opened (p4-04 SES-78 waits for it)
    session_up: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def write(self, data: bytes) -> None:
        if data and not self.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                self.writer.write(data)

    @property
    def ready(self) -> bool:
        return self.authenticated and self.machine.state in _READY


@dataclass(frozen=True, slots=True)
class SignalEvent:
    """A rendezvous event for the link, with the stream whose machine reported it."""

    event: OfferReceived | AnswerReceived | RendezvousFailed | ByeReceived | None
    stream: Stream
    inband: bool = False


class Signaller:
    """The signalling of one paired peer (see the module docstring)."""

    def __init__(self, tor: TorDriver, seed: bytes, my_pub: bytes, peer_pub: bytes,
                 pair_root_key: bytes, replay: PeerReplay, *, dial_only: bool = False,
                 peer_dial_only: bool = False,
                 follower_delay: float = FOLLOWER_DELAY_MS / 1000,
                 on_change: Callable[[], None] | None = None,
                 incarnation: Callable[[], bytes] | None = None,
                 peer_incarnation: Callable[[], bytes | None] | None = None) -> None:
        self._tor = tor
        self._seed = seed
        self.my_pub = my_pub
        self.peer_pub = peer_pub
        self._root = pair_root_key
        self.replay = replay
        self.is_low = my_pub < peer_pub
        self.dial_only = dial_only
        self.peer_dial_only = peer_dial_only
        self.follower_delay = follower_delay
        self.events: asyncio.Queue[SignalEvent] = asyncio.Queue()
        self.stream: Stream | None = None
        self._streams: set[Stream] = set()
        self._server: asyncio.Server | None = None
        self._handles: list[OnionHandle] = []
        self._changed = asyncio.Event()
        self._on_change = on_change
        self._incarnation = incarnation
        self._peer_incarnation = peer_incarnation
        self._tasks: set[asyncio.Task[None]] = set()  # finished ones leave (_spawn)
        self._closed = False
        self.dials = 0
        # who dials, backoff, resets, hedged dials, re-publishing: p4-03 §8.8's policy
        self.policy = ReconnectPolicy(
            "low" if self.is_low else "high", rng=os.urandom, dial_only=dial_only,
            peer_dial_only=peer_dial_only,
            tor_launched=bool(getattr(tor, "launched", False)),  # a stand-in: not launched
            config=ReconnectConfig(follower_delay_ms=int(follower_delay * 1000)))
        self._dial_tasks: set[asyncio.Task[None]] = set()
        self._nudging: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        # the session connection on the kept stream (p4-04 §5.1.1), set by the link
        self.on_stream_ready: Callable[[Stream], None] | None = None
        self.on_session_data: Callable[[Stream, bytes], None] | None = None
        self.on_stream_end: Callable[[Stream], None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        if not self.dial_only:
            self._server = await asyncio.start_server(self._on_incoming, "127.0.0.1", 0)
            port = self._server.sockets[0].getsockname()[1]
            for epoch in epochs_to_publish(unix_ms() / 1000):
                k = derive_epoch_keys(self._root, self.my_pub, self.peer_pub, epoch)
                self._handles.append(await self._tor.publish(
                    k.my_onion_seed, {ONION_PORT: port}, [k.peer_client_auth_pub]))
        self._wake = asyncio.Event()
        self._spawn(self._policy_loop())
        self._feed(Want())

    async def close(self) -> None:
        self._feed(Stop())
        self._closed = True
        for t in [*self._tasks, *self._dial_tasks]:
            t.cancel()
        for st in list(self._streams):
            await self._close_stream(st, ErrorCode.NO_ERROR)
        for handle in self._handles:
            with contextlib.suppress(P4Error, OSError):
                await self._tor.unpublish(handle)
        self._handles.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
        for t in [*self._tasks, *self._dial_tasks]:
            with contextlib.suppress(BaseException):
                await t

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task cancelled and awaited by :meth:`close`; it leaves the set when it ends."""
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    @property
    def failures(self) -> int:
        """Consecutive failed dials since the last reset (the policy's count)."""
        return self.policy.failures

    def network_changed(self) -> None:
        """The OS saw a network change: dial at once whatever the role, backoff reset,
        re-publish after repeated moves (p4-03 §8.8)."""
        self._feed(NetworkChanged())

    def app_request(self) -> None:
        """The application wants the peer now: a waiting dial happens at once."""
        self._feed(AppRequest())

    def path_died(self) -> None:
        """The session declared a data channel dead (p4-04 §10).  When nothing arrived on the
        kept stream for ``RECENT_RX`` it probably died with the same network event (the peer
        moved): probe it, and dial a new stream now if this peer may dial, rather than wait
        for the stream's own verdict; RDV-39 settles the two [RDV-80]."""
        st = self.stream
        if st is None or self._closed or self._wake is None \
                or asyncio.get_running_loop().time() - st.last_rx < RECENT_RX:
            return
        if st.probe is None:
            self._spawn(self._probe(st))
        if not self.peer_dial_only and not self._dial_tasks:
            log.info("the data channel died and the onion stream is quiet: dialing a new one")
            t = asyncio.create_task(self._dial_task(0))
            self._dial_tasks.add(t)
            t.add_done_callback(self._dial_tasks.discard)

    def _notify(self) -> None:
        self._changed.set()
        if self._on_change is not None:
            self._on_change()

    @property
    def ready(self) -> bool:
        return self.stream is not None and self.stream.ready

    @property
    def given_up(self) -> bool:
        """No signalling path and none expected soon: ``OFFLINE_AFTER_FAILURES`` dials in a row
        failed, or the peer is dial-only and has no stream open (only it can dial).  Dialing
        goes on with backoff; this only tells the link to report ``offline``."""
        if self.stream is not None:
            return False
        return self.failures >= OFFLINE_AFTER_FAILURES or self.peer_dial_only

    async def wait_ready(self) -> None:
        while not self.ready:
            self._changed.clear()
            await self._changed.wait()

    def generation(self) -> int:
        """``G`` of the current stream's machine, at least the persisted mark."""
        g = self.replay.last_generation()
        return max(g, self.stream.machine.generation) if self.stream is not None else g

    # ------------------------------------------------------------------ streams

    def _new_machine(self, dialer: bool) -> RendezvousMachine:
        inc = self._incarnation() if self._incarnation is not None else bytes(16)
        peer_inc = self._peer_incarnation() if self._peer_incarnation is not None else None
        m = RendezvousMachine(self._seed, self.peer_pub, dialer=dialer, rng=os.urandom,
                              last_generation=self.replay.last_generation(),
                              nonce_cache=self.replay.nonces, incarnation=inc,
                              peer_incarnation=peer_inc)  # RDV-59, RDV-61
        m.start(unix_ms())
        return m

    async def _on_incoming(self, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        if self._closed:
            writer.close()
            return
        st = Stream(self._new_machine(False), reader, writer, dialed_by_low=not self.is_low)
        self._run(st)

    def _run(self, st: Stream) -> None:
        self._streams.add(st)
        self._flush(st)
        st.task = asyncio.create_task(self._pump(st))

    async def _pump(self, st: Stream) -> None:
        m = st.machine
        try:
            while m.state not in TERMINAL:
                deadline = m.get_timer()
                wait = None if deadline is None else max(0.0, (deadline - unix_ms()) / 1000)
                try:
                    chunk = await asyncio.wait_for(st.reader.read(_READ), wait)
                except TimeoutError:
                    m.handle_timer(unix_ms())
                    self._drain(st, inband=False)
                    continue
                except (ConnectionError, OSError):
                    chunk = b""
                self._route(st, chunk)
        except asyncio.CancelledError:
            raise
        except Exception:  # never let one stream's driver bug kill the link
            log.exception("rendezvous stream failed")
        finally:
            self._streams.discard(st)
            st.writer.close()
            if self.stream is st:  # another authenticated stream (RDV-39) takes over
                alive = [x for x in self._streams
                         if x.authenticated and x.machine.state not in TERMINAL]
                self.stream = max(alive, key=lambda x: x.last_rx) if alive else None
                self.events.put_nowait(SignalEvent(None, st))
                if self.stream is None:
                    self._feed(StreamClosed())
                    if st.refused:  # the peer kept a stream we no longer have: dial now
                        log.info("our stream lost glare to one we no longer have: redialing")
                        self._feed(AppRequest())  # at once, whatever the role [RDV-81]
                elif self.stream.session is None and self.on_stream_ready is not None:
                    self.on_stream_ready(self.stream)
            if st.session is not None and self.on_stream_end is not None:
                self.on_stream_end(st)  # the session connection ends with its stream [SES-72]
            self._notify()

    def _route(self, st: Stream, chunk: bytes) -> None:
        """Split the stream into frames and hand each to its layer (p4-04 §5.1.1, SES-71):
        session types (0x30–0x3F) to the session connection on the stream; PING, PONG and
        PADDING to it too while it exists (else to the rendezvous machine); ERROR to both;
        everything else to the rendezvous machine, which judges it (RDV-75)."""
        m = st.machine
        if chunk:
            st.last_rx = asyncio.get_running_loop().time()
        if not chunk:  # end of stream: a partial frame goes to its layer, which reports it
            st.eof = True
            rest, st.buf = bytes(st.buf), bytearray()
            if rest and rest[0] == 1 and len(rest) > 1 and self._to_session(st, rest[1]):
                self._session(st, rest)
            elif rest:
                m.receive_data(rest, unix_ms())
            m.receive_data(b"", unix_ms())
            self._drain(st, inband=False)
            return
        st.buf += chunk
        while st.buf and m.state not in TERMINAL:
            if st.buf[0] != 1:  # not a version-1 frame: the rendezvous machine's error
                rest, st.buf = bytes(st.buf), bytearray()
                m.receive_data(rest, unix_ms())
                self._drain(st, inband=False)
                return
            if len(st.buf) < HEADER_LEN:
                return
            end = HEADER_LEN + int.from_bytes(st.buf[3:5], "big")
            if len(st.buf) < end:
                return
            frame, ftype = bytes(st.buf[:end]), st.buf[1]
            del st.buf[:end]
            if ftype == FrameType.PONG and st.probe is not None \
                    and frame[HEADER_LEN:] == ping_body(st.probe):
                st.probe_ok.set()  # the answer to our RDV-39 probe: this layer's own PING
                continue
            if ftype == FrameType.ERROR and st.session is not None:
                self._session(st, frame)  # the stream's one fate: both layers fail [SES-72]
            elif self._to_session(st, ftype):
                self._session(st, frame)
                continue
            elif 0x30 <= ftype <= 0x3F and st.authenticated:
                continue  # a stream without a session connection (being closed, RDV-39)
            if ftype == FrameType.RV_HELLO and st.hello_received is None:
                st.hello_received = frame[HEADER_LEN:]
            m.receive_data(frame, unix_ms())
            self._drain(st, inband=False)

    @staticmethod
    def _to_session(st: Stream, ftype: int) -> bool:
        if st.session is None:
            return False
        return 0x30 <= ftype <= 0x3F or ftype in _CORE_TO_SESSION

    def _session(self, st: Stream, frame: bytes) -> None:
        if self.on_session_data is not None:
            self.on_session_data(st, frame)

    def drop_stream(self, st: Stream) -> None:
        """Close ``st`` at once, without a BYE (its session connection failed and sent its
        ERROR there, SES-72); the policy then dials again as for any ended stream."""
        st.writer.close()

    def _drain(self, st: Stream, *, inband: bool) -> None:
        """Hand the machine's events to the link and write what it queued on the stream; a
        stream that became the kept one gets its session connection only after that, so its
        SES_HELLO follows the HELLO that completes the exchange [SES-70]."""
        ready = False
        while (ev := st.machine.next_event()) is not None:
            if isinstance(ev, PeerAuthenticated):
                st.authenticated = True
                self._adopt(st)
                ready = self.stream is st
            elif isinstance(ev, PeerReset):  # advisory (RDV-61); the session layer decides (§9)
                log.warning("the peer's signalling state went back: %s", ev)
            elif isinstance(ev, OfferReceived | AnswerReceived | RendezvousFailed
                            | ByeReceived):
                if isinstance(ev, RendezvousFailed) and ev.by_peer and st.eof:
                    # RDV-47 reports a bare end of stream as the peer's PROTOCOL_VIOLATION; in
                    # a log that reads like an attack when it is a closed socket or a dead path
                    log.info("rendezvous stream ended: closed by the peer or the network "
                             "(end of stream without RV_BYE)")
                elif isinstance(ev, RendezvousFailed | ByeReceived):
                    log.info("rendezvous stream ended: %s", ev)
                if isinstance(ev, ByeReceived) and ev.reason == ErrorCode.RDV_DUPLICATE_STREAM:
                    st.refused = True
                self.events.put_nowait(SignalEvent(ev, st, inband))
        self._flush(st)
        if ready and self.stream is st and st.session is None \
                and self.on_stream_ready is not None and st.machine.state not in TERMINAL:
            self.on_stream_ready(st)

    def _adopt(self, st: Stream) -> None:
        if st.dialed_by_low != self.is_low:  # the peer dialed it (ours report DialSucceeded)
            self._feed(IncomingStream())
        cur = self.stream
        if cur is None or cur.machine.state in TERMINAL or cur not in self._streams:
            self.stream = st
        elif cur is not st:  # two authenticated streams [RDV-39]
            if asyncio.get_running_loop().time() - cur.last_rx < RECENT_RX:
                self._keep_low_dialed(cur, st)  # both live: dial glare
            else:  # the older may be dead (the peer moved): the newer meanwhile, probe it
                self.stream = st
                if cur.probe is None:
                    self._spawn(self._probe(cur))
        self._notify()

    def _keep_low_dialed(self, older: Stream, newer: Stream) -> None:
        """Keep the stream the LOW peer dialed (the older when both or neither are), close the
        other with RV_BYE RDV_DUPLICATE_STREAM [RDV-39] — once the kept one carries a session
        connection when the other one carries it now (make-before-break, p4-04 SES-78)."""
        keep, drop = (newer, older) if newer.dialed_by_low and not older.dialed_by_low \
            else (older, newer)
        self.stream = keep
        if drop.session is not None and not keep.session_up.is_set():
            self._spawn(self._close_superseded(drop, keep))
            return
        with contextlib.suppress(LocalProtocolError):
            drop.machine.send_bye(int(ErrorCode.RDV_DUPLICATE_STREAM), unix_ms())
        self._flush(drop)
        drop.writer.close()

    def session_opened(self, st: Stream) -> None:
        """The link's session connection on ``st`` completed its handshake."""
        st.session_up.set()

    async def _close_superseded(self, drop: Stream, keep: Stream) -> None:
        """Close ``drop`` (RV_BYE RDV_DUPLICATE_STREAM) once the session connection on ``keep``
        has opened, ``keep`` ended, or ``HANDSHAKE_TIMEOUT`` passed; until then ``drop``'s
        session connection goes on carrying the session [SES-78]."""
        up = asyncio.ensure_future(keep.session_up.wait())
        waits: set[asyncio.Future[Any]] = {up}
        if keep.task is not None:
            waits.add(keep.task)
        try:
            await asyncio.wait(waits, timeout=HANDSHAKE_TIMEOUT_MS / 1000,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            up.cancel()
        if drop in self._streams and not self._closed and self.stream is not drop:
            # (when ``keep`` ended first, ``drop`` took over as the kept stream: it stays)
            await self._close_stream(drop, ErrorCode.RDV_DUPLICATE_STREAM)

    async def _probe(self, st: Stream) -> None:
        """PING ``st``.  A PONG within ``PONG_TIMEOUT`` keeps it, and when another stream became
        the kept one meanwhile the two are settled by the LOW rule [RDV-39]; silence closes it
        (RDV-39, and RDV-63's probe after a network change)."""
        st.probe_ok.clear()
        st.probe = os.urandom(8)
        st.write(encode_frame(Frame(FrameType.PING, 0, ping_body(st.probe)), Path.TOR))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(st.probe_ok.wait(), PONG_TIMEOUT_MS / 1000)
        st.probe = None
        if st not in self._streams or self._closed:
            return
        if st.probe_ok.is_set():
            cur = self.stream
            if cur is not None and cur is not st and cur in self._streams and st.authenticated:
                self._keep_low_dialed(st, cur)
                self._notify()
            return
        log.info("an onion stream did not answer a PING within %d ms: closed (RDV-39)",
                 PONG_TIMEOUT_MS)
        await self._close_stream(st, ErrorCode.TIMEOUT)

    def _flush(self, st: Stream, keep: Frame | None = None, inband: InBand | None = None) -> None:
        out = st.machine.frames_to_send()
        data = bytearray()
        for f in out:
            encoded = encode_frame(f, Path.TOR)
            if f.type == FrameType.RV_HELLO and st.hello_sent is None:
                st.hello_sent = f.body  # its SHA-256 is the stream's binding_local [SES-2]
            if f is keep and inband is not None and inband(encoded):
                continue
            data += encoded
        if data and not st.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                st.writer.write(bytes(data))

    async def goodbye(self, reason: int) -> None:
        """A signed RV_BYE with ``reason`` on every open stream, which is then closed."""
        for st in list(self._streams):
            await self._close_stream(st, reason)

    async def _close_stream(self, st: Stream, reason: int) -> None:
        with contextlib.suppress(LocalProtocolError):
            st.machine.send_bye(int(reason), unix_ms())
        self._flush(st)
        st.writer.close()
        if st.task is not None:
            st.task.cancel()
            with contextlib.suppress(BaseException):
                await st.task

    # ------------------------------------------------------------------ dialing

    def _now_ms(self) -> int:
        return int(asyncio.get_running_loop().time() * 1000)

    def _feed(self, event: PolicyEvent) -> None:
        if self._closed or self._wake is None:
            return
        self._act(self.policy.on_event(event, self._now_ms()))

    def _act(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dial):
                t = asyncio.create_task(self._dial_task(a.attempt))
                self._dial_tasks.add(t)
                t.add_done_callback(self._dial_tasks.discard)
            elif isinstance(a, AbandonDial):
                for t in list(self._dial_tasks):
                    t.cancel()
            elif isinstance(a, DropStreams):
                for st in list(self._streams):
                    self._spawn(self._close_stream(st, ErrorCode.NO_ERROR))
            elif isinstance(a, Republish):
                self._spawn(self._republish())
            elif isinstance(a, NudgeTor):  # before the dials and the re-publishing [RDV-63]
                self._nudging = self._spawn(self._nudge())
            elif isinstance(a, ProbeStreams):  # a tor we did not launch: probe, don't drop
                for st in list(self._streams):
                    if st.authenticated and st.probe is None:
                        self._spawn(self._probe(st))
            else:  # RefetchDescriptor (open_stream refetches itself), generations (the link)
                log.debug("reconnect policy: %s not carried out here", a)
        if self._wake is not None:
            self._wake.set()

    async def _policy_loop(self) -> None:
        """Fire the policy's timers (dials due, hedged dials)."""
        assert self._wake is not None
        while not self._closed:
            d = self.policy.next_deadline()
            wait = None if d is None else max(0.0, (d - self._now_ms()) / 1000)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if not self._closed:
                self._act(self.policy.on_timer(self._now_ms()))

    async def _nudge(self) -> None:
        try:
            await self._tor.nudge()
        except P4Error as exc:
            log.warning("tor not nudged after the network change: %s", exc)

    async def _after_nudge(self) -> None:
        """Wait for a nudge in progress: dials and re-publishing go through the new network
        only once tor has dropped the old connections [RDV-63]."""
        if self._nudging is not None and not self._nudging.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._nudging)

    async def _dial_task(self, attempt: int) -> None:
        await self._after_nudge()
        try:
            await self._dial()
        except P4Error as exc:
            log.info("dial %d failed (%s)", attempt + 1, exc)
            self._feed(DialFailed(int(exc.code)))
            self._notify()
            return
        self._feed(DialSucceeded())

    async def _republish(self) -> None:
        """Remove and re-add this device's onions (same keys) after repeated moves."""
        await self._after_nudge()
        if self.dial_only or self._server is None:
            return
        for handle in list(self._handles):
            with contextlib.suppress(P4Error, OSError):
                await self._tor.unpublish(handle)
        self._handles.clear()
        port = self._server.sockets[0].getsockname()[1]
        for epoch in epochs_to_publish(unix_ms() / 1000):
            k = derive_epoch_keys(self._root, self.my_pub, self.peer_pub, epoch)
            with contextlib.suppress(P4Error, OSError):
                self._handles.append(await self._tor.publish(
                    k.my_onion_seed, {ONION_PORT: port}, [k.peer_client_auth_pub]))

    async def _dial(self) -> None:
        last: P4Error | None = None
        for epoch in epochs_to_dial(unix_ms() / 1000):
            k = derive_epoch_keys(self._root, self.my_pub, self.peer_pub, epoch)
            await self._tor.add_client_auth(k.peer_onion_address, k.my_client_auth_priv)
            try:
                reader, writer = await self._tor.open_stream(  # a circuit of its own [RDV-79]
                    k.peer_onion_address, ONION_PORT, timeout=30.0, fresh_circuit=True)
            except P4Error as exc:
                last = exc
                continue
            self.dials += 1
            st = Stream(self._new_machine(True), reader, writer, dialed_by_low=self.is_low)
            self._run(st)
            deadline = asyncio.get_running_loop().time() + 60
            while not st.authenticated and st in self._streams:
                self._changed.clear()
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    await self._close_stream(st, ErrorCode.TIMEOUT)
                    raise P4Error(ErrorCode.TIMEOUT, "no HELLO exchange on the dialed stream")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
            if not st.authenticated:
                raise P4Error(ErrorCode.PROTOCOL_VIOLATION, "dialed stream ended unauthenticated")
            return
        raise last or P4Error(ErrorCode.TIMEOUT, "no epoch's onion was reachable")

    # ------------------------------------------------------------------ OFFER / ANSWER

    def offer(self, sdp: str, fingerprint: bytes, generation: int, last_rx: int,
              inband: InBand | None) -> None:
        """Send RV_OFFER for ``generation`` (durable mark first, RDV-52), in-band if possible."""
        st = self.stream
        if st is None or not st.ready:
            raise P4Error(ErrorCode.TIMEOUT, "no signalling path to the peer")
        self.replay.advance(generation)
        frame = st.machine.send_offer(sdp, fingerprint, generation, last_rx, unix_ms())
        self._flush(st, frame, inband)

    def resend_on_stream(self, frame_bytes: bytes) -> None:
        """Re-send an OFFER that went in-band on a path that then died, on the stream (the
        same signed bytes: same nonce, same ``stream_nonce``)."""
        st = self.stream
        if st is not None and not st.writer.is_closing():
            with contextlib.suppress(ConnectionError, OSError):
                st.writer.write(frame_bytes)

    def answer(self, st: Stream, sdp: str, fingerprint: bytes, last_rx: int,
               inband: InBand | None) -> None:
        """Answer the OFFER the stream's machine reported last."""
        frame = st.machine.send_answer(sdp, fingerprint, last_rx, unix_ms())
        self._flush(st, frame, inband)

    def receive_inband(self, frame_bytes: bytes) -> None:
        """An RV_OFFER / RV_ANSWER carried in a SES_SIGNAL: checked by the machine of the open
        stream as if it had arrived there [SES-13, RDV-57]."""
        st = self.stream
        if st is None or st.machine.state in TERMINAL:
            log.info("in-band RV frame without an open onion stream: refused (RDV_REPLAY)")
            return
        try:
            frame = decode_frame(frame_bytes, Path.TOR)
        except DecodeError as exc:
            log.info("in-band RV frame refused: %s", exc)
            return
        st.machine.receive_frame(frame, unix_ms())
        self._drain(st, inband=True)
