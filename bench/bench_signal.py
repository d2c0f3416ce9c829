"""Signed signalling over the private Tor network: open stream vs fresh circuit (issue 4 §6).

    python bench/bench_signal.py [--rounds 10] [--quick] [--tornet DIR]

Measures, in one run:
- the first exchange (dial the derived onion + HELLO both ways + OFFER/ANSWER);
- re-signalling over the open onion stream (one OFFER/ANSWER, generation n+1), median of N;
- a full exchange on a fresh circuit each time (new SOCKS isolation, HELLO, OFFER/ANSWER);
- the same signed OFFER/ANSWER over loopback TCP (the baseline: protocol cost without Tor).
All ratios are against that loopback baseline. Tor here is a private network on 127.0.0.1, so
the numbers are Tor's own overhead (circuits, cells, Nagle; research/tor-lab.md pitfall 6), not
Internet latency. ``--tornet DIR`` uses the running network described in ``DIR/tornet.json``
instead of starting one; ``--quick`` (or ``P4_BENCH_QUICK=1``): 2 rounds, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from dataclasses import dataclass, field

from nacl.signing import SigningKey

from p4ref.io.signal import (
    PairService,
    SignalLink,
    answer_on_stream,
    dial_and_offer,
    offer_on_stream,
)
from p4ref.io.tor import TorConfig, TorDriver
from p4ref.io.tornet import ClientInfo, TorNet, clients_in
from p4ref.rendezvous import OfferReceived

SEED_A, SEED_B = b"bench-a".ljust(32, b"\0"), b"bench-b".ljust(32, b"\0")
PUB_A, PUB_B = (bytes(SigningKey(s).verify_key) for s in (SEED_A, SEED_B))
# the loopback baseline is another pair: replay state (the generation high-water mark) belongs to
# a pair, so the two parts must not share one; within each part generations only increase
SEED_C, SEED_D = b"bench-c".ljust(32, b"\0"), b"bench-d".ljust(32, b"\0")
PUB_C, PUB_D = (bytes(SigningKey(s).verify_key) for s in (SEED_C, SEED_D))
SDP = "v=0\r\n" + "a=candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host\r\n" * 4


async def offer() -> tuple[str, bytes]:
    return SDP, b"\x01" * 32


async def answer(ev: OfferReceived) -> tuple[str, bytes]:
    return SDP, b"\x02" * 32


async def loopback_baseline(rounds: int) -> tuple[float, list[float]]:
    links: list[SignalLink] = []
    served = asyncio.Event()

    async def on_stream(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        first = await answer_on_stream(SEED_C, PUB_D, r, w, answer, timeout=30)
        for _ in range(rounds):
            await first.link.answer(answer, timeout=30)
        links.append(first.link)
        served.set()

    server = await asyncio.start_server(on_stream, "127.0.0.1", 0)
    t0 = time.perf_counter()
    r, w = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
    link = await offer_on_stream(SEED_D, PUB_C, r, w, generation=1, timeout=30)
    await link.offer(offer, 1, timeout=30)
    first = time.perf_counter() - t0
    again = []
    for gen in range(2, rounds + 2):
        t = time.perf_counter()
        await link.offer(offer, gen, timeout=30)
        again.append(time.perf_counter() - t)
    await served.wait()
    w.close()
    server.close()
    return first, again


@dataclass
class TorTimes:
    publish: float = 0.0
    first: float = 0.0
    open_stream: list[float] = field(default_factory=list)
    fresh_circuit: list[float] = field(default_factory=list)


async def over_tor(clients: list[ClientInfo], rounds: int) -> TorTimes:
    root = os.urandom(32)
    da = TorDriver(TorConfig.testnet(clients[0]))
    db = TorDriver(TorConfig.testnet(clients[1]))
    await da.start()
    await db.start()
    service = PairService(da, SEED_A, PUB_A, PUB_B, root)
    out = TorTimes()
    try:
        t = time.perf_counter()
        await service.start()
        out.publish = time.perf_counter() - t
        acc, dial = await asyncio.gather(
            service.answer_next(answer, keep_open=True),
            dial_and_offer(db, SEED_B, PUB_B, PUB_A, root, offer, generation=1,
                           keep_open=True),
        )
        out.first = dial.seconds
        for gen in range(2, rounds + 2):
            t = time.perf_counter()
            await asyncio.gather(acc.link.answer(answer), dial.link.offer(offer, gen))
            out.open_stream.append(time.perf_counter() - t)
        await dial.link.close()
        await acc.link.close()
        for gen in range(rounds):
            t = time.perf_counter()
            await asyncio.gather(
                service.answer_next(answer),
                dial_and_offer(db, SEED_B, PUB_B, PUB_A, root, offer, generation=rounds + 2 + gen,
                               fresh_circuit=True),
            )
            out.fresh_circuit.append(time.perf_counter() - t)
    finally:
        await service.close()
        await da.close()
        await db.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="2 rounds, for CI (also: P4_BENCH_QUICK=1)")
    ap.add_argument("--tornet", metavar="DIR", help="use the running network described in DIR")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds = 2
    base_first, base_again = asyncio.run(loopback_baseline(args.rounds))
    base = statistics.median(base_again)
    started = None
    if args.tornet:
        tor = asyncio.run(over_tor(clients_in(args.tornet), args.rounds))
    else:
        net = TorNet()
        t = time.perf_counter()
        net.start(timeout=180)
        started = time.perf_counter() - t
        try:
            tor = asyncio.run(over_tor(net.clients, args.rounds))
        finally:
            net.stop()
    ms = 1000.0
    print(f"{'measurement':<48}{'ms':>10}{'× loopback':>12}")
    if started is not None:
        print(f"{'private Tor network start':<48}{started * ms:>10.0f}")
    print(f"{'publish derived onion':<48}{tor.publish * ms:>10.0f}")
    print(f"{'loopback: first exchange (HELLO + OFFER/ANSWER)':<48}{base_first * ms:>10.2f}")
    print(f"{'loopback: re-signal OFFER/ANSWER, median':<48}{base * ms:>10.2f}{1.0:>12.1f}")
    print(f"{'tor: first exchange (dial + HELLO + OFFER/ANSWER)':<48}{tor.first * ms:>10.1f}"
          f"{tor.first / base:>12.0f}")
    for label, xs in (("open stream", tor.open_stream), ("fresh circuit", tor.fresh_circuit)):
        med = statistics.median(xs)
        worst = max(xs)
        print(f"{'tor: ' + label + ', median':<48}{med * ms:>10.1f}{med / base:>12.0f}")
        print(f"{'tor: ' + label + ', max':<48}{worst * ms:>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
