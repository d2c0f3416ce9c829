"""The rendezvous exchange driven by p4ref.io.pump over a plain loopback TCP stream: the same
asyncio shell the Tor path uses, without Tor, so driver bugs show up in milliseconds.

Each exchange runs under the pump's 10 s timeout while the machines' own HELLO/ANSWER timers are
30 s: a frame left unflushed would therefore fail these tests, without any timed assertion."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nacl.signing import SigningKey

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.replay_store import ReplayStore
from p4ref.io.signal import (
    PeerReplay,
    SignalLink,
    SignalOutcome,
    answer_on_stream,
    offer_on_stream,
    peer_replay,
)
from p4ref.rendezvous import OfferReceived

SEED_A, SEED_B = b"a" * 32, b"b" * 32
PUB_A, PUB_B = (bytes(SigningKey(s).verify_key) for s in (SEED_A, SEED_B))
FP_OFFER, FP_ANSWER = b"\x01" * 32, b"\x02" * 32


async def answer(ev: OfferReceived) -> tuple[str, bytes]:
    return f"v=0 answer to {ev.generation}", FP_ANSWER


async def offer() -> tuple[str, bytes]:
    return "v=0 offer", FP_OFFER


async def _linked(answer_seed: bytes = SEED_A, rounds: int = 1, *,
                  a_replay: PeerReplay | None = None, b_replay: PeerReplay | None = None,
                  first_gen: int = 3, b_default: bool = False,
                  ) -> tuple[list[SignalOutcome | P4Error], list[SignalOutcome | P4Error]]:
    """B dials A over loopback; ``rounds`` OFFER/ANSWER exchanges on the one stream.  Each run
    gets fresh replay state unless one is given (a test process is many devices' lifetimes)."""
    a_replay = a_replay or PeerReplay(PUB_B)
    if not b_default:
        b_replay = b_replay or PeerReplay(PUB_A)
    accepted: list[SignalOutcome | P4Error] = []
    dialed: list[SignalOutcome | P4Error] = []
    served = asyncio.Event()

    async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            first = await answer_on_stream(answer_seed, PUB_B, r, w, answer, timeout=10,
                                           replay=a_replay)
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
        link: SignalLink = await offer_on_stream(SEED_B, PUB_A, reader, writer, timeout=10,
                                                 replay=b_replay)
        for gen in range(first_gen, first_gen + rounds):
            dialed.append(await link.offer(offer, gen, last_rx=17 + gen, timeout=10))
        await link.close()
    except P4Error as exc:
        dialed.append(exc)
        writer.close()  # a refused OFFER leaves the stream to the acceptor: end it
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


def test_one_replay_state_per_peer_for_dialed_and_accepted_streams() -> None:
    """RDV-27: every stream of a pair, dialed or accepted, shares one nonce cache and one
    generation mark; the dialer used to build a new cache per stream (issue 8 §1.4)."""
    shared = peer_replay(PUB_B, PUB_A)
    assert shared is peer_replay(PUB_B, PUB_A) and shared is not peer_replay(PUB_A, PUB_B)
    first_gen = shared.last_generation() + 1
    d1, _ = asyncio.run(_linked(b_replay=None, b_default=True, first_gen=first_gen))
    d2, _ = asyncio.run(_linked(b_replay=None, b_default=True, first_gen=first_gen + 1))
    assert isinstance(d1[0], SignalOutcome) and isinstance(d2[0], SignalOutcome)
    m1, m2 = d1[0].link.machine, d2[0].link.machine
    assert m1.nonces is m2.nonces is shared.nonces
    assert len(shared.nonces) == 4  # the acceptor's HELLO and ANSWER on each stream
    assert shared.last_generation() == first_gen + 1


def test_replayed_generation_refused_after_restart(tmp_path: Path) -> None:
    """RDV-52: the acceptor persists its high-water mark before it answers; after a restart (a
    new PeerReplay reading the same file) an OFFER of the generation already answered is
    refused with RDV_STALE_GENERATION, and the next one is answered.  Since p4-03 revision 3 the
    acceptor's HELLO announces that mark (RDV-59) and the dialer adopts it (RDV-60), so the
    dialer refuses the stale OFFER itself before sending it; the acceptor's own refusal of a
    stale OFFER is tests/test_rendezvous_replay.py's."""
    store_path = tmp_path / "replay.json"
    dialed, accepted = asyncio.run(_linked(a_replay=PeerReplay(PUB_B, ReplayStore(store_path))))
    assert isinstance(accepted[0], SignalOutcome) and accepted[0].generation == 3
    assert ReplayStore(store_path).last_generation(PUB_B) == 3
    restarted = PeerReplay(PUB_B, ReplayStore(store_path))
    assert restarted.last_generation() == 3
    dialed, accepted = asyncio.run(_linked(a_replay=restarted))
    assert isinstance(accepted[0], P4Error) and isinstance(dialed[0], P4Error)
    assert dialed[0].code is ErrorCode.RDV_STALE_GENERATION
    dialed, accepted = asyncio.run(_linked(a_replay=PeerReplay(PUB_B, ReplayStore(store_path)),
                                           first_gen=4))
    assert isinstance(accepted[0], SignalOutcome) and accepted[0].generation == 4
    assert ReplayStore(store_path).last_generation(PUB_B) == 4


def test_a_store_given_later_is_attached_and_written(tmp_path: Path) -> None:
    mine, peer = b"\x05" * 32, b"\x06" * 32
    replay = peer_replay(mine, peer)
    replay.advance(7)
    store = ReplayStore(tmp_path / "replay.json")
    assert peer_replay(mine, peer, store) is replay
    assert store.last_generation(peer) == 7 and replay.last_generation() == 7
    replay.advance(9)
    assert ReplayStore(tmp_path / "replay.json").last_generation(peer) == 9
