"""p4ref.io.pump against the real pairing machines over loopback TCP: a failure reaches the peer
as an ERROR frame at once (not after the peer's timeout), whichever way the machine reports it."""

from __future__ import annotations

import asyncio
import os

from p4ref.errors import ErrorCode, P4Error
from p4ref.framing import Frame, FrameReader, FrameType, encode_cbor, encode_frame, parse_error_body
from p4ref.framing import Path as FramePath
from p4ref.io.pair_tor import (
    PAIRING_PORT,
    InviteGroup,
    PairingResult,
    PendingInvite,
    _run,
    accept_invitation,
    create_invitation,
)
from p4ref.io.pump import unix_ms
from p4ref.io.tor import OnionHandle
from p4ref.pairing import Invitation, PairingMachine, Role, ShortCode, parse_code
from p4ref.pairing._invite import CODE_RANDOM_LEN, EVEN_WORDS
from p4ref.rendezvous._onion import onion_address_from_seed


def test_wrong_code_fails_both_sides_without_waiting_for_a_timer() -> None:
    code = ShortCode.generate(b"\x01\x02\x03\x04\x05\x06")
    other = next(w for w in EVEN_WORDS if w != code.words[1])
    typo = f"{code.nameplate}-{code.words[0]}-{other}"

    async def scenario() -> dict[str, object]:
        results: dict[str, object] = {}
        done = asyncio.Event()

        async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            m = PairingMachine(Role.INVITER, Invitation.from_code(code, unix_ms() + 600_000),
                               b"i" * 32, os.urandom)
            try:
                results["inviter"] = await _run(m, m.start(unix_ms()), r, w, timeout=10)
            except P4Error as exc:
                results["inviter"] = exc
            done.set()

        server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        m = PairingMachine(Role.ACCEPTER, Invitation.from_code(typo), b"a" * 32, os.urandom)
        try:
            results["accepter"] = await _run(m, m.start(unix_ms()), r, w, timeout=10)
        except P4Error as exc:
            results["accepter"] = exc
        # The machines' own timeout is 60 s; the pump's is 10 s: only an ERROR frame that was
        # actually flushed, or an EOF the machine understood, ends the inviter before that.
        await asyncio.wait_for(done.wait(), 5)
        server.close()
        return results

    results = asyncio.run(scenario())
    for role in ("inviter", "accepter"):
        assert isinstance(results[role], P4Error), results
        assert results[role].code is ErrorCode.PAIR_CONFIRM_FAILED  # type: ignore[union-attr]


def test_end_of_stream_is_connection_lost_for_the_pairing_machine() -> None:
    code = ShortCode.generate(bytes(CODE_RANDOM_LEN))
    m = PairingMachine(Role.ACCEPTER, Invitation.from_code(code), b"a" * 32, os.urandom)
    m.start(unix_ms())
    m.receive_data(b"", unix_ms())
    assert m.state.name == "FAILED"


# --- the inviter serves every stream on its own machine (issue 8 §1.3, p4-02 [PAIR-48]) -------

class _LoopbackTor:
    """Stands in for TorDriver: "publishing" an onion just remembers the local port."""

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}

    async def publish(self, seed: bytes, port_map: dict[int, int]) -> OnionHandle:
        addr = onion_address_from_seed(seed)
        self.ports[addr] = port_map[PAIRING_PORT]
        return OnionHandle(addr)

    async def unpublish(self, handle: OnionHandle) -> None:
        self.ports.pop(handle.address, None)

    async def open_stream(self, addr: str, port: int, timeout: float = 60.0,
                          **_: object) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if addr not in self.ports:
            raise P4Error(ErrorCode.TOR_ONION_UNREACHABLE, "descriptor not found")
        return await asyncio.open_connection("127.0.0.1", self.ports[addr])


def _frame(ftype: FrameType, body: object) -> bytes:
    return encode_frame(Frame(ftype, 0, encode_cbor(body)), FramePath.TOR)  # type: ignore[arg-type]


JUNK = [
    b"",  # connect and close
    b"\x00" * 7,  # not a frame
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    _frame(FrameType.PAIR_PAKE, {1: 1, 2: b"short"}),  # malformed PAIR_PAKE body
    _frame(FrameType.PAIR_PAKE, {1: 1, 2: bytes(32)}),  # not a group element
    _frame(FrameType.PAIR_CONFIRM, {1: bytes(32)}),  # out of order
    _frame(FrameType.ERROR, {1: 5, 2: "go away"}),  # an ERROR before the PAKE
]


async def _junk(tor: _LoopbackTor, onion: str, data: bytes) -> bytes:
    r, w = await tor.open_stream(onion, PAIRING_PORT)
    w.write(data)
    await w.drain()
    if not data:
        w.close()
        return b""
    got = await asyncio.wait_for(r.read(4096), 5)
    w.close()
    return got


def test_junk_streams_before_the_pake_do_not_burn_the_invitation() -> None:
    seed_i, seed_a = os.urandom(32), os.urandom(32)

    async def scenario() -> tuple[object, object, int]:
        tor = _LoopbackTor()
        invite = await create_invitation(tor, seed_i, expires_s=60)  # type: ignore[arg-type]
        silent = await tor.open_stream(invite.onion, PAIRING_PORT)  # connects, says nothing
        await asyncio.gather(*(_junk(tor, invite.onion, j) for j in JUNK))
        mine, theirs = await asyncio.gather(
            invite.wait(timeout=30),
            accept_invitation(tor, seed_a, invite.text, timeout=30),  # type: ignore[arg-type]
        )
        silent[1].close()
        return mine, theirs, invite.streams_dropped

    mine, theirs, dropped = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(mine, PairingResult) and isinstance(theirs, PairingResult)
    assert mine.sas == theirs.sas and mine.pair_root_key == theirs.pair_root_key
    assert dropped == len(JUNK)


