"""Rendezvous over the private Tor network: real onion services, real circuits (issue 4 §5).

Two paired devices each publish their per-pair, per-epoch onion (client auth on) on their own tor
client; one dials the other and they complete a signed HELLO/OFFER/ANSWER exchange.  The offer is
a real aiortc SDP, and the test finishes by opening the direct data channel it describes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, P4Error
from p4ref.framing import FrameReader, FrameType, Path, parse_error_body
from p4ref.io.pump import unix_ms
from p4ref.io.signal import ONION_PORT, PairService, dial_and_offer
from p4ref.io.tor import TorConfig, TorDriver
from p4ref.io.webrtc import accept_offer, complete_offer, host_addresses, make_offer
from p4ref.rendezvous import OfferReceived, RendezvousMachine, derive_epoch_keys, epoch_of


class Device:
    def __init__(self, label: bytes) -> None:
        self.seed = label.ljust(32, b"\x00")
        self.pub = bytes(SigningKey(self.seed).verify_key)


A, B = Device(b"device-a"), Device(b"device-b")


def run(coro_fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro_fn(*args), 240))


def fresh_pair_root() -> bytes:
    """Each test is its own pair: tor clients keep client-auth keys across tests, so a shared
    root key (same onion, same epoch) would let one test's key leak into the next."""
    return os.urandom(32)


async def _drivers(tornet: Any) -> tuple[TorDriver, TorDriver]:
    da = TorDriver(TorConfig.testnet(tornet.clients[0]))
    db = TorDriver(TorConfig.testnet(tornet.clients[1]))
    await da.start()
    await db.start()
    return da, db


def test_signed_offer_answer_through_derived_onions_then_direct_channel(tornet: Any) -> None:
    root = fresh_pair_root()

    async def scenario() -> None:
        da, db = await _drivers(tornet)
        service = PairService(da, A.seed, A.pub, B.pub, root)
        try:
            with host_addresses(["127.0.0.1"]):
                addresses = await service.start()
                keys = derive_epoch_keys(root, B.pub, A.pub, epoch_of(unix_ms() / 1000))
                assert keys.peer_onion_address in addresses  # B computes A's onion itself

                offered: dict[str, Any] = {}
                answered: dict[str, Any] = {}

                async def offer() -> tuple[str, bytes]:
                    offered["pc"] = d = await make_offer()
                    return d.pc.localDescription.sdp, d.local_fingerprint

                async def answer(ev: OfferReceived) -> tuple[str, bytes]:
                    answered["pc"] = d = await accept_offer(ev.sdp, ev.fingerprint)
                    return d.pc.localDescription.sdp, d.local_fingerprint

                got_a, got_b = await asyncio.gather(
                    service.answer_next(answer, timeout=120),
                    dial_and_offer(db, B.seed, B.pub, A.pub, root, offer, generation=1,
                                   last_rx=41, timeout=120),
                )
                assert got_a.generation == got_b.generation == 1
                assert got_a.peer_last_rx == 41
                assert got_a.peer_fingerprint == offered["pc"].local_fingerprint
                assert got_b.peer_fingerprint == answered["pc"].local_fingerprint
                # The signed SDPs set up the direct path; Tor carried only the signalling.
                await complete_offer(offered["pc"], got_b.peer_sdp, got_b.peer_fingerprint)
                await asyncio.gather(offered["pc"].wait_open(), answered["pc"].wait_open())
                offered["pc"].send(b"hello over the direct path")
                assert await answered["pc"].recv() == b"hello over the direct path"
                await asyncio.gather(offered["pc"].close(), answered["pc"].close())
        finally:
            await service.close()
            await da.close()
            await db.close()

    run(scenario)


