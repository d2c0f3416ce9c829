"""Pairing over Tor (p4-02 §4–§5 on top of :mod:`p4ref.io.tor`).

The inviter publishes a temporary onion service whose key is derived from the invitation alone
(the nameplate of a short code, or the secret of a ``p4:pair`` URI); the accepter derives the same
address from what the user typed or scanned, dials it and runs the PAKE.  The
:class:`~p4ref.pairing.PairingMachine` does all the protocol work; this module moves its bytes
(:func:`~p4ref.io.pump.pump`).

Anyone can reach a short code's onion (its key is public), so the inviter serves **every**
incoming stream on its own machine, independently: a stream that sends junk, stalls or closes
before a well-formed PAIR_PAKE is dropped and costs the invitation nothing (p4-02 [PAIR-48]).
Only a PAIR_PAKE the inviter answers consumes the invitation (p4-02 §5.3 [PAIR-18]); from then on
every other stream, and every later one, is refused with ERROR(PAIR_INVITATION_BURNT), so each
invitation still gives an attacker exactly one online guess.

An :class:`InviteGroup` ties invitations that offer one pairing in several forms (the CLI's short
code and URI): they fail independently (a wrong guess at the short code burns the code, not the
URI), at most one of them runs an attempt at a time (a PAIR_PAKE on one waits while the other's
attempt runs), and the first success ends them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..errors import ErrorCode, P4Error
from ..framing import Frame, FrameReader, FrameType, Path, encode_frame, error_body
from ..identity import Identity
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
from ..pairing._invite import CODE_RANDOM_LEN
from ..rendezvous._onion import onion_address_from_seed
from .pump import pump, unix_ms
from .tor import OnionHandle, TorDriver

__all__ = [
    "DIAL_TIMEOUT_S",
    "MAX_STREAMS",
    "InviteGroup",
    "PairingResult",
    "PendingInvite",
    "accept_invitation",
    "create_invitation",
]

#: The virtual port of a pairing onion (p4-02 §4).
PAIRING_PORT = 80
#: How long the accepter tries to reach the inviter's onion before saying nobody serves it.
DIAL_TIMEOUT_S = 30.0
#: Streams an invitation serves at once before the PAKE; more are closed at once.
MAX_STREAMS = 32

Notice = Literal["attempt", "failed"]


@dataclass(frozen=True)
class PairingResult:
    peer_identity: bytes
    pair_root_key: bytes
    sas: str
    seconds: float  # from dial/accept to PAIRED

    def __repr__(self) -> str:  # the root key is a secret
        return f"PairingResult(sas={self.sas!r}, seconds={self.seconds:.2f})"


class _Dropped(Exception):
    """A stream ends without touching the invitation (before the PAKE, or refused)."""


class _Watch:
    """A :class:`PairingMachine` seen through the pump, noting whether it answered a PAIR_PAKE
    (the moment the inviter's invitation is consumed, p4-02 §5.3)."""

    def __init__(self, machine: PairingMachine, on_answer: Callable[[], None]) -> None:
        self.machine = machine
        self.answered = False
        self._on_answer = on_answer
        self._out = b""

    def _collect(self) -> None:
        out = self.machine.data_to_send()
        if out and not self.answered:
            reader = FrameReader(Path.TOR)
            reader.feed(out)
            while (frame := reader.next_frame()) is not None:
                if frame.type == FrameType.PAIR_PAKE:
                    self.answered = True
                    self._on_answer()
                    break
        self._out += out

    def receive_data(self, data: bytes, now: int) -> None:
        try:
            self.machine.receive_data(data, now)
        finally:
            self._collect()

    def handle_timer(self, now: int) -> None:
        try:
            self.machine.handle_timer(now)
        finally:
            self._collect()

    def data_to_send(self) -> bytes:
        self._collect()
        out, self._out = self._out, b""
        return out

    def next_event(self) -> object | None:
        return self.machine.next_event()

    def get_timer(self) -> int | None:
        return self.machine.get_timer()

    @property
    def stream_closed(self) -> bool:
        """The machine ignores the rest of this stream (p4-02 [PAIR-46], [PAIR-48])."""
        return bool(getattr(self.machine, "stream_closed", False))


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


def _refusal(code: ErrorCode) -> bytes:
    expired = code is ErrorCode.PAIR_INVITATION_EXPIRED
    reason = "invitation expired" if expired else "invitation used"
    return encode_frame(Frame(FrameType.ERROR, 0, error_body(code, reason)), Path.TOR)


class InviteGroup:
    """Invitations offered together for one pairing; see the module docstring."""

    def __init__(self) -> None:
        self._owner: PendingInvite | None = None
        self._free = asyncio.Event()
        self._free.set()
        self.members: list[PendingInvite] = []

    async def wait_turn(self, invite: PendingInvite) -> None:
        """Return when no *other* member is running an attempt."""
        while self._owner is not None and self._owner is not invite:
            await self._free.wait()

    def claim(self, invite: PendingInvite) -> None:
        self._owner = invite
        self._free.clear()

    def release(self, invite: PendingInvite) -> None:
        if self._owner is invite:
            self._owner = None
            self._free.set()

    async def wait(self, timeout: float) -> tuple[PendingInvite, PairingResult]:
        """The first member that pairs, and its result.  Raises the last member's error when
        every member failed (each is burnt or expired), PAIR_INVITATION_EXPIRED on ``timeout``.
        Never leaves a task with an unretrieved exception."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + timeout
        tasks = {asyncio.ensure_future(m.result()): m for m in self.members}
        last: BaseException | None = None
        try:
            pending = set(tasks)
            while pending:
                remaining = give_up - loop.time()
                if remaining <= 0 and self._owner is not None:
                    remaining = 1.0  # an attempt under way ends by its own timer (p4-02 §8.4)
                if remaining <= 0:
                    break
                done, pending = await asyncio.wait(pending, timeout=remaining,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t.cancelled():  # that member was closed meanwhile
                        continue
                    exc = t.exception()
                    if exc is None:
                        return tasks[t], t.result()
                    if tasks[t].fatal:
                        raise exc
                    last = exc
            if last is not None and not pending:
                raise last
            raise P4Error(ErrorCode.PAIR_INVITATION_EXPIRED,
                          f"nobody accepted the invitation within {timeout:.0f} s")
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


class PendingInvite:
    """A published invitation, serving every stream until one attempt consumes it."""

    def __init__(self, tor: TorDriver, identity_seed: bytes, invitation: Invitation,
                 onion_seed: bytes, text: str, rng: Callable[[int], bytes], *,
                 group: InviteGroup | None = None,
                 notify: Callable[[Notice, PendingInvite, P4Error | None], None] | None = None,
                 on_paired: Callable[[PairingResult], object] | None = None,
                 ) -> None:  # fmt: skip
        self._tor = tor
        self._seed = identity_seed
        self._invitation = invitation
        self._onion_seed = onion_seed
        self._rng = rng
        self._group = group
        self._notify = notify
        self._on_paired = on_paired
        if group is not None:
            group.members.append(self)
        self.text = text  # what the user reads out, types or scans
        self.is_uri = text.startswith("p4:")
        self.onion = onion_address_from_seed(onion_seed)
        self._server: asyncio.Server | None = None
        self._handle: OnionHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._consumed = False
        self._outcome: asyncio.Future[PairingResult] | None = None
        self.publish_seconds = 0.0
        self.streams_dropped = 0  # streams that ended before (or without) consuming it
        self.fatal = False  # failed in on_paired: the whole group ends, not just this invitation

    @property
    def consumed(self) -> bool:
        """True once a PAIR_PAKE was answered: the invitation is used, whatever comes next."""
        return self._consumed

    async def publish(self) -> None:
        loop = asyncio.get_running_loop()
        self._outcome = loop.create_future()
        t0 = loop.time()
        self._server = await asyncio.start_server(self._on_stream, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self._handle = await self._tor.publish(self._onion_seed, {PAIRING_PORT: port})
        self.publish_seconds = loop.time() - t0

    def _on_stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._consumed or self._outcome is None or self._outcome.done():
            self._refuse(writer)
            return
        if len(self._tasks) >= MAX_STREAMS:
            self.streams_dropped += 1
            writer.close()
            return
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refuse(self, writer: asyncio.StreamWriter) -> None:
        expired = self._invitation.expires_at is not None and (
            unix_ms() >= self._invitation.expires_at)
        writer.write(_refusal(ErrorCode.PAIR_INVITATION_EXPIRED if expired
                              else ErrorCode.PAIR_INVITATION_BURNT))
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One stream, one machine.  Never raises: the outcome goes to :meth:`result`."""
        machine = PairingMachine(Role.INVITER, self._invitation, self._seed, self._rng)
        watch = _Watch(machine, self._claim)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        outcome: list[Paired] = []
        error: BaseException | None = None

        async def before_feed() -> None:
            if watch.answered:
                return
            if self._group is not None:
                await self._group.wait_turn(self)
            if self._consumed:  # another stream of this invitation got there first
                self._refuse(writer)
                raise _Dropped

        def on_event(ev: object) -> bool:
            if isinstance(ev, PairingFailed):
                raise P4Error(ev.code, f"pairing failed: {ev.reason}")
            if isinstance(ev, Paired):
                outcome.append(ev)
                if self._on_paired is not None:
                    # store before the PAIR_DONE queued with PAIRED goes out, and never send it
                    # if storing fails (p4-02 [PAIR-63])
                    try:
                        self._on_paired(PairingResult(ev.peer_identity, ev.pair_root_key, ev.sas,
                                                      loop.time() - t0))
                    except BaseException:
                        watch.data_to_send()  # dropped: the PAIR_DONE must not be sent
                        self.fatal = True
                        outcome.clear()
                        raise
                return True
            return False

        try:
            machine.start(unix_ms())
            expires = self._invitation.expires_at or unix_ms() + DEFAULT_EXPIRY_MS
            limit = max(0.001, (expires - unix_ms()) / 1000) + machine.timeout_ms / 1000
            await pump(watch, reader, writer, on_event, clock=unix_ms, timeout=limit,
                       before_feed=before_feed, end_on_eof=True)
        except _Dropped:
            pass
        except Exception as exc:  # junk, a protocol error, a lost stream, a bug
            error = exc
        finally:
            writer.close()
        if not watch.answered:  # before the PAKE: drop the stream, keep the invitation [PAIR-48]
            self.streams_dropped += 1
            return
        if self.fatal and error is not None:  # storing failed: its own error, as it is
            self._finish(exc=error)
        elif outcome:
            ev = outcome[0]
            self._finish(result=PairingResult(ev.peer_identity, ev.pair_root_key, ev.sas,
                                              loop.time() - t0))
        elif isinstance(error, P4Error):
            self._finish(exc=error)
        elif isinstance(error, (ConnectionError, OSError)) or error is None:
            self._finish(exc=P4Error(ErrorCode.PROTOCOL_VIOLATION,
                                     "connection lost during pairing"))
        else:
            self._finish(exc=P4Error(ErrorCode.INTERNAL_ERROR,
                                     f"{type(error).__name__}: {error}"))

    def _claim(self) -> None:
        self._consumed = True
        if self._group is not None:
            self._group.claim(self)
        if self._notify is not None:
            self._notify("attempt", self, None)

    def _finish(self, *, result: PairingResult | None = None,
                exc: BaseException | None = None) -> None:
        assert self._outcome is not None
        if self._outcome.done():
            return
        if result is not None:
            self._outcome.set_result(result)
        else:
            assert exc is not None
            self._outcome.set_exception(exc)
            if self._notify is not None and isinstance(exc, P4Error) and not self.fatal:
                self._notify("failed", self, exc)
        if self._group is not None:
            self._group.release(self)

    async def result(self) -> PairingResult:
        """Wait for the attempt that consumes this invitation to end (no timeout)."""
        assert self._outcome is not None, "publish() first"
        return await asyncio.shield(self._outcome)

    async def wait(self, timeout: float = 600.0) -> PairingResult:
        """Pair with the first accepter whose PAIR_PAKE is answered; the invitation is then spent
        either way.  Streams that fail before that do not count.  Closes the invitation."""
        try:
            try:
                return await asyncio.wait_for(self.result(), timeout)
            except TimeoutError:
                raise P4Error(ErrorCode.PAIR_INVITATION_EXPIRED,
                              f"nobody accepted the invitation within {timeout:.0f} s") from None
        finally:
            await self.close()

    async def close(self) -> None:
        if self._outcome is not None and not self._outcome.done():
            self._outcome.cancel()
        if self._handle is not None:
            with contextlib.suppress(P4Error):
                await self._tor.unpublish(self._handle)
            self._handle = None
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._group is not None:
            self._group.release(self)


async def create_invitation(
    tor: TorDriver, identity_seed: bytes, *, uri: bool = False,
    expires_s: float = DEFAULT_EXPIRY_MS / 1000, rng: Callable[[int], bytes] = os.urandom,
    group: InviteGroup | None = None,
    notify: Callable[[Notice, PendingInvite, P4Error | None], None] | None = None,
    on_paired: Callable[[PairingResult], object] | None = None,
) -> PendingInvite:
    """Make a short code (or a ``p4:pair`` URI), publish its onion, and return the pending
    invitation; ``await invite.wait()`` pairs with whoever uses it first.

    ``on_paired`` stores the pair: it runs when the machine reports PAIRED, before the inviter's
    PAIR_DONE is sent, and if it raises that PAIR_DONE is never sent (p4-02 [PAIR-63]).
    """
    expires_ms = unix_ms() + int(expires_s * 1000)
    if uri:
        secret, expires = rng(32), -(-expires_ms // 1000)
        # the URI commits to our identity key, which the accepter checks (p4-02 §5.2)
        u = InviteUri.create(secret, expires, Identity(identity_seed).public_key)
        invite = PendingInvite(tor, identity_seed, Invitation.from_uri(u), u.onion_seed, str(u),
                               rng, group=group, notify=notify,
                               on_paired=on_paired)
    else:
        code = ShortCode.generate(rng(CODE_RANDOM_LEN))
        invite = PendingInvite(tor, identity_seed, Invitation.from_code(code, expires_ms),
                               code.onion_seed, str(code), rng, group=group, notify=notify,
                               on_paired=on_paired)
    await invite.publish()
    return invite


async def accept_invitation(
    tor: TorDriver, identity_seed: bytes, text: str, *, timeout: float = 120.0,
    rng: Callable[[int], bytes] = os.urandom, dial_timeout: float = DIAL_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> PairingResult:
    """Use a short code or a ``p4:pair`` URI: dial the inviter's pairing onion and pair.

    Gives up reaching the onion after ``min(dial_timeout, timeout)`` seconds (a code nobody
    serves: mistyped number, expired, or already used), raising the Tor driver's error.
    """
    if text.strip().lower().startswith("p4:"):
        u = parse_uri(text)
        invitation, seed = Invitation.from_uri(u), u.onion_seed
    else:
        c = parse_code(text)
        invitation, seed = Invitation.from_code(c), c.onion_seed
    if invitation.expires_at is not None and unix_ms() > invitation.expires_at:
        raise P4Error(ErrorCode.PAIR_INVITATION_EXPIRED, "this invitation has expired")
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    if progress is not None:
        progress("connecting to the other device over Tor…")
    reader, writer = await tor.open_stream(onion_address_from_seed(seed), PAIRING_PORT,
                                           timeout=min(dial_timeout, timeout),
                                           fresh_circuit=True)
    if progress is not None:
        progress("connected; checking the code…")
    machine = PairingMachine(Role.ACCEPTER, invitation, identity_seed, rng)
    first = machine.start(unix_ms())
    return await _run(machine, first, reader, writer, max(1.0, timeout - (loop.time() - t0)))
