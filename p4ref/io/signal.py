"""Rendezvous over Tor: publish a pair's derived onion, dial the peer's, run the signed exchange
(p4-03 §5–§9 on top of :mod:`p4ref.io.tor`).

Per pair and epoch each peer publishes its own derived onion service, authorising only the
peer's client-auth key, and dials the peer's onion with its own client-auth key (p4-03 §5).  On
a stream the :class:`~p4ref.rendezvous.RendezvousMachine` does everything that matters: HELLO
proofs, signatures, epochs, replay and generation checks.  This module only moves its bytes
(:func:`~p4ref.io.pump.pump`) and asks the caller for an SDP when one is needed, so it does not
depend on WebRTC: ``make_offer()`` / ``make_answer(offer)`` return ``(sdp, dtls_fingerprint)``.

Replay state is per peer, never per stream (p4-03 §8.2, §8.3): every machine of one
(device, peer) pair, dialed or accepted, shares one :class:`PeerReplay`, which holds the nonce
cache [RDV-27] and the high-water mark ``last_generation`` [RDV-52].  With a
:class:`~p4ref.io.replay_store.ReplayStore` the mark survives restarts: it is loaded into each
machine's ``last_generation`` and advanced on disk *before* an OFFER is answered or sent, so an
OFFER recorded before a crash is stale after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import SigningKey

from ..errors import ErrorCode, P4Error
from ..rendezvous import (
    AnswerReceived,
    ByeReceived,
    EpochKeys,
    NonceCache,
    OfferReceived,
    PeerAuthenticated,
    RendezvousFailed,
    RendezvousMachine,
    derive_epoch_keys,
    epochs_to_dial,
    epochs_to_publish,
)
from .pump import pump, unix_ms
from .replay_store import ReplayStore
from .tor import OnionHandle, TorDriver

__all__ = [
    "PairService",
    "PeerReplay",
    "SignalLink",
    "SignalOutcome",
    "answer_on_stream",
    "dial_and_offer",
    "offer_on_stream",
]

#: The virtual port of every derived onion service (p4-03 §5).
ONION_PORT = 80

MakeOffer = Callable[[], Awaitable[tuple[str, bytes]]]
MakeAnswer = Callable[[OfferReceived], Awaitable[tuple[str, bytes]]]


class PeerReplay:
    """The replay state of one peer, shared by every stream to or from it: the nonce cache
    [RDV-27] and ``last_generation``, persisted in ``store`` when one is given [RDV-52]."""

    def __init__(self, peer_pub: bytes, store: ReplayStore | None = None) -> None:
        self.peer_pub = bytes(peer_pub)
        self.store = store
        self.nonces = NonceCache()
        self._mark = store.last_generation(self.peer_pub) if store is not None else 0

    def last_generation(self) -> int:
        return self._mark

    def attach(self, store: ReplayStore) -> None:
        """Persist from now on: the mark becomes the larger of the stored and the in-memory
        one, written back."""
        if self.store is None:
            self.store = store
            self._mark = store.advance(self.peer_pub, self._mark)

    def advance(self, generation: int) -> None:
        """Record ``generation`` as used; durable before it returns when a store is set."""
        if self.store is not None:
            self._mark = self.store.advance(self.peer_pub, generation)
        else:
            self._mark = max(self._mark, generation)


_SHARED: dict[tuple[bytes, bytes], PeerReplay] = {}


def peer_replay(my_pub: bytes, peer_pub: bytes, store: ReplayStore | None = None) -> PeerReplay:
    """This process's one :class:`PeerReplay` for (``my_pub``, ``peer_pub``), shared by every
    stream to and from that peer; a ``store`` given by any caller is attached to it."""
    key = (bytes(my_pub), bytes(peer_pub))
    replay = _SHARED.get(key)
    if replay is None:
        replay = _SHARED[key] = PeerReplay(peer_pub, store)
    elif store is not None:
        replay.attach(store)
    return replay


@dataclass
class SignalOutcome:
    """What one completed exchange agreed: the generation and the peer's signed SDP."""

    generation: int
    peer_sdp: str
    peer_fingerprint: bytes
    peer_last_rx: int
    epoch: int
    seconds: float
    link: SignalLink = field(repr=False)


