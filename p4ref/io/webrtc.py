"""The direct path: an aiortc data channel set up from a signed offer/answer (ARCHITECTURE §5).

Only what the rendezvous layer needs today: make an offer or an answer with a data channel, read
the DTLS fingerprint out of an SDP (the rendezvous messages sign it, p4-03), and refuse an SDP
whose fingerprint is not the signed one — aiortc then checks the peer's certificate against it,
so a rendezvous path that swapped the SDP cannot sit in the middle (research/webrtc-lab.md §2).

Facts this module relies on (aiortc 1.16 / aioice 0.13, research/webrtc-lab.md):
- ``iceServers`` is always explicit: aiortc's default is a public STUN server.
- aioice uses every non-127.0.0.1 interface address for host candidates and has no option to
  restrict that; :func:`host_addresses` swaps its address source for a fixed list, so tests and
  the offline demo stay on loopback.
- No ICE restart: every generation is a fresh ``RTCPeerConnection``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from ..errors import ErrorCode, P4Error

__all__ = [
    "DirectChannel",
    "accept_offer",
    "complete_offer",
    "fingerprint_of",
    "host_addresses",
    "make_offer",
]

_FP = re.compile(r"^a=fingerprint:sha-256 ([0-9A-Fa-f:]{95})\s*$", re.M)


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Make aioice gather host candidates on ``addresses`` only (e.g. ``["127.0.0.1"]``)."""
    original = aioice.ice.get_host_addresses

    def fixed(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return list(addresses)

    aioice.ice.get_host_addresses = fixed
    try:
        yield
    finally:
        aioice.ice.get_host_addresses = original


def fingerprint_of(sdp: str) -> bytes:
    """The sha-256 DTLS certificate fingerprint an SDP announces (RFC 8122 §5), as 32 bytes."""
    found = {m.group(1).upper() for m in _FP.finditer(sdp)}
    if len(found) != 1:
        raise P4Error(ErrorCode.MESSAGE_INVALID, f"SDP has {len(found)} sha-256 fingerprints")
    return bytes.fromhex(found.pop().replace(":", ""))


@dataclass
class DirectChannel:
    """One generation's peer connection and its ``p4`` data channel."""

    pc: RTCPeerConnection
    channel: RTCDataChannel | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    inbox: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)

    def _attach(self, channel: RTCDataChannel) -> None:
        self.channel = channel

        @channel.on("open")
        def _open() -> None:
            self.opened.set()

        @channel.on("message")
        def _message(msg: Any) -> None:
            if isinstance(msg, bytes):
                self.inbox.put_nowait(msg)

        if channel.readyState == "open":
            self.opened.set()

    @property
    def local_fingerprint(self) -> bytes:
        return fingerprint_of(self.pc.localDescription.sdp)

    async def wait_open(self, timeout: float = 15.0) -> None:
        try:
            await asyncio.wait_for(self.opened.wait(), timeout)
        except TimeoutError:
            state = self.pc.connectionState
            raise P4Error(ErrorCode.TIMEOUT, f"data channel not open ({state})") from None

    def send(self, data: bytes) -> None:
        if self.channel is None or self.channel.readyState != "open":
            raise P4Error(ErrorCode.PROTOCOL_VIOLATION, "data channel is not open")
        self.channel.send(data)

    async def recv(self, timeout: float = 15.0) -> bytes:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except TimeoutError:
            raise P4Error(ErrorCode.TIMEOUT, "no data-channel message") from None

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pc.close(), 5.0)


def _new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def make_offer() -> DirectChannel:
    """A new peer connection with a ``p4`` data channel and a complete (non-trickle) offer."""
    direct = DirectChannel(_new_pc())
    direct._attach(direct.pc.createDataChannel("p4", ordered=True))
    await direct.pc.setLocalDescription(await direct.pc.createOffer())
    return direct


async def accept_offer(offer_sdp: str, signed_fingerprint: bytes) -> DirectChannel:
    """Answer an offer whose fingerprint the rendezvous layer has verified as signed."""
    if fingerprint_of(offer_sdp) != signed_fingerprint:
        raise P4Error(ErrorCode.MESSAGE_INVALID, "offer fingerprint differs from the signed one")
    direct = DirectChannel(_new_pc())
    direct.pc.on("datachannel", direct._attach)
    await direct.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
    await direct.pc.setLocalDescription(await direct.pc.createAnswer())
    return direct


async def complete_offer(direct: DirectChannel, answer_sdp: str, signed_fingerprint: bytes) -> None:
    """Apply the peer's answer (fingerprint already checked against its signature)."""
    if fingerprint_of(answer_sdp) != signed_fingerprint:
        raise P4Error(ErrorCode.MESSAGE_INVALID, "answer fingerprint differs from the signed one")
    await direct.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
