"""In-band signalling of the per-peer link (p4-04 §5.3 SES-12, SES-13, SES-56; p4-03 RDV-57),
in one process without Tor: two :class:`~p4ref.link.Signaller` s joined by a loopback TCP
stream standing in for the onion stream.

An RV_OFFER carried in-band is checked by the machine of the open stream exactly as if it had
arrived there: accepted once, an exact copy (re-sent on another path) dropped (RDV-69), a
tampered one refused, and an OFFER for a generation at or below the persisted high-water mark
refused after a restart (RDV_STALE_GENERATION, RDV-52) even on a new stream.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, cast

from nacl.signing import SigningKey

from p4ref.errors import ErrorCode
from p4ref.io.replay_store import ReplayStore
from p4ref.io.session_store import SESSION_DB, SessionStore
from p4ref.io.signal import PeerReplay
from p4ref.io.tor import TorDriver
from p4ref.link import Signaller
from p4ref.link._signalling import SignalEvent, Stream
from p4ref.rendezvous import ByeReceived, OfferReceived, RendezvousFailed

SEEDS = [os.urandom(32) for _ in range(2)]
PUBS = [bytes(SigningKey(s).verify_key) for s in SEEDS]
ROOT = os.urandom(32)
NO_TOR = cast(TorDriver, None)  # never used: the test joins the signallers itself


def signaller(i: int, replay: PeerReplay) -> Signaller:
    return Signaller(NO_TOR, SEEDS[i], PUBS[i], PUBS[1 - i], ROOT, replay,
                     incarnation=lambda: b"\x01" * 16)


async def join(a: Signaller, b: Signaller) -> None:
    """A dials B over loopback TCP; both run their stream machines until authenticated."""
    server = await asyncio.start_server(b._on_incoming, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    a._run(Stream(a._new_machine(True), reader, writer, dialed_by_low=a.is_low))
    for _ in range(200):
        if a.ready and b.ready:
            break
        await asyncio.sleep(0.02)
    assert a.ready and b.ready
    server.close()


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