class SignalLink:
    """One authenticated onion stream with its rendezvous machine, kept for re-signalling.

    ARCHITECTURE decision 4: while a session lives the stream stays open, so a new generation
    costs one OFFER/ANSWER round trip over the existing circuit instead of a new circuit, an
    onion lookup and a HELLO exchange (p4-03 §8.7).
    """

    def __init__(self, machine: RendezvousMachine, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, epoch: int = 0,
                 replay: PeerReplay | None = None) -> None:
        self.machine = machine
        self._reader = reader
        self._writer = writer
        self.epoch = epoch
        self.replay = replay if replay is not None else PeerReplay(machine.peer_pub)

    async def _pump_until(self, want: type, timeout: float,
                          on_offer: MakeAnswer | None = None) -> Any:
        got: list[Any] = []
        m = self.machine

        async def on_event(ev: object) -> bool:
            if isinstance(ev, RendezvousFailed | ByeReceived):
                raise _failed(ev)
            if isinstance(ev, OfferReceived):
                self.replay.advance(ev.generation)  # durable before anything is answered
                if on_offer is not None:
                    sdp, fingerprint = await on_offer(ev)
                    m.send_answer(sdp, fingerprint, 0, unix_ms())
            if isinstance(ev, want):
                got.append(ev)
                return True
            return False

        await pump(m, self._reader, self._writer, on_event, clock=unix_ms, timeout=timeout)
        return got[0]

    async def authenticate(self, timeout: float = 120.0) -> None:
        """Run the HELLO exchange (the dialer has called ``start``)."""
        ev = await self._pump_until(PeerAuthenticated, timeout)
        self.epoch = ev.epoch

    async def offer(self, make_offer: MakeOffer, generation: int | None = None, *,
                    last_rx: int = 0, timeout: float = 120.0) -> SignalOutcome:
        """OFFER ``generation`` (higher than any seen, p4-03 §8.3; default: the next one) and
        wait for the ANSWER."""
        t0 = asyncio.get_running_loop().time()
        if generation is None:
            generation = self.machine.generation + 1
        sdp, fingerprint = await make_offer()
        if generation > self.machine.generation:  # else send_offer refuses it, changing nothing
            self.replay.advance(generation)
        self.machine.send_offer(sdp, fingerprint, generation, last_rx, unix_ms())
        ans: AnswerReceived = await self._pump_until(AnswerReceived, timeout)
        return SignalOutcome(ans.generation, ans.sdp, ans.fingerprint, ans.last_rx, self.epoch,
                             asyncio.get_running_loop().time() - t0, self)

    async def answer(self, make_answer: MakeAnswer, *, timeout: float = 120.0) -> SignalOutcome:
        """Wait for the peer's next OFFER (authenticating first if needed) and answer it."""
        t0 = asyncio.get_running_loop().time()
        ev: OfferReceived = await self._pump_until(OfferReceived, timeout, on_offer=make_answer)
        self.epoch = self.machine.peer_epoch or self.epoch
        return SignalOutcome(ev.generation, ev.sdp, ev.fingerprint, ev.last_rx, self.epoch,
                             asyncio.get_running_loop().time() - t0, self)

    async def close(self, reason: ErrorCode = ErrorCode.NO_ERROR) -> None:
        """Say BYE if the stream is still usable, then close it."""
        with contextlib.suppress(P4Error):
            self.machine.send_bye(int(reason), unix_ms())
        out = self.machine.data_to_send()
        with contextlib.suppress(ConnectionError, OSError):
            if out:
                self._writer.write(out)
                await asyncio.wait_for(self._writer.drain(), 5)
        self._writer.close()


def _failed(event: RendezvousFailed | ByeReceived) -> P4Error:
    if isinstance(event, ByeReceived):
        return P4Error(ErrorCode.PROTOCOL_VIOLATION, f"peer said BYE (reason 0x{event.reason:04x})")
    try:
        code: ErrorCode | None = ErrorCode(event.code)
    except ValueError:  # a peer may send a code this side does not know (p4-00 §7)
        code = None
    name = code.name if code else f"0x{event.code:04x}"
    who = "peer reported" if event.by_peer else "rejected"
    return P4Error(code or ErrorCode.PROTOCOL_VIOLATION, f"rendezvous {who} {name}")


