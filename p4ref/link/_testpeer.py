"""A runnable peer for the link's multi-process tests (tests/test_link*.py); not an API.

``python -m p4ref.link._testpeer '<json config>'`` runs one :class:`~p4ref.link.Link` from a
profile and obeys JSON lines on stdin; it reports JSON lines on stdout (every line has ``ev``
and ``t``, :func:`time.monotonic`, comparable across processes on one machine).

Config: ``home``, ``peer`` (name in the profile), ``tor`` (a ``ClientInfo``-like dict),
``log`` (the receive log), ``seed`` (traffic seed), optional ``dial_only``, ``peer_dial_only``,
``synchronous``.

Commands: ``{"cmd": "send", "count": N}`` submits messages ``0 … N-1`` of the deterministic
traffic (:func:`payload`), resuming after a restart at the outbox's ``tx`` (every accepted
message has seq = index + 1, so the sender neither skips nor repeats one); ``force`` (a new
generation), ``network_changed``, ``probe``, ``blackhole`` (the active generation's UDP socket
silently drops everything both ways: a dead path without root), ``status``, ``stop``.

The receiver appends ``<inc hex> <seq> <sha256 hex>`` to the log for every delivery *before* it
confirms it (the application's record of what it acted on, p4-04 §8.7), so after SIGKILLs the
log may repeat an id, never with other content; the test de-duplicates by id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import sys
import time
from typing import Any

from ..io.tor import TorConfig, TorDriver
from ..io.tornet import ClientInfo
from ..session import MAX_PAYLOAD
from . import Link, LinkConfig, LinkEvent

_SIZES = (1, 2, 17, 100, 512, 1000, 1400, 4096, 8000, 12000, MAX_PAYLOAD)


def payload(seed: int, index: int) -> bytes:
    """Message ``index`` of the traffic: sizes from 1 B to MAX_PAYLOAD, random content."""
    r = random.Random(seed * 1_000_003 + index)
    size = r.choice(_SIZES) if r.random() < 0.7 else r.randint(1, MAX_PAYLOAD)
    return r.randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def out(ev: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


def on_event(ev: LinkEvent) -> None:
    out(ev.kind, status=ev.status, gen=ev.generation, code=ev.code, by_peer=ev.by_peer,
        active=ev.active, detail=ev.detail)


async def _sender(link: Link, seed: int, count: int) -> None:
    start = link.store.watermarks(link.peer_pub).tx_next - 1
    for i in range(start, count):
        seq = await link.submit(payload(seed, i))
        if seq != i + 1:
            out("error", detail=f"message {i} got seq {seq}")
            return
        if (i + 1) % 200 == 0:
            out("sent", n=i + 1)
    out("sent_all", n=count)


async def _receiver(link: Link, log_path: str) -> None:
    n = 0
    with open(log_path, "a", buffering=1) as f:
        while True:
            d = await link.recv()
            f.write(f"{d.inc.hex()} {d.seq} {digest(d.payload)}\n")
            f.flush()
            await link.confirm(d)
            n += 1
            if n % 200 == 0:
                out("received", n=n, seq=d.seq)


def _blackhole(link: Link) -> bool:
    """Make the active generation's ICE sockets drop every datagram, both ways, silently."""
    a = link.machine.active
    rec = link._gens.get(a) if a is not None else None
    if rec is None or rec.g is None or rec.g.pc.sctp is None:
        return False
    conn = rec.g.pc.sctp.transport.transport._connection
    for p in conn._protocols:
        async def drop_data(data: bytes, addr: Any) -> None:
            return None
        p.datagram_received = lambda data, addr: None  # type: ignore[method-assign]
        p.send_data = drop_data  # type: ignore[method-assign]
        p.send_stun = lambda message, addr: None  # type: ignore[method-assign]
    return True


async def main(cfg: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO if cfg.get("verbose") else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    tor = TorDriver(TorConfig.testnet(ClientInfo(**cfg["tor"])))
    await tor.start()
    config = LinkConfig(host_addresses=("127.0.0.1",), dial_only=cfg.get("dial_only", False),
                        peer_dial_only=cfg.get("peer_dial_only", False),
                        synchronous=cfg.get("synchronous", "FULL"))
    link = Link.open(cfg["home"], cfg["peer"], tor=tor, config=config, on_event=on_event)
    await link.start()
    seed = int(cfg.get("seed", 1))
    tasks = [asyncio.create_task(_receiver(link, cfg["log"]))]
    out("ready", tx=link.store.watermarks(link.peer_pub).tx_next - 1)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "send":
            tasks.append(asyncio.create_task(_sender(link, seed, int(cmd["count"]))))
        elif c == "force":
            link.force_generation()
        elif c == "network_changed":
            link.network_changed()
        elif c == "probe":
            link.probe()
        elif c == "blackhole":
            out("blackholed", ok=_blackhole(link), gen=link.machine.active)
        elif c == "status":
            w = link.store.watermarks(link.peer_pub)
            out("status_reply", status=link.status, active=link.machine.active,
                opened=link.generations_opened, tx=w.tx_next - 1, acked=w.acked, rx=w.rx)
        elif c == "stop":
            break
    for t in tasks:
        t.cancel()
    await link.stop()
    await tor.close()
    out("stopped")
    os._exit(0)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