def test_third_party_cannot_derive_or_fetch_the_pairs_onion(tornet: Any) -> None:
    stranger = Device(b"stranger")

    root = fresh_pair_root()

    async def scenario() -> None:
        da, db = await _drivers(tornet)
        service = PairService(da, A.seed, A.pub, B.pub, root)
        try:
            addresses = await service.start()
            epoch = epoch_of(unix_ms() / 1000)
            # Knowing A's identity key (and even its own pair with A) gives other addresses.
            guess = derive_epoch_keys(os.urandom(32), stranger.pub, A.pub, epoch)
            assert guess.peer_onion_address not in addresses
            # Handed the real address, without B's client-auth key the descriptor is unreadable.
            with pytest.raises(P4Error) as exc:
                await db.open_stream(addresses[0], ONION_PORT, timeout=30, fresh_circuit=True)
            assert exc.value.code in (ErrorCode.TOR_CLIENT_AUTH_FAILED,
                                      ErrorCode.TOR_ONION_UNREACHABLE)
            # A wrong client-auth key does not help either.
            await db.add_client_auth(addresses[0], guess.my_client_auth_priv)
            with pytest.raises(P4Error) as exc2:
                await db.open_stream(addresses[0], ONION_PORT, timeout=30, fresh_circuit=True)
            assert exc2.value.code in (ErrorCode.TOR_CLIENT_AUTH_FAILED,
                                       ErrorCode.TOR_ONION_UNREACHABLE)
        finally:
            await service.close()
            await da.close()
            await db.close()

    run(scenario)


async def _error_from(reader: asyncio.StreamReader) -> int:
    frames = FrameReader(Path.TOR)
    while True:
        chunk = await asyncio.wait_for(reader.read(4096), 30)
        assert chunk, "stream closed without an ERROR frame"
        frames.feed(chunk)
        frame = frames.next_frame()
        if frame is not None:
            assert frame.type == FrameType.ERROR
            return parse_error_body(frame.body)[0]


def test_tampered_and_replayed_hello_are_rejected_over_the_real_path(tornet: Any) -> None:
    root = fresh_pair_root()

    async def scenario() -> None:
        da, db = await _drivers(tornet)
        service = PairService(da, A.seed, A.pub, B.pub, root)
        try:
            await service.start()
            k = derive_epoch_keys(root, B.pub, A.pub, epoch_of(unix_ms() / 1000))
            await db.add_client_auth(k.peer_onion_address, k.my_client_auth_priv)

            async def nothing(ev: OfferReceived) -> tuple[str, bytes]:
                raise AssertionError("no OFFER may get through")

            async def attempt(hello: bytes) -> tuple[P4Error, int]:
                reader, writer = await db.open_stream(k.peer_onion_address, ONION_PORT,
                                                      timeout=60)
                writer.write(hello)
                await writer.drain()
                with pytest.raises(P4Error) as exc:
                    await service.answer_next(nothing, timeout=60)
                code = await _error_from(reader)
                writer.close()
                return exc.value, code

            dialer = RendezvousMachine(B.seed, A.pub, dialer=True, rng=os.urandom)
            dialer.start(unix_ms())
            hello = dialer.data_to_send()
            tampered = bytearray(hello)
            tampered[-5] ^= 0x01  # inside the signature
            err, code = await attempt(bytes(tampered))
            assert err.code is ErrorCode.RDV_BAD_SIGNATURE
            assert code == ErrorCode.RDV_BAD_SIGNATURE

            # The genuine HELLO is accepted once (the stream then waits for an OFFER) ...
            reader, writer = await db.open_stream(k.peer_onion_address, ONION_PORT, timeout=60)
            writer.write(hello)
            await writer.drain()
            first = asyncio.ensure_future(service.answer_next(nothing, timeout=60))
            reply = await asyncio.wait_for(reader.read(4096), 30)
            assert reply[1] == FrameType.RV_HELLO  # the acceptor's HELLO came back
            writer.close()
            with pytest.raises(P4Error):
                await first  # the stream closed before any OFFER
            # ... and the same bytes replayed on a new stream are refused.
            err, code = await attempt(hello)
            assert err.code is ErrorCode.RDV_REPLAY
            assert code == ErrorCode.RDV_REPLAY
        finally:
            await service.close()
            await da.close()
            await db.close()

    run(scenario)