class PairService:
    """This device's derived onion(s) for one paired peer, and the streams that reach them."""

    def __init__(self, tor: TorDriver, seed: bytes, my_pub: bytes, peer_pub: bytes,
                 pair_root_key: bytes, *, store: ReplayStore | None = None) -> None:
        self._tor = tor
        self._seed = seed
        self._my_pub = my_pub
        self._peer_pub = peer_pub
        self._root = pair_root_key
        self._server: asyncio.Server | None = None
        self._handles: list[OnionHandle] = []
        self._incoming: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.keys: list[EpochKeys] = []
        self.replay = peer_replay(my_pub, peer_pub, store)
        self.nonces = self.replay.nonces

    async def start(self, now_s: float | None = None) -> list[str]:
        """Listen on loopback and publish one onion per epoch to publish; return the addresses."""

        async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._incoming.put((r, w))

        self._server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        now = unix_ms() / 1000 if now_s is None else now_s
        for epoch in epochs_to_publish(now):
            k = derive_epoch_keys(self._root, self._my_pub, self._peer_pub, epoch)
            self.keys.append(k)
            self._handles.append(await self._tor.publish(
                k.my_onion_seed, {ONION_PORT: port}, [k.peer_client_auth_pub]))
        return [k.my_onion_address for k in self.keys]

    async def accept(self, timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(self._incoming.get(), timeout)
        except TimeoutError:
            raise P4Error(ErrorCode.TIMEOUT, f"the peer did not dial within {timeout} s") from None

    async def answer_next(self, make_answer: MakeAnswer, *, generation: int = 0,
                          timeout: float = 120.0, keep_open: bool = False) -> SignalOutcome:
        """Accept the next stream and answer the peer's OFFER on it; with ``keep_open`` the
        stream stays usable in ``outcome.link`` for later OFFERs (close it when done)."""
        reader, writer = await self.accept(timeout)
        try:
            outcome = await answer_on_stream(self._seed, self._peer_pub, reader, writer,
                                             make_answer, generation=generation,
                                             replay=self.replay, timeout=timeout)
        except BaseException:
            writer.close()
            raise
        if not keep_open:
            writer.close()
        return outcome

    async def close(self) -> None:
        for handle in self._handles:
            with contextlib.suppress(P4Error):
                await self._tor.unpublish(handle)
        self._handles.clear()
        while not self._incoming.empty():  # streams that arrived but were never answered
            _, writer = self._incoming.get_nowait()
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _replay_for(seed: bytes, peer_pub: bytes, replay: PeerReplay | None) -> PeerReplay:
    if replay is not None:
        return replay
    return peer_replay(bytes(SigningKey(bytes(seed)).verify_key), peer_pub)


async def answer_on_stream(
    seed: bytes, peer_pub: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    make_answer: MakeAnswer, *, generation: int = 0, replay: PeerReplay | None = None,
    timeout: float = 120.0,
) -> SignalOutcome:
    """Acceptor side of one stream: authenticate the dialer, answer its OFFER (p4-03 §9).
    ``generation`` is a floor for the peer's next OFFER on top of the persisted mark.  The
    stream stays open in ``outcome.link`` for later OFFERs."""
    replay = _replay_for(seed, peer_pub, replay)
    m = RendezvousMachine(seed, peer_pub, dialer=False, rng=os.urandom,
                          last_generation=max(generation, replay.last_generation()),
                          nonce_cache=replay.nonces)
    m.start(unix_ms())
    return await SignalLink(m, reader, writer, replay=replay).answer(make_answer, timeout=timeout)


async def dial_and_offer(
    tor: TorDriver, seed: bytes, my_pub: bytes, peer_pub: bytes, pair_root_key: bytes,
    make_offer: MakeOffer, *, generation: int | None = None, last_rx: int = 0,
    timeout: float = 120.0, now_s: float | None = None, keep_open: bool = False,
    fresh_circuit: bool = False, replay: PeerReplay | None = None,
) -> SignalOutcome:
    """Dialer side: reach the peer's derived onion, authenticate, OFFER ``generation`` (default:
    one above the persisted mark), wait for the ANSWER.  With ``keep_open`` the stream stays
    usable in ``outcome.link`` (close it when done)."""
    replay = _replay_for(seed, peer_pub, replay)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    now = unix_ms() / 1000 if now_s is None else now_s
    last_error: P4Error | None = None
    for epoch in epochs_to_dial(now):  # current first, then previous, then next (p4-03 §5.3)
        k = derive_epoch_keys(pair_root_key, my_pub, peer_pub, epoch)
        await tor.add_client_auth(k.peer_onion_address, k.my_client_auth_priv)
        try:
            reader, writer = await tor.open_stream(
                k.peer_onion_address, ONION_PORT, timeout=max(5.0, timeout - (loop.time() - t0)),
                fresh_circuit=fresh_circuit)
        except P4Error as exc:
            last_error = exc
            continue
        link = await offer_on_stream(seed, peer_pub, reader, writer, timeout=timeout,
                                     replay=replay)
        link.epoch = epoch
        try:
            outcome = await link.offer(make_offer, generation, last_rx=last_rx, timeout=timeout)
        except BaseException:
            writer.close()
            raise
        outcome.seconds = loop.time() - t0  # dial + HELLO + OFFER/ANSWER
        if not keep_open:
            writer.close()
        return outcome
    raise last_error or P4Error(ErrorCode.TIMEOUT, "no epoch's onion was reachable")


async def offer_on_stream(
    seed: bytes, peer_pub: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    *, generation: int | None = None, timeout: float = 120.0, replay: PeerReplay | None = None,
) -> SignalLink:
    """Dialer side of an open stream: the three-HELLO exchange (p4-03 §6.3); the returned link
    then offers with :meth:`SignalLink.offer`.  ``generation``, if given, is the lowest
    generation this link may offer (on top of the persisted mark)."""
    replay = _replay_for(seed, peer_pub, replay)
    floor = 0 if generation is None else generation - 1
    m = RendezvousMachine(seed, peer_pub, dialer=True, rng=os.urandom,
                          last_generation=max(floor, replay.last_generation()),
                          nonce_cache=replay.nonces)
    m.start(unix_ms())
    link = SignalLink(m, reader, writer, replay=replay)
    try:
        await link.authenticate(timeout)
    except BaseException:
        writer.close()
        raise
    return link
