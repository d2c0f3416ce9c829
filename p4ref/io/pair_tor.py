"""Pairing over Tor (p4-02 §4–§5 on top of :mod:`p4ref.io.tor`).

The inviter publishes a temporary onion service whose key is derived from the invitation alone
(the nameplate of a short code, or the secret of a ``p4:pair`` URI) and waits for one stream; the
accepter derives the same address from what the user typed or scanned, dials it and runs the
PAKE.  The :class:`~p4ref.pairing.PairingMachine` does all the protocol work; this module moves
its bytes (:func:`~p4ref.io.pump.pump`) and unpublishes the onion when the attempt ends, whatever
the outcome: an invitation is good for one attempt (p4-02 §5.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ErrorCode, P4Error
from ..pairing import (
    DEFAULT_EXPIRY_MS,
    Invitation,
    InviteUri,
    Paired,
    PairingFailed,
    PairingMachine,
    Role,
    ShortCode,
    parse_code,
    parse_uri,
)
from ..rendezvous._onion import onion_address_from_seed
from .pump import pump, unix_ms
from .tor import OnionHandle, TorDriver

__all__ = ["PairingResult", "PendingInvite", "accept_invitation", "create_invitation"]

#: The virtual port of a pairing onion (p4-02 §4).
PAIRING_PORT = 80


@dataclass(frozen=True)
class PairingResult:
    peer_identity: bytes
    pair_root_key: bytes
    sas: str
    seconds: float  # from dial/accept to PAIRED

    def __repr__(self) -> str:  # the root key is a secret
        return f"PairingResult(sas={self.sas!r}, seconds={self.seconds:.2f})"


async def _run(machine: PairingMachine, first: bytes, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter, timeout: float) -> PairingResult:
    t0 = asyncio.get_running_loop().time()
    if first:
        writer.write(first)
        await writer.drain()
    outcome: list[Paired] = []

    def on_event(ev: object) -> bool:
        if isinstance(ev, PairingFailed):
            raise P4Error(ev.code, f"pairing failed: {ev.reason}")
        if isinstance(ev, Paired):
            outcome.append(ev)
            return True
        return False

    try:
        await pump(machine, reader, writer, on_event, clock=unix_ms, timeout=timeout)
    finally:
        writer.close()
    ev = outcome[0]
    return PairingResult(ev.peer_identity, ev.pair_root_key, ev.sas,
                         asyncio.get_running_loop().time() - t0)


class PendingInvite:
    """A published invitation waiting for its one accepter."""

    def __init__(self, tor: TorDriver, identity_seed: bytes, invitation: Invitation,
                 onion_seed: bytes, text: str, rng: Callable[[int], bytes]) -> None:
        self._tor = tor
        self._seed = identity_seed
        self._invitation = invitation
        self._onion_seed = onion_seed
        self._rng = rng
        self.text = text  # what the user reads out, types or scans
        self.onion = onion_address_from_seed(onion_seed)
        self._server: asyncio.Server | None = None
        self._handle: OnionHandle | None = None
        self._streams: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self.publish_seconds = 0.0

    async def publish(self) -> None:
        async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            await self._streams.put((r, w))

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        self._server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._handle = await self._tor.publish(self._onion_seed, {PAIRING_PORT: port})
        self.publish_seconds = loop.time() - t0

    async def wait(self, timeout: float = 600.0) -> PairingResult:
        """Pair with the first accepter to connect; the invitation is spent either way."""
        try:
            try:
                reader, writer = await asyncio.wait_for(self._streams.get(), timeout)
            except TimeoutError:
                raise P4Error(ErrorCode.PAIR_INVITATION_EXPIRED,
                              f"nobody accepted the invitation within {timeout:.0f} s") from None
            machine = PairingMachine(Role.INVITER, self._invitation, self._seed, self._rng)
            first = machine.start(unix_ms())
            return await _run(machine, first, reader, writer, timeout)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(P4Error):
                await self._tor.unpublish(self._handle)
            self._handle = None
        while not self._streams.empty():
            self._streams.get_nowait()[1].close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None


async def create_invitation(
    tor: TorDriver, identity_seed: bytes, *, uri: bool = False,
    expires_s: float = DEFAULT_EXPIRY_MS / 1000, rng: Callable[[int], bytes] = os.urandom,
) -> PendingInvite:
    """Make a short code (or a ``p4:pair`` URI), publish its onion, and return the pending
    invitation; ``await invite.wait()`` pairs with whoever uses it first."""
    expires_ms = unix_ms() + int(expires_s * 1000)
    if uri:
        u = InviteUri(rng(32), expires_ms // 1000)
        invite = PendingInvite(tor, identity_seed, Invitation.from_uri(u), u.onion_seed, str(u),
                               rng)
    else:
        code = ShortCode.generate(rng(4))
        invite = PendingInvite(tor, identity_seed, Invitation.from_code(code, expires_ms),
                               code.onion_seed, str(code), rng)
    await invite.publish()
    return invite


async def accept_invitation(
    tor: TorDriver, identity_seed: bytes, text: str, *, timeout: float = 120.0,
    rng: Callable[[int], bytes] = os.urandom,
) -> PairingResult:
    """Use a short code or a ``p4:pair`` URI: dial the inviter's pairing onion and pair."""
    if text.strip().lower().startswith("p4:"):
        u = parse_uri(text)
        invitation, seed = Invitation.from_uri(u), u.onion_seed
    else:
        c = parse_code(text)
        invitation, seed = Invitation.from_code(c), c.onion_seed
    if invitation.expires_at is not None and unix_ms() > invitation.expires_at:
        raise P4Error(ErrorCode.PAIR_INVITATION_EXPIRED, "this invitation has expired")
    reader, writer = await tor.open_stream(onion_address_from_seed(seed), PAIRING_PORT,
                                           timeout=timeout, fresh_circuit=True)
    machine = PairingMachine(Role.ACCEPTER, invitation, identity_seed, rng)
    first = machine.start(unix_ms())
    return await _run(machine, first, reader, writer, timeout)