def test_answered_pake_consumes_it_and_later_streams_are_told_so() -> None:
    seed_i = os.urandom(32)

    async def scenario() -> tuple[BaseException | None, BaseException | None, bytes]:
        tor = _LoopbackTor()
        invite = await create_invitation(tor, seed_i, expires_s=60)  # type: ignore[arg-type]
        code = parse_code(invite.text)
        other = next(w for w in EVEN_WORDS if w != code.words[1])
        typo = f"{code.nameplate}-{code.words[0]}-{other}"
        guess = accept_invitation(tor, os.urandom(32), typo, timeout=30)  # type: ignore[arg-type]
        results = await asyncio.gather(invite.result(), guess, return_exceptions=True)
        late = await _junk(tor, invite.onion, _frame(FrameType.PAIR_PAKE, {1: 1, 2: bytes(32)}))
        await invite.close()
        return (*results[:2], late)  # type: ignore[return-value]

    inviter, accepter, late = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(inviter, P4Error) and inviter.code is ErrorCode.PAIR_CONFIRM_FAILED
    assert isinstance(accepter, P4Error) and accepter.code is ErrorCode.PAIR_CONFIRM_FAILED
    reader = FrameReader(FramePath.TOR)
    reader.feed(late)
    frame = reader.next_frame()
    assert frame is not None and frame.type == FrameType.ERROR
    assert parse_error_body(frame.body)[0] == ErrorCode.PAIR_INVITATION_BURNT


def test_short_code_and_uri_fail_independently() -> None:
    seed_i, seed_a = os.urandom(32), os.urandom(32)

    async def scenario() -> tuple[PendingInvite, PairingResult, BaseException | None]:
        tor = _LoopbackTor()
        group = InviteGroup()
        code = await create_invitation(tor, seed_i, expires_s=60,  # type: ignore[arg-type]
                                       group=group)
        uri = await create_invitation(tor, seed_i, uri=True, expires_s=60,  # type: ignore[arg-type]
                                      group=group)
        c = parse_code(code.text)
        typo = f"{c.nameplate}-{c.words[0]}-{next(w for w in EVEN_WORDS if w != c.words[1])}"
        guess: BaseException | None = None
        try:
            await accept_invitation(tor, os.urandom(32), typo, timeout=30)  # type: ignore[arg-type]
        except P4Error as exc:
            guess = exc
        (winner, mine), theirs = await asyncio.gather(
            group.wait(30),
            accept_invitation(tor, seed_a, uri.text, timeout=30),  # type: ignore[arg-type]
        )
        assert mine.sas == theirs.sas
        for m in group.members:
            await m.close()
        return winner, mine, guess

    winner, _, guess = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert isinstance(guess, P4Error) and guess.code is ErrorCode.PAIR_CONFIRM_FAILED
    assert winner.is_uri


def test_group_wait_retrieves_every_exception() -> None:
    """Both invitations expiring together must not leave "Task exception was never retrieved"."""

    async def scenario() -> P4Error:
        tor = _LoopbackTor()
        group = InviteGroup()
        for uri in (False, True):
            await create_invitation(tor, os.urandom(32), uri=uri,  # type: ignore[arg-type]
                                    expires_s=60, group=group)
        try:
            await group.wait(0.2)
        except P4Error as exc:
            return exc
        finally:
            for m in group.members:
                await m.close()
        raise AssertionError("no timeout")

    err = asyncio.run(scenario())
    assert err.code is ErrorCode.PAIR_INVITATION_EXPIRED


def test_inviter_stores_before_its_pair_done_and_sends_none_if_storing_fails() -> None:
    """p4-02 [PAIR-63]: the inviter's application stores the pair before the PAIR_DONE the
    machine queued with PAIRED goes out, and never sends it if storing fails."""

    async def scenario(fail: bool) -> tuple[list[str], object, object]:
        tor = _LoopbackTor()
        log: list[str] = []

        def store(result: PairingResult) -> None:
            log.append("stored")
            if fail:
                raise P4Error(ErrorCode.PEER_EXISTS, "refused by the user")

        invite = await create_invitation(tor, os.urandom(32), expires_s=60,  # type: ignore[arg-type]
                                         on_paired=store)

        async def accept() -> PairingResult:
            r = await accept_invitation(tor, os.urandom(32), invite.text,  # type: ignore[arg-type]
                                        timeout=5)
            log.append("accepter paired")
            return r

        mine, theirs = await asyncio.gather(invite.wait(timeout=30), accept(),
                                            return_exceptions=True)
        return log, mine, theirs

    log, mine, theirs = asyncio.run(scenario(False))
    assert isinstance(mine, PairingResult) and isinstance(theirs, PairingResult)
    assert log == ["stored", "accepter paired"]
    log, mine, theirs = asyncio.run(scenario(True))
    assert isinstance(mine, P4Error) and mine.code is ErrorCode.PEER_EXISTS
    assert isinstance(theirs, P4Error) and theirs.code is ErrorCode.PAIR_OUTCOME_UNKNOWN
    assert log == ["stored"]
