"""What Tor costs P⁴'s rendezvous path, against loopback TCP measured in the same run.

    python bench/bench_tor.py [--rounds 50] [--fresh 10] [--size 64] [--json] [--quick]
                              [--tornet DIR]

Starts the private network (tools/tornet.py) — or uses the running one described in
``DIR/tornet.json`` with ``--tornet DIR`` (``tools/tornet.py up --dir DIR``, or the test suite's) —
publishes a client-authorized onion from a seed on
client 0 (:class:`p4ref.io.tor.TorDriver`), dials it from client 1 and reports:

- network start (keys + phased launch + all clients bootstrapped) and ``publish`` (ADD_ONION
  until every HSDir upload is done);
- first connect (SOCKS through to the echo server, plus the first echo);
- small-message round trip over one open onion stream (median / p90 of ``--rounds``) — the
  cost of re-signalling while a session keeps its stream open (ARCHITECTURE decision 4);
- round trip on a fresh circuit each time (new SOCKS username → new rendezvous; median of
  ``--fresh``) — the cost when nothing is kept open;
- loopback TCP round trip to the same echo server (the floor), with ratios.

Tor's latency comes in steps of ~40 ms on some circuits (Nagle × delayed ACK inside tor;
research/tor-lab.md pitfall 6), so medians can jump between runs; compare ratios, not digits.
``--quick`` (or ``P4_BENCH_QUICK=1``): 5 rounds and 2 fresh circuits, for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p4ref.io.tor import TorConfig, TorDriver
from p4ref.io.tornet import ClientInfo, TorNet, clients_in
from p4ref.rendezvous._onion import client_auth_keypair


class _EchoServer:
    """An asyncio echo server on 127.0.0.1 that closes its open connections on ``aclose``."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None
        self.port = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writers.discard(writer)
            writer.close()

    async def start(self) -> int:
        def spawn(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
            task = asyncio.get_running_loop().create_task(self._handle(r, w))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        self.server = await asyncio.start_server(spawn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def aclose(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for w in list(self.writers):
            w.close()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def _rtts(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int, size: int
) -> list[float]:
    out: list[float] = []
    msg = b"\x5a" * size
    for _ in range(n):
        t = time.perf_counter()
        writer.write(msg)
        await writer.drain()
        await reader.readexactly(size)
        out.append(time.perf_counter() - t)
    return out


def _p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def _bench(clients: list[ClientInfo], rounds: int, fresh: int, size: int
                 ) -> dict[str, float]:  # fmt: skip
    r: dict[str, float] = {}
    echo = _EchoServer()
    lport = await echo.start()
    host = TorDriver(TorConfig.testnet(clients[0]))
    peer = TorDriver(TorConfig.testnet(clients[1]))
    await host.start()
    await peer.start()
    try:
        # fresh keys each run: a shared network may hold an earlier run's descriptor
        seed = hashlib.sha256(b"p4 bench tor onion" + os.urandom(16)).digest()
        priv, pub = client_auth_keypair(hashlib.sha256(b"p4 bench tor auth").digest())
        t = time.perf_counter()
        handle = await host.publish(seed, {80: lport}, [pub])
        r["publish_s"] = time.perf_counter() - t
        await peer.add_client_auth(handle.address, priv)

        t = time.perf_counter()
        reader, writer = await peer.open_stream(handle.address, 80, timeout=60)
        await _rtts(reader, writer, 1, size)
        r["first_connect_s"] = time.perf_counter() - t
        await _rtts(reader, writer, 3, size)  # warm-up
        onion = await _rtts(reader, writer, rounds, size)
        writer.close()
        await writer.wait_closed()
        r["onion_rtt_median_ms"] = statistics.median(onion) * 1e3
        r["onion_rtt_p90_ms"] = _p(onion, 0.9) * 1e3
        r["onion_rtt_min_ms"] = min(onion) * 1e3

        fresh_total: list[float] = []
        fresh_rtt: list[float] = []
        for _ in range(fresh):
            t = time.perf_counter()
            reader, writer = await peer.open_stream(
                handle.address, 80, timeout=60, fresh_circuit=True
            )
            (one,) = await _rtts(reader, writer, 1, size)
            fresh_total.append(time.perf_counter() - t)
            fresh_rtt.append(one)
            writer.close()
            await writer.wait_closed()
        r["fresh_circuit_connect_plus_rtt_median_ms"] = statistics.median(fresh_total) * 1e3
        r["fresh_circuit_connect_plus_rtt_max_ms"] = max(fresh_total) * 1e3
        r["fresh_circuit_first_rtt_median_ms"] = statistics.median(fresh_rtt) * 1e3

        reader, writer = await asyncio.open_connection("127.0.0.1", lport)
        await _rtts(reader, writer, 10, size)
        loop_rtts = await _rtts(reader, writer, max(rounds, 200), size)
        writer.close()
        await writer.wait_closed()
        r["loopback_rtt_median_ms"] = statistics.median(loop_rtts) * 1e3
        r["loopback_rtt_p90_ms"] = _p(loop_rtts, 0.9) * 1e3
    finally:
        await peer.close()
        await host.close()
        await echo.aclose()
    lo = r["loopback_rtt_median_ms"]
    r["ratio_onion_open_vs_loopback"] = r["onion_rtt_median_ms"] / lo
    r["ratio_fresh_vs_open"] = (
        r["fresh_circuit_connect_plus_rtt_median_ms"] / r["onion_rtt_median_ms"]
    )
    r["ratio_fresh_vs_loopback"] = r["fresh_circuit_connect_plus_rtt_median_ms"] / lo
    return r


def main() -> None:
    warnings.filterwarnings("ignore", r"setDaemon\(\) is deprecated", DeprecationWarning)
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=50, help="round trips on the open stream")
    ap.add_argument("--fresh", type=int, default=10, help="fresh-circuit connections")
    ap.add_argument("--size", type=int, default=64, help="message size in bytes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="5 rounds, 2 fresh circuits, for CI (also: P4_BENCH_QUICK=1)")
    ap.add_argument("--tornet", metavar="DIR", help="use the running network described in DIR")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.fresh = 5, 2

    results: dict[str, float] = {}
    if args.tornet:
        results.update(asyncio.run(_bench(clients_in(args.tornet), args.rounds, args.fresh,
                                          args.size)))  # fmt: skip
    else:
        t = time.perf_counter()
        with TorNet() as net:
            results["network_start_s"] = time.perf_counter() - t
            results.update({f"network_{k}_s": v for k, v in net.timings.items() if k != "total"})
            results.update(asyncio.run(_bench(net.clients, args.rounds, args.fresh, args.size)))
    if args.json:
        print(json.dumps({k: round(v, 4) for k, v in results.items()}, indent=2))
        return
    print(f"tor bench: {args.size}-byte messages, {args.rounds} rounds open, {args.fresh} fresh")
    for key, value in results.items():
        unit = "x" if key.startswith("ratio") else ""
        print(f"  {key:44s} {value:12.3f}{unit}")


if __name__ == "__main__":
    main()
