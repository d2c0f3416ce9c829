"""The direct path on loopback: real aiortc peers, fingerprints bound to what was signed."""

from __future__ import annotations

import asyncio

import pytest

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.webrtc import accept_offer, complete_offer, fingerprint_of, host_addresses, make_offer


def test_data_channel_opens_and_carries_bytes_on_loopback() -> None:
    async def run() -> None:
        with host_addresses(["127.0.0.1"]):
            a = await make_offer()
            offer = a.pc.localDescription.sdp
            assert "127.0.0.1" in offer
            b = await accept_offer(offer, fingerprint_of(offer))
            await complete_offer(a, b.pc.localDescription.sdp, b.local_fingerprint)
            await asyncio.gather(a.wait_open(), b.wait_open())
            a.send(b"\x01ping")
            assert await b.recv() == b"\x01ping"
            b.send(b"\x02pong" * 1000)
            assert await a.recv() == b"\x02pong" * 1000
            assert a.local_fingerprint != b.local_fingerprint
            await asyncio.gather(a.close(), b.close())

    asyncio.run(run())


def test_sdp_with_another_fingerprint_is_refused() -> None:
    async def run() -> None:
        with host_addresses(["127.0.0.1"]):
            a = await make_offer()
            offer = a.pc.localDescription.sdp
            with pytest.raises(P4Error) as exc:
                await accept_offer(offer, bytes(32))  # signed fingerprint ≠ SDP's
            assert exc.value.code is ErrorCode.MESSAGE_INVALID
            await a.close()

    asyncio.run(run())


def test_fingerprint_parsing_is_strict() -> None:
    fp = ":".join(["AB"] * 32)
    assert fingerprint_of(f"v=0\r\na=fingerprint:sha-256 {fp}\r\n") == bytes([0xAB]) * 32
    for sdp in ("v=0\r\n", f"a=fingerprint:sha-256 {fp}\r\na=fingerprint:sha-256 {fp[:-2]}CD\r\n"):
        with pytest.raises(P4Error):
            fingerprint_of(sdp)
