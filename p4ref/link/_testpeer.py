"""A runnable peer for the link's multi-process tests (tests/test_link*.py); not an API.

``python -m p4ref.link._testpeer '<json config>'`` runs one :class:`~p4ref.link.Link` from a
profile and obeys JSON lines on stdin; it reports JSON lines on stdout (every line has ``ev``
and ``t``, :func:`time.monotonic`, comparable across processes on one machine).

Config: ``home``, ``peer`` (name in the profile), ``tor`` (a ``ClientInfo``-like dict),
``log`` (the receive log), ``seed`` (traffic seed), optional ``dial_only``, ``peer_dial_only``,
``synchronous``, ``follower_delay``, ``high_delay``, ``open_timeout`` (seconds a generation's
data channel may take to open, p4-04 CONNECT_TIMEOUT), ``block_direct`` (every ICE socket of
this process drops every datagram, both ways, so no generation can open and the session runs
on the onion stream, p4-04 §5.1; the command ``allow_direct`` lifts it, ``block_direct`` sets
it again), ``tor_path`` (false: no session connection on the onion stream, p4-04 SES-70, for
a test whose other end only signals).
For the network lab (tests/test_lab_session.py): ``host_addresses`` (a list, or
null for every interface address; default ``["127.0.0.1"]``), ``ice_servers`` (a list of
``{"urls": [...], "username", "credential"}``), ``tor_overrides`` (``TorConfig`` fields, e.g.
``control_socket``, ``socks_port``) and ``netwatch`` (watch this process's network namespace:
on each change report ``netchange``, nudge tor (``DisableNetwork`` 1→0) if an address was
lost, and call ``network_changed``); with ``tor_launched`` the lab's tor counts as one P⁴
launched (``p4 up --tor launch``): the link's reconnect policy nudges it (p4-03 RDV-63) and
drops and redials the streams at once, and the watcher only calls ``network_changed``.

With ``"channels": true`` the traffic runs on p4-05 channels: ``{"cmd": "chsend", "name": X,
"count": N, "size": S|null}`` writes messages ``0 … N-1`` of channel X (:func:`chan_payload`),
resuming at the channel's durable offset after a restart; the receiver logs
``<channel name> <offset> <sha256>`` per message before confirming it; ``pause`` / ``resume``
(``name``) stop and restart reading one channel (config ``paused``: names paused from the start).

Commands: ``{"cmd": "send", "count": N}`` submits messages ``0 … N-1`` of the deterministic
traffic (:func:`payload`), resuming after a restart at the outbox's ``tx`` (every accepted
message has seq = index + 1, so the sender neither skips nor repeats one); ``force`` (a new
generation), ``network_changed``, ``probe``, ``ice_servers`` (``servers``: as the config's
``ice_servers``, for the generations set up from now on), ``blackhole`` (the active
generation's UDP socket silently drops everything both ways: a dead path without root),
``allow_direct`` /
``block_direct``, ``status``, ``stop``.  Link events are reported with their ``kind`` as
``ev`` (``path`` events carry the path in ``detail``).

The receiver appends ``<inc hex> <seq> <sha256 hex>`` to the log for every delivery *before* it
confirms it (the application's record of what it acted on, p4-04 §8.7), so after SIGKILLs the
log may repeat an id, never with other content; the test de-duplicates by id.
"""

from __future__ import annotations

import asyncio
import dataclasses
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
from ..io.webrtc import IceServer
from ..session import MAX_PAYLOAD
from . import Channel, Link, LinkConfig, LinkEvent

_SIZES = (1, 2, 17, 100, 512, 1000, 1400, 4096, 8000, 12000, MAX_PAYLOAD)


def payload(seed: int, index: int) -> bytes:
    """Message ``index`` of the traffic: sizes from 1 B to MAX_PAYLOAD, random content."""
    r = random.Random(seed * 1_000_003 + index)
    size = r.choice(_SIZES) if r.random() < 0.7 else r.randint(1, MAX_PAYLOAD)
    return r.randbytes(size)


