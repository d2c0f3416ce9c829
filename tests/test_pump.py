"""p4ref.io.pump against the real pairing machines over loopback TCP: a failure reaches the peer
as an ERROR frame at once (not after the peer's timeout), whichever way the machine reports it."""

from __future__ import annotations

import asyncio
import os

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.pair_tor import _run
from p4ref.io.pump import unix_ms
from p4ref.pairing import Invitation, PairingMachine, Role, ShortCode
from p4ref.pairing._invite import EVEN_WORDS


def test_wrong_code_fails_both_sides_without_waiting_for_a_timer() -> None:
    code = ShortCode.generate(b"\x01\x02\x03\x04")
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
    m = PairingMachine(Role.ACCEPTER, Invitation.from_code(ShortCode.generate(bytes(4))),
                       b"a" * 32, os.urandom)
    m.start(unix_ms())
    m.receive_data(b"", unix_ms())
    assert m.state.name == "FAILED"
