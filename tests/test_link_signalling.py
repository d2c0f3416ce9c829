"""In-band signalling of the per-peer link (p4-04 §5.3 SES-12, SES-13, SES-56; p4-03 RDV-57)
and stream glare (p4-03 RDV-39), in one process without Tor: two
:class:`~p4ref.link.Signaller` s joined by loopback TCP streams standing in for onion streams
(through a relay that can go silent, as a circuit does when the peer moves).

An RV_OFFER carried in-band is checked by the machine of the open stream exactly as if it had
arrived there: accepted once, an exact copy (re-sent on another path) dropped (RDV-69), a
tampered one refused, and an OFFER for a generation at or below the persisted high-water mark
refused after a restart (RDV_STALE_GENERATION, RDV-52) even on a new stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode
from p4ref.io.replay_store import ReplayStore
from p4ref.io.session_store import SESSION_DB, SessionStore
from p4ref.io.signal import PeerReplay
from p4ref.io.tor import TorDriver
from p4ref.link import Signaller
from p4ref.link import _signalling as signalling
from p4ref.link._signalling import SignalEvent, Stream
from p4ref.rendezvous import ByeReceived, OfferReceived, RendezvousFailed

SEEDS = [os.urandom(32) for _ in range(2)]
PUBS = [bytes(SigningKey(s).verify_key) for s in SEEDS]
ROOT = os.urandom(32)
#: never dialed through: the test joins the signallers itself (a tor P⁴ did not launch)
NO_TOR = cast(TorDriver, SimpleNamespace(launched=False))


def signaller(i: int, replay: PeerReplay) -> Signaller:
    return Signaller(NO_TOR, SEEDS[i], PUBS[i], PUBS[1 - i], ROOT, replay,
                     incarnation=lambda: b"\x01" * 16)


class Relay:
    """A TCP relay standing in for a circuit: ``silent`` drops everything both ways from then on
    (the peer moved: nothing arrives, nothing is refused)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.silent = False
        self.server: asyncio.Server | None = None
        self.tasks: list[asyncio.Task[None]] = []
        self.held: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _conn(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        r2, w2 = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.tasks += [asyncio.create_task(self._copy(r, w2)),
                       asyncio.create_task(self._copy(r2, w))]

    async def _copy(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await r.read(65536):
                    if not self.silent:
                        w.write(data)
        finally:
            if self.silent:  # a dead circuit carries no end either: kept for close()
                self.held.append(w)
            else:
                w.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in self.tasks:
            t.cancel()
        for w in self.held:
            w.close()


async def join(a: Signaller, b: Signaller, relay: bool = False) -> tuple[Stream, Relay | None]:
    """A dials B over loopback TCP (through a :class:`Relay` when asked); both run their stream
    machines until the new stream is authenticated at both; returns A's new stream."""
    server = await asyncio.start_server(b._on_incoming, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    rel = Relay(port) if relay else None
    if rel is not None:
        port = await rel.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    st = Stream(a._new_machine(True), reader, writer, dialed_by_low=a.is_low)
    before = set(b._streams)
    a._run(st)
    for _ in range(200):
        if st.authenticated and any(x.authenticated for x in b._streams - before):
            break
        await asyncio.sleep(0.02)
    assert a.ready and b.ready
    server.close()
    return st, rel


async def next_event(s: Signaller) -> Any:
    se: SignalEvent = await asyncio.wait_for(s.events.get(), 5)
    return se


def test_inband_offer_checked_by_the_stream_machine(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = await SessionStore.open(tmp_path / SESSION_DB)
        b_marks = cast(ReplayStore, store.replay_marks())
        a = signaller(0, PeerReplay(PUBS[1]))
        b = signaller(1, PeerReplay(PUBS[0], b_marks))
        await join(a, b)
        carried: list[bytes] = []

        def inband(frame: bytes) -> bool:
            carried.append(frame)
            return True
        a.offer("v=0\r\n", os.urandom(32), 1, 0, inband)
        assert len(carried) == 1  # it went in-band, not on the stream
        b.receive_inband(carried[0])
        se = await next_event(b)
        assert isinstance(se.event, OfferReceived) and se.inband and se.event.generation == 1
        b.replay.advance(1)  # what the link does before answering (RDV-52)
        b.receive_inband(carried[0])  # the same bytes again (re-sent on another path): dropped
        await asyncio.sleep(0.1)
        assert b.events.empty() and b.ready  # RDV-69
        st = a.stream
        assert st is not None  # a different frame reusing the nonce is a replay (RDV-27)
        forged = bytearray(carried[0])
        forged[-70] ^= 1  # inside the signed body: the signature no longer verifies
        b.receive_inband(bytes(forged))
        se = await next_event(b)
        assert isinstance(se.event, RendezvousFailed)
        assert se.event.code in (ErrorCode.RDV_BAD_SIGNATURE, ErrorCode.MESSAGE_INVALID)
        await a.close()
        await b.close()
        await store.close()

        # B restarts: the mark was stored; A (without its own memory) offers generation 1
        # again on a new stream, properly signed and bound: stale (RDV-30, RDV-52)
        store = await SessionStore.open(tmp_path / SESSION_DB)
        assert store.last_generation(PUBS[0]) == 1
        a = signaller(0, PeerReplay(PUBS[1]))
        b = signaller(1, PeerReplay(PUBS[0], cast(ReplayStore, store.replay_marks())))
        await join(a, b)
        carried.clear()
        # A's stream machine adopted B's announced mark (RDV-60): it refuses to offer 1 itself,
        # so the stale OFFER is forged with A's key by a machine that did not hear the HELLO
        assert a.generation() >= 1
        st = a.stream
        assert st is not None
        st.machine.generation = 0  # pretend A never learned the mark
        a.replay = PeerReplay(PUBS[1])
        a.offer("v=0\r\n", os.urandom(32), 1, 0, inband)
        b.receive_inband(carried[0])
        se = await next_event(b)
        assert isinstance(se.event, RendezvousFailed)
        assert se.event.code == ErrorCode.RDV_STALE_GENERATION
        await a.close()
        await b.close()
        await store.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_goodbye_sends_a_signed_bye_with_its_reason() -> None:
    """``Link.goodbye`` (``p4 peers forget``): a signed RV_BYE with the reason on every open
    stream; the other side reports it (the link turns it into a ``bye`` LinkEvent)."""
    async def scenario() -> None:
        a = signaller(0, PeerReplay(PUBS[1]))
        b = signaller(1, PeerReplay(PUBS[0]))
        await join(a, b)
        await a.goodbye(ErrorCode.RDV_UNKNOWN_PEER)
        assert a.stream is None
        se = await next_event(b)
        assert isinstance(se.event, ByeReceived)
        assert se.event.reason == ErrorCode.RDV_UNKNOWN_PEER
        await a.close()
        await b.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_a_stream_closed_without_bye_is_logged_as_that(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    """A stream whose transport just ends (no RV_BYE, no ERROR) comes out of the machine as the
    peer's PROTOCOL_VIOLATION (p4-03 RDV-47); the log says what happened instead."""
    async def scenario() -> None:
        a = signaller(0, PeerReplay(PUBS[1]))
        b = signaller(1, PeerReplay(PUBS[0]))
        st, _ = await join(a, b)
        before = set(b._streams)
        st.writer.transport.abort()  # a reset, as a dead path or a killed process gives
        se = await next_event(b)
        assert isinstance(se.event, RendezvousFailed) and se.event.by_peer
        assert se.event.code == ErrorCode.PROTOCOL_VIOLATION
        assert all(x.eof for x in before)
        await a.close()
        await b.close()

    with caplog.at_level("INFO", logger="p4ref.link._signalling"):
        asyncio.run(asyncio.wait_for(scenario(), 30))
    ended = [r.getMessage() for r in caplog.records if "rendezvous stream ended" in r.getMessage()]
    assert "rendezvous stream ended: closed by the peer or the network (end of stream without" \
        " RV_BYE)" in ended
    assert not any("PROTOCOL_VIOLATION" in m for m in ended)


def _peer_side(b: Signaller, before: set[Stream]) -> Stream:
    (st,) = b._streams - before
    return st


def test_glare_live_streams_keep_the_one_low_dialed() -> None:
    """Two live crossing streams (dial glare): at both peers the LOW-dialed one is kept at once
    and the other closed with RV_BYE RDV_DUPLICATE_STREAM, without a PING [RDV-39]."""
    async def scenario() -> None:
        low, high = sorted((signaller(0, PeerReplay(PUBS[1])), signaller(1, PeerReplay(PUBS[0]))),
                           key=lambda s: not s.is_low)
        s1, _ = await join(high, low)  # the HIGH peer dials first
        s2, _ = await join(low, high)  # LOW's dial crosses it; s1 spoke just now
        await asyncio.sleep(0.3)
        assert low.stream is s2 and high.stream is not None and high.stream.dialed_by_low
        assert s1 not in high._streams and s2.probe is None
        assert len(low._streams) == 1 and len(high._streams) == 1
        await low.close()
        await high.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


@pytest.mark.parametrize("older_lives", [False, True])
def test_a_quiet_older_stream_is_probed_the_newer_used_meanwhile(
        monkeypatch: pytest.MonkeyPatch, older_lives: bool) -> None:
    """The peer moved: the stream this side kept went silent (its circuit died) and a new one
    arrives.  It is kept at once, even when the old one is the LOW-dialed one (before RDV-39's
    probe, the dead LOW-dialed stream won and the new one got RDV_DUPLICATE_STREAM: the moved
    peer's every redial was refused); a PING probes the old one, which is closed when it stays
    silent for PONG_TIMEOUT.  When it answers, both are alive and the LOW rule keeps the older
    (LOW-dialed) one [RDV-39]."""
    monkeypatch.setattr(signalling, "PONG_TIMEOUT_MS", 600)
    monkeypatch.setattr(signalling, "RECENT_RX", 0.3)

    async def scenario() -> None:
        low, high = sorted((signaller(0, PeerReplay(PUBS[1])), signaller(1, PeerReplay(PUBS[0]))),
                           key=lambda s: not s.is_low)
        old, relay = await join(low, high, relay=True)  # the LOW-dialed stream, kept by both
        assert relay is not None
        old_at_high = high.stream
        assert old_at_high is not None and old_at_high.dialed_by_low
        await asyncio.sleep(0.5)  # nothing on it for longer than RECENT_RX
        relay.silent = not older_lives
        new, _ = await join(high, low)  # the peer redials over its new network
        if not older_lives:  # the newer is kept at once, not refused (a live one's PONG is
            for s in (low, high):  # back within milliseconds here)
                assert s.stream is not None and not s.stream.dialed_by_low, s.is_low
        await asyncio.sleep(1.2)  # the probes end
        if older_lives:
            assert low.stream is old and high.stream is old_at_high
            assert new not in high._streams
        else:
            assert high.stream is new and old_at_high not in high._streams
            assert low.stream is not None and low.stream is not old and old not in low._streams
        assert len(low._streams) == 1 and len(high._streams) == 1
        assert low.ready and high.ready
        for s in (low, high):  # the probes' tasks are not kept once they end
            assert all(not t.done() for t in s._tasks), s._tasks
        relay.close()
        await low.close()
        await high.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))


class _DialTor:
    """A stand-in tor for a started signaller: publishing does nothing, every dial opens a
    loopback connection to ``port`` (the peer's listener)."""

    launched = False

    def __init__(self, port: int) -> None:
        self.port = port
        self.dials = 0

    async def publish(self, *_: Any, **__: Any) -> object:
        return object()

    async def unpublish(self, _: object) -> None:
        pass

    async def add_client_auth(self, *_: Any) -> None:
        pass

    async def open_stream(self, *_: Any, **__: Any) -> tuple[asyncio.StreamReader,
                                                              asyncio.StreamWriter]:
        self.dials += 1
        return await asyncio.open_connection("127.0.0.1", self.port)


def test_a_stream_refused_for_one_we_dropped_is_redialed_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The HIGH peer moves just after its stream carried something: it drops that stream (the
    circuit died), dials, and the LOW peer, for which the dead stream spoke less than a second
    ago, keeps it and refuses the new one (RDV_DUPLICATE_STREAM).  The HIGH peer has no stream
    left, so it dials again at once instead of after FOLLOWER_DELAY (10 s), until the LOW peer
    finds the old stream quiet, probes it and keeps the new one [RDV-81, RDV-39]."""
    monkeypatch.setattr(signalling, "PONG_TIMEOUT_MS", 600)
    monkeypatch.setattr(signalling, "RECENT_RX", 0.3)

    async def scenario() -> None:
        i_low = 0 if PUBS[0] < PUBS[1] else 1
        low = signaller(i_low, PeerReplay(PUBS[1 - i_low]))
        server = await asyncio.start_server(low._on_incoming, "127.0.0.1", 0)
        tor = _DialTor(server.sockets[0].getsockname()[1])
        high = Signaller(cast(TorDriver, tor), SEEDS[1 - i_low], PUBS[1 - i_low], PUBS[i_low],
                         ROOT, PeerReplay(PUBS[i_low]), incarnation=lambda: b"\x01" * 16)
        await high.start()  # HIGH: it would dial only after FOLLOWER_DELAY
        old, relay = await join(low, high, relay=True)  # LOW dials; both keep it
        assert relay is not None and high.stream is not None
        relay.silent = True  # high moves: the circuit is gone ...
        old.last_rx = asyncio.get_running_loop().time()  # ... just after it carried a frame
        await high._close_stream(high.stream, ErrorCode.NO_ERROR)  # its BYE never arrives
        high.network_changed()  # the moved peer dials at once (RDV-64)
        for _ in range(150):
            await asyncio.sleep(0.02)
            if low.stream is not old and low.ready and high.ready:
                break
        assert tor.dials >= 2, "the refused stream was not redialed"  # refused at least once
        assert low.ready and high.ready and low.stream is not old
        await asyncio.sleep(1.0)  # low's probe of the dead stream ends: closed
        assert old not in low._streams and low.ready and high.ready
        relay.close()
        server.close()
        await high.close()
        await low.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