def chan_payload(seed: int, name: str, index: int, size: int | None = None) -> bytes:
    """Message ``index`` of channel ``name``'s traffic: ``size`` bytes, or mixed sizes from
    1 B to 1 MiB (most small, a few large enough to need fragmenting and credit)."""
    r = random.Random(f"{seed}:{name}:{index}")
    if size is None:
        x = r.random()
        size = (1 << 20 if x < 0.004 else r.randint(16_384, 200_000) if x < 0.04
                else r.choice(_SIZES))
    return r.randbytes(size)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def out(ev: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


def on_event(ev: LinkEvent) -> None:
    logging.getLogger("p4ref.link.testpeer").info("%s", ev)
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


async def _chsender(link: Link, seed: int, name: str, count: int, size: int | None) -> None:
    ch = link.channel(name) or await link.open_channel(name)
    offset, i = ch.offset, 0
    while i < count and offset > 0:  # resume where the durable offset is (maybe mid-message)
        n = len(chan_payload(seed, name, i, size))
        if offset < n:
            break
        offset -= n
        i += 1
    if i < count and offset:
        await ch.write(chan_payload(seed, name, i, size)[offset:], end_of_message=True)
        i += 1
    for j in range(i, count):
        await ch.send(chan_payload(seed, name, j, size))
        if (j + 1) % 100 == 0:
            out("csent", name=name, n=j + 1)
    out("csent_all", name=name, n=count)


_paused: dict[str, asyncio.Event] = {}


async def _chreceiver(ch: Channel, f: Any) -> None:
    gate = _paused.setdefault(ch.name, asyncio.Event())
    if not gate.is_set() and ch.name not in _held:
        gate.set()
    n = 0
    while True:
        await gate.wait()
        m = await ch.recv()
        if m is None:
            out("peer_closed", name=ch.name)
            return
        f.write(f"{ch.name} {m.offset} {digest(m.data)}\n")
        f.flush()
        await m.confirm()
        n += 1
        if n % 100 == 0:
            out("creceived", name=ch.name, n=n)


_held: set[str] = set()


async def _accepter(link: Link, log_path: str) -> None:
    with open(log_path, "a", buffering=1) as f:
        readers = []
        while True:
            ch = await link.accept_channel()
            out("accepted", name=ch.name, id=ch.id)
            readers.append(asyncio.create_task(_chreceiver(ch, f)))


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


_DIRECT = {"blocked": False}


def _install_direct_block() -> None:
    """Every aioice socket of this process checks :data:`_DIRECT` (no generation gets a
    working candidate pair while it is blocked: "no direct path", as behind two symmetric
    NATs without TURN)."""
    from aioice.ice import StunProtocol

    recv, send_data, send_stun = (StunProtocol.datagram_received, StunProtocol.send_data,
                                  StunProtocol.send_stun)

    def datagram_received(self: StunProtocol, data: bytes | str, addr: Any) -> None:
        if not _DIRECT["blocked"]:
            recv(self, data, addr)

    async def send(self: StunProtocol, data: bytes, addr: tuple[str, int]) -> None:
        if not _DIRECT["blocked"]:
            await send_data(self, data, addr)

    def stun(self: StunProtocol, message: Any, addr: tuple[str, int]) -> None:
        if not _DIRECT["blocked"]:
            send_stun(self, message, addr)

    StunProtocol.datagram_received = datagram_received  # type: ignore[method-assign]
    StunProtocol.send_data = send  # type: ignore[method-assign]
    StunProtocol.send_stun = stun  # type: ignore[method-assign]


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


class _LaunchedTor(TorDriver):
    """The lab's tor, started by the test's own scripts, treated as one P⁴ launched."""

    @property
    def launched(self) -> bool:
        return True


async def _netwatch(link: Link, cfg: dict[str, Any]) -> None:
    """Network changes of this process's namespace: nudge tor, then ``network_changed``."""
    import stem.control

    from ..io.netwatch import NetWatch, nudge_tor

    ctl_socket = cfg.get("tor_overrides", {}).get("control_socket")
    ctl = await asyncio.to_thread(
        lambda: stem.control.Controller.from_socket_file(ctl_socket) if ctl_socket
        else stem.control.Controller.from_port(port=int(cfg["tor"]["control_port"])))
    await asyncio.to_thread(ctl.authenticate)
    try:
        async with NetWatch() as watch:
            async for change in watch:
                out("netchange", reason=change.reason, at=change.at,
                    addresses=sorted(change.addresses), lost=sorted(change.lost))
                if change.lost and not cfg.get("tor_launched"):  # a network is gone, and
                    # tor's circuits over it; a launched tor is the link's to nudge [RDV-63]
                    await nudge_tor(ctl)
                    out("nudged")
                link.network_changed(change.gained)
    finally:
        await asyncio.to_thread(ctl.close)


async def main(cfg: dict[str, Any]) -> None:
    logging.basicConfig(level=logging.INFO if cfg.get("verbose") else logging.WARNING,
                        stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if cfg.get("verbose"):
        logging.getLogger("p4ref.link").setLevel(logging.DEBUG)
    tor_cls = _LaunchedTor if cfg.get("tor_launched") else TorDriver
    tor = tor_cls(TorConfig.testnet(ClientInfo(**cfg["tor"]), **cfg.get("tor_overrides", {})))
    await tor.start()
    hosts = cfg.get("host_addresses", ["127.0.0.1"])
    servers = tuple(IceServer(tuple(s["urls"]), s.get("username"), s.get("credential"))
                    for s in cfg.get("ice_servers", ()))
    config = LinkConfig(host_addresses=None if hosts is None else tuple(hosts),
                        ice_servers=servers, dial_only=cfg.get("dial_only", False),
                        peer_dial_only=cfg.get("peer_dial_only", False),
                        synchronous=cfg.get("synchronous", "FULL"),
                        follower_delay=float(cfg.get("follower_delay", 10.0)),
                        high_delay=float(cfg.get("high_delay", 1.0)),
                        open_timeout=float(cfg.get("open_timeout", 15.0)),
                        channels=bool(cfg.get("channels", False)))
    _install_direct_block()
    _DIRECT["blocked"] = bool(cfg.get("block_direct", False))
    link = Link.open(cfg["home"], cfg["peer"], tor=tor, config=config, on_event=on_event)
    if not cfg.get("tor_path", True):  # a signalling-only peer (the forwarding attack's M)
        link._tor_open = lambda st: None  # type: ignore[method-assign]
    await link.start()
    seed = int(cfg.get("seed", 1))
    for name in cfg.get("paused", ()):
        _held.add(name)
    tasks = [asyncio.create_task(_accepter(link, cfg["log"]) if config.channels
                                 else _receiver(link, cfg["log"]))]
    if cfg.get("netwatch"):
        tasks.append(asyncio.create_task(_netwatch(link, cfg)))
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
        elif c == "chsend":
            tasks.append(asyncio.create_task(_chsender(
                link, seed, cmd["name"], int(cmd["count"]), cmd.get("size"))))
        elif c == "pause":
            _held.add(cmd["name"])
            _paused.setdefault(cmd["name"], asyncio.Event()).clear()
        elif c == "resume":
            _held.discard(cmd["name"])
            _paused.setdefault(cmd["name"], asyncio.Event()).set()
        elif c == "force":
            link.force_generation()
        elif c == "network_changed":
            link.network_changed()
        elif c == "probe":
            link.probe()
        elif c == "ice_servers":  # the user changed STUN/TURN: the next generations use them
            link._direct = dataclasses.replace(link._direct, ice_servers=tuple(
                IceServer(tuple(s["urls"]), s.get("username"), s.get("credential"))
                for s in cmd["servers"]))
            out("ice_servers", n=len(cmd["servers"]))
        elif c in ("allow_direct", "block_direct"):
            _DIRECT["blocked"] = c == "block_direct"
            out(c)
        elif c == "blackhole":
            out("blackholed", ok=_blackhole(link), gen=link.machine.active)
        elif c == "status":
            w = link.store.watermarks(link.peer_pub)
            chans = ([(i.name, i.local, i.sent, i.send_limit, i.received, i.consumed,
                       i.recv_limit) for i in link.channels.mux.channels()]
                     if link.channels is not None else None)
            out("status_reply", status=link.status, active=link.machine.active,
                opened=link.generations_opened, tx=w.tx_next - 1, acked=w.acked, rx=w.rx,
                machine=link.machine.state_string(), stream=link.signaller.ready,
                pending=None if link._pending is None else link._pending.number,
                need=link._need, chans=chans, stats=dataclasses.asdict(link.stats()),
                path=link.path)
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
