"""The rendezvous exchange driven by p4ref.io.pump over a plain loopback TCP stream: the same
asyncio shell the Tor path uses, without Tor, so driver bugs show up in milliseconds.

Each exchange runs under the pump's 10 s timeout while the machines' own HELLO/ANSWER timers are
30 s: a frame left unflushed would therefore fail these tests, without any timed assertion."""

from __future__ import annotations

import asyncio

from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.signal import SignalLink, SignalOutcome, answer_on_stream, offer_on_stream
from p4ref.rendezvous import OfferReceived

SEED_A, SEED_B = b"a" * 32, b"b" * 32
PUB_A, PUB_B = (bytes(SigningKey(s).verify_key) for s in (SEED_A, SEED_B))
FP_OFFER, FP_ANSWER = b"\x01" * 32, b"\x02" * 32


async def answer(ev: OfferReceived) -> tuple[str, bytes]:
    return f"v=0 answer to {ev.generation}", FP_ANSWER


async def offer() -> tuple[str, bytes]:
    return "v=0 offer", FP_OFFER


async def _linked(answer_seed: bytes = SEED_A, rounds: int = 1
                  ) -> tuple[list[SignalOutcome | P4Error], list[SignalOutcome | P4Error]]:
    """B dials A over loopback; ``rounds`` OFFER/ANSWER exchanges on the one stream."""
    accepted: list[SignalOutcome | P4Error] = []
    dialed: list[SignalOutcome | P4Error] = []
    served = asyncio.Event()

    async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            first = await answer_on_stream(answer_seed, PUB_B, r, w, answer, timeout=10)
            accepted.append(first)
            for _ in range(rounds - 1):
                accepted.append(await first.link.answer(answer, timeout=10))
        except P4Error as exc:
            accepted.append(exc)
        finally:
            w.close()
            served.set()

    server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    try:
        link: SignalLink = await offer_on_stream(SEED_B, PUB_A, reader, writer, generation=3,
                                                 timeout=10)
        for gen in range(3, 3 + rounds):
            dialed.append(await link.offer(offer, gen, last_rx=17 + gen, timeout=10))
        await link.close()
    except P4Error as exc:
        dialed.append(exc)
    await asyncio.wait_for(served.wait(), 10)
    writer.close()
    server.close()
    return dialed, accepted


def test_offer_answer_over_loopback() -> None:
    dialed, accepted = asyncio.run(_linked())
    d, a = dialed[0], accepted[0]
    assert isinstance(d, SignalOutcome) and isinstance(a, SignalOutcome)
    assert d.peer_sdp == "v=0 answer to 3" and d.peer_fingerprint == FP_ANSWER
    assert a.peer_sdp == "v=0 offer" and a.generation == 3 and a.peer_last_rx == 20


def test_resignalling_reuses_the_open_stream() -> None:
    dialed, accepted = asyncio.run(_linked(rounds=4))
    assert [o.generation for o in dialed] == [3, 4, 5, 6]  # type: ignore[union-attr]
    assert [o.generation for o in accepted] == [3, 4, 5, 6]  # type: ignore[union-attr]
    assert all(o.link is accepted[0].link for o in accepted)  # type: ignore[union-attr]


def test_wrong_identity_fails_on_both_sides() -> None:
    dialed, accepted = asyncio.run(_linked(answer_seed=b"c" * 32))
    assert isinstance(dialed[0], P4Error) and isinstance(accepted[0], P4Error)
    codes = {dialed[0].code, accepted[0].code}
    assert ErrorCode.RDV_UNKNOWN_PEER in codes or ErrorCode.RDV_BAD_SIGNATURE in codes, codes
