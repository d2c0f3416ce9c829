"""The rendezvous exchange driven by p4ref.io.pump over a plain loopback TCP stream: the same
asyncio shell the Tor path uses, without Tor, so driver bugs show up in milliseconds."""

from __future__ import annotations

import asyncio
import time

from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.signal import answer_on_stream, offer_on_stream
from p4ref.rendezvous import OfferReceived

SEED_A, SEED_B = b"a" * 32, b"b" * 32
PUB_A, PUB_B = (bytes(SigningKey(s).verify_key) for s in (SEED_A, SEED_B))
FP_OFFER, FP_ANSWER = b"\x01" * 32, b"\x02" * 32


async def _exchange(answer_seed: bytes = SEED_A) -> tuple[object, object, float]:
    results: asyncio.Queue[object] = asyncio.Queue()

    async def answer(ev: OfferReceived) -> tuple[str, bytes]:
        return "v=0 answer", FP_ANSWER

    async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await results.put(await answer_on_stream(answer_seed, PUB_B, r, w, answer,
                                                     timeout=10))
        except P4Error as exc:
            await results.put(exc)
        finally:
            w.close()

    async def offer() -> tuple[str, bytes]:
        return "v=0 offer", FP_OFFER

    server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        dialed: object = await offer_on_stream(SEED_B, PUB_A, reader, writer, offer, 3, 17, 0,
                                               t0, 10)
    except P4Error as exc:
        dialed = exc
    accepted = await results.get()
    writer.close()
    server.close()
    return dialed, accepted, time.monotonic() - t0


def test_offer_answer_over_loopback_is_prompt() -> None:
    dialed, accepted, _ = asyncio.run(_exchange())
    assert not isinstance(dialed, Exception) and not isinstance(accepted, Exception)
    assert dialed.peer_sdp == "v=0 answer" and dialed.peer_fingerprint == FP_ANSWER  # type: ignore[attr-defined]
    assert accepted.peer_sdp == "v=0 offer" and accepted.generation == 3  # type: ignore[attr-defined]
    assert accepted.peer_last_rx == 17  # type: ignore[attr-defined]
    # A frame left unflushed would stall until the machine's 30 s HELLO/ANSWER timer; the pump's
    # 10 s timeout turns that into a failure above, without any timed assertion.


def test_wrong_identity_fails_on_both_sides() -> None:
    dialed, accepted, _ = asyncio.run(_exchange(answer_seed=b"c" * 32))
    assert isinstance(dialed, P4Error) and isinstance(accepted, P4Error)
    codes = {dialed.code, accepted.code}
    assert ErrorCode.RDV_UNKNOWN_PEER in codes or ErrorCode.RDV_BAD_SIGNATURE in codes, codes
