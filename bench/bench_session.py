"""The durable session (p4ref/link) against raw aiortc: issue 11 deliverable 7, five figures.

    .venv/bin/python bench/bench_session.py [--pairs N] [--sessions N] [--session] [--only abcde]
                                             [--tornet DIR | --no-tor] [--quick]

Every peer runs in its own process (``--child``); this process only orchestrates, relays SDPs
for the raw baseline and prints.  P⁴ peers are :class:`~p4ref.link.Link` objects on real
profiles, SQLite at ``synchronous=FULL`` (the level p4-04 §8.8 claims; never OFF), real aiortc
on 127.0.0.1 and, for (a)–(c) and (e), signalling over the private Tor network (``--tornet DIR``
uses a running one, else one is started; ``--no-tor`` replaces Tor by :class:`LoopbackTor`).
The application uses ONE channel (``Link.open_channel`` / ``accept_channel``, ``ch.send``,
``ch.recv``, ``msg.confirm``); ``--session`` adds, in (a) and (b), a third arm on the
session-level API (``submit`` / ``recv`` / ``confirm``) to show what the channel layer costs.
The raw baseline is one aiortc data channel through the same driver
(:class:`~p4ref.io.webrtc.Generation`, ``write`` with ``bufferedAmount`` backpressure), as in
bench/bench_webrtc.py: the ratio is what P⁴ (channel items, framing, sequencing, ACKs, SQLite
group commit, inbox, confirmation, credit) costs on top of the same transport (both arms with the
driver's 2 MiB UDP socket buffers, ``DirectConfig.socket_buffer``).

(a) **Bulk**: 50 MiB in 16 KiB messages: 16353 bytes on the channel and the raw arm (p4-05
    MAX_DATA, the largest channel message that fits one frame; ``--bulk-size 16384`` sends
    16 KiB exactly, which takes a second, 31-byte item per message), 16371 bytes on the
    session-level arm (its MAX_PAYLOAD); the same payload bytes on every arm; sender → receiver
    process, timed from
    the sender's first ``send`` to the moment the receiving *application* has confirmed the
    last message (P⁴: ``confirm`` returned, the inbox row is durably gone; raw: the last
    message reached the application callback).  The receiver checks every message's index
    (nothing lost, repeated or reordered).  CPU of each side from ``getrusage(RUSAGE_SELF)``
    (all threads, so SQLite's writer thread too) over the same window, per MiB; "P⁴ adds" is
    P⁴'s minus raw's, against the target of ≤ 10 % of raw's.
(b) **Small durable messages**: the same with 1 KiB messages, in messages per second; the
    sender keeps 256 sends in flight so group commit batches them (each is durable before its
    ``send`` returns), the receiver confirms every message (256 confirms in flight).  In (a)
    and (b) both P⁴ applications keep the futures ``Channel.send`` and ``ChannelMessage.confirm``
    return and await the oldest once 256 are under way (no task or callback per message).
(a) and (b) rotate the order of the arms every pair (raw P⁴, P⁴ raw, …) for ``--pairs`` pairs
    (default 11); medians, and the min–max of the per-pair ratios.
(c) **Generation change** under a steady stream (1 KiB messages at 200/s on the channel): the
    sender calls ``force_generation``; reported: trigger → the receiver's channel layer hands
    over the first message that travelled on the new generation, trigger → the receiver moved
    traffic (CONNECTION_OPEN active), the longest gap between two deliveries around the switch,
    and the bytes the new generation carried again (duplicate SES_MSGs the receiver dropped).
    Re-signalling goes in-band on the old data channel (p4-04 §5.3; the onion stream stays open
    as the fallback).  ``--pairs`` changes; medians.
(d) **Idle sessions**: one hub profile with ``--sessions`` sessions (default 200), each to its
    own peer profile (the peers share 4 processes); signalling bypasses Tor here
    (:class:`LoopbackTor`: onion address → local port files).  Hub RSS per connected idle
    session and the hub's CPU (% of one core) over ``--window`` seconds with liveness running
    (idle PINGs every 30/45 s, p4-04 §10.1).  Tor's own cost per published onion is measured
    separately on a client of the private Tor network: RSS and CPU of the tor process before
    and after publishing 10 onions.
(e) **Dead path**: the sender's active generation silently drops every datagram both ways
    (``p4ref.link._testpeer._blackhole``) while it streams and the receiver asks for a liveness
    check (``probe``); time until a side leaves the dead path (TIMEOUT, or already moved), and
    until a new generation is active on both sides.  ``--dead`` times (default 5); medians.

Diagnostics: the CPU rows of (a) and (b) show, in brackets, the part spent in the session
store's writer thread (SQLite; ``/proc/self/task``).  ``P4_BENCH_VERBOSE=1`` logs the links to
the children's stderr, ``P4_BENCH_KEEP=1`` keeps the working directory (profiles, stderr),
``P4_BENCH_PROFILE=DIR`` writes a cProfile of every child's event-loop thread to DIR.

Nothing is asserted; numbers on a shared 2-core machine vary ±30 % (research/webrtc-lab.md):
compare the ratios of one run.  ``--quick`` (or ``P4_BENCH_QUICK=1``): 1 pair of 2 MiB / 500
messages, 1 change, 1 dead path, 3 sessions, 1 onion, for CI (about a minute once Tor is up).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from _common import MIB, cpu_seconds, idle_generations, rss_bytes, writer_cpu_seconds

from p4ref.channels import MAX_DATA
from p4ref.errors import ErrorCode, P4Error
from p4ref.io.session_store import SessionStore
from p4ref.io.store import Profile
from p4ref.io.tor import OnionHandle, TorConfig, TorDriver
from p4ref.io.tornet import ClientInfo, TorNet, clients_in
from p4ref.io.webrtc import DirectConfig, Generation, load_or_create_certificate
from p4ref.link import Delivery, Link, LinkConfig, LinkEvent
from p4ref.link._channels import Channel
from p4ref.rendezvous._onion import onion_address_from_seed
from p4ref.session import MAX_PAYLOAD

ROOT = Path(__file__).resolve().parent.parent
BULK_SIZE = MAX_PAYLOAD  # 16371: one SES_MSG per message
SMALL_SIZE = 1024
WINDOW = 256  # submits / confirms in flight per application
STREAM_RATE = 200  # messages per second in (c) and (e): well below what P⁴ sustains here
TICK = 0.01


def out(ev: str, **kw: Any) -> None:
    """One JSON line to the orchestrator; ``t`` is :func:`time.monotonic` (one clock for every
    process of the machine)."""
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


def _sizes(total: int, size: int) -> list[int]:
    """``total`` payload bytes as messages of ``size`` (the last one shorter)."""
    return [size] * (total // size) + ([total % size] if total % size else [])


def message(i: int, size: int) -> bytes:
    """Message ``i`` (a distinct object, as real messages are)."""
    return i.to_bytes(4, "big") + b"\x5a" * (size - 4)


# --- the loopback signalling adapter --------------------------------------------------------


class LoopbackTor:
    """The part of :class:`~p4ref.io.tor.TorDriver` a :class:`~p4ref.link.Link` uses, without
    Tor: ``publish`` writes the onion address's local port into a file of a directory shared by
    every process of the run, ``open_stream`` connects to that port (waiting for the file up to
    ``timeout``, as a dial waits for a descriptor).  Client authorisation is not checked: the
    session's own HELLO exchange still authenticates both keys (p4-03)."""

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    async def close(self) -> None:
        return None

    async def publish(self, seed: bytes, port_map: Mapping[int, int | str],
                      client_auth_pubs: Iterable[bytes] = (),
                      timeout: float | None = None) -> OnionHandle:
        addr = onion_address_from_seed(seed)
        port = next(iter(port_map.values()))
        tmp = self.dir / f".{addr}.{os.getpid()}"
        tmp.write_text(str(port))
        tmp.replace(self.dir / addr)
        return OnionHandle(addr)

    async def unpublish(self, handle: OnionHandle | str) -> None:
        addr = handle.address if isinstance(handle, OnionHandle) else handle
        with contextlib.suppress(FileNotFoundError):
            (self.dir / addr.removesuffix(".onion")).unlink()

    async def add_client_auth(self, onion_addr: str, x25519_priv: bytes) -> None:
        return None

    async def open_stream(self, onion_addr: str, port: int, timeout: float = 60.0, **_: Any
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        path = self.dir / onion_addr.removesuffix(".onion")
        end = time.monotonic() + max(timeout, 600.0)  # the peer may publish later
        while True:
            try:
                local = int(path.read_text())
                return await asyncio.open_connection("127.0.0.1", local)
            except (FileNotFoundError, ValueError, OSError):
                if time.monotonic() > end:
                    raise P4Error(ErrorCode.TOR_TIMEOUT, f"{onion_addr} not published") from None
                await asyncio.sleep(0.1)


class _SharedStore:
    """One :class:`SessionStore` per database file for every link of a process (a hub profile
    holds all its sessions in one ``session.db``, which a second opener would find locked).
    Installed in the hub process only, as ``p4ref.link._link.SessionStore``: the smallest
    adapter, so the link needs no hook for it."""

    _open: dict[str, SessionStore] = {}  # noqa: RUF012 (process-wide by design)

    @classmethod
    async def open(cls, path: Path | str, **kw: Any) -> SessionStore:
        key = str(Path(path).resolve())
        if key not in cls._open:
            cls._open[key] = await SessionStore.open(path, **kw)
        return cast(SessionStore, _Borrowed(cls._open[key]))

    @classmethod
    async def close_all(cls) -> None:
        for store in cls._open.values():
            await store.close()
        cls._open.clear()


class _Borrowed:
    """A shared store whose ``close`` does nothing (the hub closes it once, at the end)."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def close(self) -> None:
        await self._store.flush()


def _tor_for(cfg: Mapping[str, Any]) -> TorDriver:
    if cfg.get("loopback"):
        return cast(TorDriver, LoopbackTor(cfg["loopback"]))
    return TorDriver(TorConfig.testnet(ClientInfo(**cfg["tor"])))


_SYNCHRONOUS = ["FULL"]  # --variant synchronous=... changes it in a child


def _link_config(cfg: Mapping[str, Any]) -> LinkConfig:
    return LinkConfig(host_addresses=("127.0.0.1",),
                      synchronous=cast(Any, _SYNCHRONOUS[0]),
                      high_delay=float(cfg.get("high_delay", 1.0)),
                      follower_delay=float(cfg.get("follower_delay", 10.0)))


# --- the child processes ----------------------------------------------------------------------


@dataclasses.dataclass
class _Rx:
    """What the receiving application counts."""

    target: int = -1  # payload bytes awaited
    count: int = 0
    nbytes: int = 0
    disorder: int = 0  # messages whose index is not the next one (lost, repeated, reordered)
    record: bool = False

    def expect(self, target: int) -> None:
        self.target, self.count, self.nbytes, self.disorder = target, 0, 0, 0
        out("expecting", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits())

    def got(self, m: bytes) -> bool:
        """Count one message; True when it completes the awaited bytes."""
        if self.target > 0 and int.from_bytes(m[:4], "big") != self.count:
            self.disorder += 1
        self.count += 1
        self.nbytes += len(m)
        return self.nbytes == self.target

    def done(self) -> None:
        out("done", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits(),
            nbytes=self.nbytes, disorder=self.disorder)


_STORES: list[SessionStore] = []  # this child's session store, once its link started


def _commits() -> int:
    """Commits of this child's session store so far (0 for raw aiortc)."""
    return sum(store.db.commits for store in _STORES)


_PROFILE: Any = None  # a cProfile.Profile with P4_BENCH_PROFILE=DIR (for finding the cost)


def _exit() -> None:
    """Leave at once (aiortc's and the store's threads need not be joined); with
    ``P4_BENCH_PROFILE=DIR`` write this child's profile to DIR first."""
    if _PROFILE is not None:
        _PROFILE.disable()
        cfg = json.loads(sys.argv[-1])
        name = f"{cfg['kind']}-{cfg.get('role', Path(cfg.get('home', '')).name)}-{os.getpid()}"
        _PROFILE.dump_stats(os.path.join(os.environ["P4_BENCH_PROFILE"], name + ".prof"))
    os._exit(0)


async def _commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _raw_child(cfg: dict[str, Any]) -> None:
    """One end of a raw data channel (the baseline)."""
    reader = await _commands()
    rx = _Rx()

    def on_message(m: bytes) -> None:
        if rx.got(m):
            rx.done()

    config = DirectConfig(host_addresses=("127.0.0.1",))
    if cfg["role"] == "offer":
        g = await Generation.offer(1, config, on_message=on_message)
        out("sdp", sdp=g.local_sdp, fp=g.local_fingerprint.hex())
        ans = json.loads(await reader.readline())
        await g.accept_answer(ans["sdp"], bytes.fromhex(ans["fp"]))
    else:
        off = json.loads(await reader.readline())
        g = await Generation.answer(1, off["sdp"], bytes.fromhex(off["fp"]), config,
                                    on_message=on_message)
        out("sdp", sdp=g.local_sdp, fp=g.local_fingerprint.hex())
    await g.opened()
    out("open")

    async def send(total: int, size: int) -> None:
        out("started", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits())
        for i, n in enumerate(_sizes(total, size)):
            await g.write(message(i, n))
        out("sent")

    tasks: list[asyncio.Task[None]] = []
    while line := await reader.readline():
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "expect":
            rx.expect(int(cmd["total"]))
        elif c == "send":
            tasks.append(asyncio.create_task(send(int(cmd["total"]), int(cmd["size"]))))
        elif c == "cpu":
            out("cpu", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits())
        elif c == "stop":
            break
    g.close()
    out("stopped")
    _exit()


def _hook_machine(link: Link, stats: dict[str, Any]) -> Callable[[], None]:
    """Count, in the receiving machine, the SES_MSGs it drops as duplicates (bytes a new
    generation carried again) and the first message seq each connection delivered (a bench
    adapter around the machine's private ``_a_deliver`` action; nothing changes behaviour).
    Installed only while (c) records: it is the bench's work, not P⁴'s, and (a)'s CPU figures
    would count it.  Returns the undo."""
    m = link.machine
    orig = m._a_deliver

    def deliver(c: Any, frame: Any, now: int) -> None:
        seq = int.from_bytes(frame.body[:8], "big")
        if seq < m.rx_next:
            stats["dup_msgs"] += 1
            stats["dup_bytes"] += len(frame.body) - 8
        elif seq == m.rx_next:
            stats["first_seq"].setdefault(str(c.cid), seq)
        orig(c, frame, now)
    setattr(m, "_a_deliver", deliver)  # noqa: B010 (an instance override of a private action)
    return lambda: delattr(m, "_a_deliver")


def _apply_variant(variant: Mapping[str, str], role: str) -> None:
    """``--variant``'s settings, in this child (an experiment, not a configuration);
    ``side=tx`` or ``side=rx``: in that child only."""
    if variant.get("side", role) != role:
        return
    for key, value in variant.items():
        if key == "side":
            continue
        if key in ("commit_interval", "bulk_interval"):
            fn = SessionStore.open.__func__  # type: ignore[attr-defined]
            fn.__kwdefaults__ = {**fn.__kwdefaults__, key: float(value)}
        elif key == "synchronous":  # a diagnosis only: P⁴ claims its durability at FULL
            _SYNCHRONOUS[0] = value
        elif key == "ack_every":
            import p4ref.session._machine as machine

            machine.ACK_EVERY = int(value)
        elif key == "gc_threshold":
            import gc

            gc.set_threshold(int(value))
        else:
            raise SystemExit(f"unknown variant {key!r}")


async def _link_child(cfg: dict[str, Any]) -> None:
    """One P⁴ peer: a Link that sends and/or receives on command."""
    reader = await _commands()
    if os.environ.get("P4_BENCH_VERBOSE") == "1":
        import logging

        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format=f"%(asctime)s {cfg['home'][-2:]} %(name)s %(message)s")
    _apply_variant(cfg.get("variant", {}), Path(cfg["home"]).name)
    tor = _tor_for(cfg)
    await tor.start()

    def on_event(ev: LinkEvent) -> None:
        out("link", kind=ev.kind, status=ev.status, gen=ev.generation, code=ev.code,
            active=ev.active)

    channels = cfg.get("api") == "channel"
    link = Link.open(cfg["home"], cfg["peer"], tor=tor,
                     config=dataclasses.replace(_link_config(cfg), channels=channels),
                     on_event=on_event)
    await link.start()
    _STORES.append(link.store)
    stats: dict[str, Any] = {"dup_msgs": 0, "dup_bytes": 0, "first_seq": {}}
    unhook: list[Callable[[], None]] = []  # (c)'s recording hooks, while it records
    rx = _Rx()
    seq_time: dict[int, float] = {}
    confirming: collections.deque[asyncio.Future[Any]] = collections.deque()

    async def consumed(m: bytes, confirm: Awaitable[Any]) -> None:
        """The application got ``m`` and confirmed it: at most WINDOW confirmations under way,
        the oldest awaited first (``ChannelMessage.confirm`` returns a future: no task or
        callback per message); ``done`` once the last message's confirmation is durable."""
        confirming.append(asyncio.ensure_future(confirm))
        if rx.got(m):
            while confirming:
                await confirming.popleft()
            rx.done()
        elif len(confirming) >= WINDOW:
            await confirming.popleft()

    async def receive() -> None:
        while True:
            d: Delivery = await link.recv()
            if rx.record:
                seq_time[d.seq] = time.monotonic()
            await consumed(d.payload, link.confirm(d))

    def hook_channels() -> Callable[[], None]:
        """(c) records the time the channel layer hands each message over."""
        layer = link.channels
        assert layer is not None
        orig = layer.receive

        def hooked(d: Delivery) -> None:
            seq_time[d.seq] = time.monotonic()
            orig(d)
        setattr(layer, "receive", hooked)  # noqa: B010
        return lambda: delattr(layer, "receive")

    async def receive_channel() -> None:
        ch = await link.accept_channel()
        while (msg := await ch.recv()) is not None:
            await consumed(msg.data, msg.confirm())

    tx_chan: list[Channel] = []

    def submit(data: bytes) -> Awaitable[Any]:
        """Start one send: ``Channel.send`` starts at once and returns a future (no task per
        message); ``Link.submit`` is a coroutine."""
        return tx_chan[0].send(data) if channels else link.submit(data)

    async def open_channel() -> None:
        if channels and not tx_chan:
            tx_chan.append(link.channel("bench") or await link.open_channel("bench"))

    streaming = False

    async def send(total: int, size: int) -> None:
        await open_channel()
        out("started", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits())
        sending: collections.deque[asyncio.Future[Any]] = collections.deque()
        for i, n in enumerate(_sizes(total, size)):  # at most WINDOW sends under way, the
            sending.append(asyncio.ensure_future(submit(message(i, n))))  # oldest awaited
            if len(sending) >= WINDOW:
                await sending.popleft()
        while sending:
            await sending.popleft()
        out("sent")

    async def stream(rate: int, size: int) -> None:
        await open_channel()
        per_tick = max(1, int(rate * TICK))
        loop = asyncio.get_running_loop()
        nxt = loop.time()
        i = 0
        pending: set[asyncio.Future[None]] = set()
        while streaming:
            for _ in range(per_tick):
                if len(pending) < 4 * WINDOW:
                    f = asyncio.ensure_future(submit(message(i, size)))
                    pending.add(f)
                    f.add_done_callback(pending.discard)
                    i += 1
            nxt += TICK
            await asyncio.sleep(max(0.0, nxt - loop.time()))

    allow_inband = [True]
    orig_inband = link._inband

    def inband(rec: Any = None) -> Callable[[bytes], bool]:
        carry = orig_inband(rec)
        return lambda frame: allow_inband[0] and carry(frame)
    setattr(link, "_inband", inband)  # noqa: B010 (bench adapter: OFFERs on the stream)

    tasks = [asyncio.create_task(receive_channel() if channels else receive())]
    out("ready", low=link.machine.is_low)
    while line := await reader.readline():
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "expect":
            rx.expect(int(cmd["total"]))
        elif c == "send":
            tasks.append(asyncio.create_task(send(int(cmd["total"]), int(cmd["size"]))))
        elif c == "stream":
            streaming = True
            tasks.append(asyncio.create_task(stream(int(cmd["rate"]), int(cmd["size"]))))
        elif c == "stream_stop":
            streaming = False
        elif c == "mark":  # start recording deliveries (c)
            rx.record = True
            seq_time.clear()
            stats.update(dup_msgs=0, dup_bytes=0, first_seq={})
            if not unhook:
                unhook.append(_hook_machine(link, stats))
                if channels:
                    unhook.append(hook_channels())
            out("marked", active=link.machine.active)
        elif c == "switch_report":
            rx.record = False
            while unhook:
                unhook.pop()()
            times = sorted(seq_time.items(), key=lambda kv: kv[1])
            new = [int(k) for k in stats["first_seq"] if int(k) > int(cmd["old"])]
            first = stats["first_seq"][str(min(new))] if new else None
            t_first = seq_time.get(first) if first is not None else None
            since = float(cmd["since"])
            ts = [t for _, t in times if t >= since - 0.5]
            gaps = [b - a for a, b in itertools.pairwise(ts)]
            out("switch", t_first=t_first, stall=max(gaps, default=0.0),
                dup_msgs=stats["dup_msgs"], dup_bytes=stats["dup_bytes"])
        elif c == "inband":  # (c): let OFFERs go in-band, or force them onto the stream
            allow_inband[0] = bool(cmd["on"])
        elif c == "force":
            old = link.machine.active
            link.force_generation()
            out("forced", old=old)
        elif c == "probe":
            link.probe()
        elif c == "blackhole":
            from p4ref.link._testpeer import _blackhole

            gen = link.machine.active
            out("blackholed", ok=_blackhole(link), gen=gen)
        elif c == "debug":  # the link's private state, when a change got stuck
            p = link._pending
            out("debug", need=link._need, cause=link._need_cause, ready=link.signaller.ready,
                active=link.machine.active, live=sorted(link._live), gens=sorted(link._gens),
                pending=None if p is None else dataclasses.asdict(p) | {"g": None, "early": 0},
                sig_gen=link.signaller.generation(), status=link.status)
        elif c == "cpu":
            out("cpu", cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=_commits())
        elif c == "status":
            out("status", status=link.status, active=link.machine.active)
        elif c == "stop":
            break
    streaming = False
    for t in tasks:
        t.cancel()
    await link.stop()
    await tor.close()
    out("stopped")
    _exit()


async def _many_child(cfg: dict[str, Any]) -> None:
    """Many idle links in one process: the hub (one profile, ``peers`` by name, one shared
    session.db) or a group of peers (``links``: one profile each).  Reports RSS and CPU."""
    reader = await _commands()
    tor = _tor_for(cfg)
    await tor.start()
    hub = "peers" in cfg
    if hub:
        import p4ref.link._link as link_module

        setattr(link_module, "SessionStore", _SharedStore)  # noqa: B010
        load_or_create_certificate(Path(cfg["home"]))  # once, before the links race for it
        await _SharedStore.open(Path(cfg["home"]) / "session.db")
        specs = [(cfg["home"], name) for name in cfg["peers"]]
    else:
        specs = [(x["home"], x["peer"]) for x in cfg["links"]]
    links: list[Link] = []
    out("ready", rss=rss_bytes(), cpu=cpu_seconds())

    async def start_batch(batch: list[tuple[str, str]], wait: float) -> None:
        new = [Link.open(h, p, tor=tor, config=_link_config(cfg)) for h, p in batch]
        links.extend(new)
        await asyncio.gather(*(lk.start() for lk in new))
        end = time.monotonic() + wait
        while time.monotonic() < end and any(lk.status != "connected" for lk in new):
            await asyncio.sleep(0.1)

    while line := await reader.readline():
        cmd = json.loads(line)
        c = cmd["cmd"]
        if c == "start":
            batch = int(cmd.get("batch", len(specs)))
            for i in range(0, len(specs), batch):
                await start_batch(specs[i:i + batch], float(cmd.get("wait", 0)))
                out("progress", n=len(links),
                    connected=sum(lk.status == "connected" for lk in links))
            out("started", rss=rss_bytes(), cpu=cpu_seconds())
        elif c == "sample":
            out("sample", rss=rss_bytes(), cpu=cpu_seconds(),
                connected=sum(lk.status == "connected" for lk in links))
        elif c == "stop":
            break
    await asyncio.gather(*(lk.stop() for lk in links), return_exceptions=True)
    if hub:
        await _SharedStore.close_all()
    out("stopped")
    _exit()


# --- the orchestrator -------------------------------------------------------------------------


class Child:
    """A child process driven over JSON lines."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self.proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen = 0

    @classmethod
    async def spawn(cls, name: str, cfg: dict[str, Any], stderr: Path) -> Child:
        self = cls(name)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        with open(stderr, "ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--child", json.dumps(cfg), cwd=ROOT, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
                limit=1 << 24)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.lines.append(json.loads(line))
                self._new.set()
        self._new.set()

    def send(self, **cmd: Any) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    def mark(self) -> int:
        """Only lines after this point count for the next :meth:`wait` calls with ``since``."""
        return len(self.lines)

    async def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float,
                   since: int = 0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.lines):
                if pred(self.lines[i]):
                    return self.lines[i]
                i += 1
            assert self.proc is not None
            if self.proc.returncode is not None or (self._task is not None and self._task.done()):
                raise RuntimeError(f"{self.name} exited; last lines {self.lines[-5:]}")
            left = end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.name}: timeout; last lines {self.lines[-5:]}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), min(left, 1.0))

    async def ev(self, name: str, timeout: float = 120, since: int | None = None
                 ) -> dict[str, Any]:
        return await self.wait(lambda e: e["ev"] == name, timeout,
                               self.mark() if since is None else since)

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(OSError, ConnectionError):
            self.send(cmd="stop")
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclasses.dataclass
class Run:
    seconds: float
    nbytes: int
    count: int
    cpu_tx: float
    cpu_rx: float
    db_tx: float = 0.0  # of which the session store's writer thread
    db_rx: float = 0.0
    commits_tx: int = 0  # of the session store
    commits_rx: int = 0
    udp_drops: int = 0  # datagrams the kernel dropped for a full receive buffer (machine-wide)


def _udp_drops() -> int:
    """``RcvbufErrors`` of /proc/net/snmp (0 where it does not exist): UDP datagrams dropped
    because a socket's receive buffer was full, i.e. a process did not read in time."""
    try:
        lines = [ln.split() for ln in Path("/proc/net/snmp").read_text().splitlines()
                 if ln.startswith("Udp:")]
        return int(lines[1][lines[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return 0


async def _transfer(tx: Child, rx: Child, total: int, size: int, timeout: float) -> Run:
    """One timed transfer: first submit → the receiving application confirmed the last."""
    m_rx = rx.mark()
    rx.send(cmd="expect", total=total)
    exp = await rx.ev("expecting", since=m_rx)
    m_tx, m_rx = tx.mark(), rx.mark()
    drops = _udp_drops()
    tx.send(cmd="send", total=total, size=size)
    st = await tx.ev("started", since=m_tx)
    done = await rx.ev("done", timeout, since=m_rx)
    drops = _udp_drops() - drops
    m_tx = tx.mark()
    tx.send(cmd="cpu")
    cpu = await tx.ev("cpu", since=m_tx)
    if int(done["nbytes"]) != total or int(done["disorder"]):
        raise RuntimeError(f"{rx.name}: {done['nbytes']} of {total} bytes, "
                           f"{done['disorder']} messages out of order")
    return Run(done["t"] - st["t"], total, len(_sizes(total, size)), cpu["cpu"] - st["cpu"],
               done["cpu"] - exp["cpu"], cpu["db"] - st["db"], done["db"] - exp["db"],
               cpu["commits"] - st["commits"], done["commits"] - exp["commits"], drops)


@dataclasses.dataclass
class Ctx:
    work: Path
    tor: list[ClientInfo] | None  # None: --no-tor
    loopback: str
    quick: bool
    errlog: Path

    def tor_cfg(self, i: int) -> dict[str, Any]:
        if self.tor is None:
            return {"loopback": self.loopback}
        return {"tor": dataclasses.asdict(self.tor[i % len(self.tor)])}


def _pair_profiles(base: Path, names: tuple[str, str]) -> None:
    root = os.urandom(32)
    pa = Profile.init(base / names[0], os.urandom)
    pb = Profile.init(base / names[1], os.urandom)
    pa.add_peer(names[1], pb.identity.public_key, root, "bench")
    pb.add_peer(names[0], pa.identity.public_key, root, "bench")


async def _raw_pair(ctx: Ctx) -> tuple[Child, Child]:
    off = await Child.spawn("raw-tx", {"kind": "raw", "role": "offer"}, ctx.errlog)
    ans = await Child.spawn("raw-rx", {"kind": "raw", "role": "answer"}, ctx.errlog)
    o = await off.ev("sdp", 60, since=0)
    ans.send(sdp=o["sdp"], fp=o["fp"])
    a = await ans.ev("sdp", 60, since=0)
    off.send(sdp=a["sdp"], fp=a["fp"])
    await off.ev("open", 60, since=0)
    await ans.ev("open", 60, since=0)
    return off, ans


async def _link_pair(ctx: Ctx, api: str, variant: dict[str, str] | None = None,
                     arm: str | None = None) -> tuple[Child, Child]:
    """Two P⁴ peers, sender and receiver, connected; ``api``: ``channel`` (the application
    uses one channel) or ``session`` (session messages: submit / recv / confirm);
    ``variant``: settings changed in both children (``--variant``)."""
    arm = arm or api
    base = ctx.work / arm
    _pair_profiles(base, ("tx", "rx"))
    cfg = {"kind": "link", "high_delay": 0.2, "api": api, "variant": variant or {}}
    tx = await Child.spawn(f"{arm}-tx", {**cfg, "home": str(base / "tx"), "peer": "rx",
                                         **ctx.tor_cfg(0)}, ctx.errlog)
    rx = await Child.spawn(f"{arm}-rx", {**cfg, "home": str(base / "rx"), "peer": "tx",
                                         **ctx.tor_cfg(1)}, ctx.errlog)
    for c in (tx, rx):
        await c.wait(lambda e: e["ev"] == "link" and e["status"] == "connected", 180)
    return tx, rx


def _med(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


def _spread(xs: list[float]) -> str:
    return f"{min(xs):.1f}–{max(xs):.1f}"


class Table:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, p4: str = "", raw: str = "", ratio: str = "", target: str = ""
            ) -> None:
        self.rows.append((what, p4, raw, ratio, target))

    def print(self) -> None:
        head = ("figure", "P⁴", "raw aiortc", "ratio", "target")
        w = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        for r in [head, tuple("-" * x for x in w), *self.rows]:
            print("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i])
                            for i, c in enumerate(r)).rstrip())


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


#: message size of each arm in (a): 16 KiB as the issue says; a session message holds at most
#: MAX_PAYLOAD, so the session-level arm sends the same bytes in 16371-byte messages


async def fig_ab(ctx: Ctx, table: Table, arms: dict[str, tuple[Child, Child]], pairs: int,
                 bulk_mib: int, small_n: int, bulk_size: int) -> None:
    raw = await _raw_pair(ctx)
    every = {"raw": raw, **arms}
    try:
        for label, total, sizes in (
                ("(a)", bulk_mib * MIB, {"raw": bulk_size, "channel": bulk_size,
                                         "variant": bulk_size, "session": BULK_SIZE}),
                ("(b)", small_n * SMALL_SIZE, dict.fromkeys(every, SMALL_SIZE))):
            res: dict[str, list[Run]] = {k: [] for k in every}
            names = list(every)
            for i in range(pairs):
                for kind in names[i % len(names):] + names[:i % len(names)]:  # rotated
                    tx, rx = every[kind]
                    res[kind].append(await _transfer(tx, rx, total, sizes[kind], 900))
            _report_ab(table, label, res, total, sizes, pairs)
    finally:
        for c in raw:
            await c.stop()


def _report_ab(table: Table, label: str, res: dict[str, list[Run]], total: int,
               sizes: dict[str, int], pairs: int) -> None:
    mib = total / MIB
    base = res["raw"]
    for arm, runs in res.items():
        if arm == "raw":
            continue
        what = {"channel": "one channel", "session": "session msgs"}.get(arm, arm)
        if label == "(a)":
            rate = {k: [mib / r.seconds for r in v] for k, v in (("p4", runs), ("raw", base))}
            title = f"(a) bulk {mib:.0f} MiB, {what}, {sizes[arm]} B msgs, MiB/s"
        else:
            rate = {k: [r.count / r.seconds for r in v] for k, v in (("p4", runs), ("raw", base))}
            title = f"(b) {sizes[arm]} B durable msgs ×{runs[0].count}, {what}, msg/s"
        ratios = [p / r for p, r in zip(rate["p4"], rate["raw"], strict=True)]
        table.add(f"{title} (median, {pairs} pairs)", f"{_med(rate['p4']):.1f}",
                  f"{_med(rate['raw']):.1f}", f"{_med(ratios):.2f}×",
                  f"≥ 0.90× ({_verdict(_med(ratios) >= 0.9)})" if label == "(a)" else "")
        table.add("    min–max", _spread(rate["p4"]), _spread(rate["raw"]),
                  f"{min(ratios):.2f}–{max(ratios):.2f}×")
        table.add("    UDP datagrams dropped, receive buffer full (median)",
                  f"{_med(r.udp_drops for r in runs):.0f}",
                  f"{_med(r.udp_drops for r in base):.0f}")
        for side, attr in (("sender", "cpu_tx"), ("receiver", "cpu_rx")):
            p = _med(float(getattr(r, attr)) * 1000 / mib for r in runs)
            b = _med(float(getattr(r, attr)) * 1000 / mib for r in base)
            db = _med(float(getattr(r, "db_" + attr[-2:])) * 1000 / mib for r in runs)
            commits = _med(getattr(r, "commits_" + attr[-2:]) / mib for r in runs)
            if label == "(a)":
                added = p - b
                table.add(f"    CPU {side}, ms/MiB; P⁴ adds {added:.1f} ms/MiB (SQLite thread "
                          f"{db:.1f}, {commits:.1f} commits/MiB)", f"{p:.1f}", f"{b:.1f}",
                          f"+{100 * added / b:.0f} %", f"≤ +10 % ({_verdict(added <= 0.1 * b)})")
            else:
                table.add(f"    CPU {side}, ms/MiB (SQLite thread {db:.1f}, "
                          f"{commits:.1f} commits/MiB)", f"{p:.1f}",
                          f"{b:.1f}", f"{p / b:.2f}×")


def _moved(old: int, e: dict[str, Any]) -> bool:
    """Traffic moved to a generation newer than ``old``."""
    return (e["ev"] == "link" and e["kind"] == "connection_open" and bool(e["active"])
            and int(e["gen"]) > old)


async def fig_c(table: Table, pair: tuple[Child, Child], pairs: int, tor: bool) -> None:
    tx, rx = pair
    tx.send(cmd="stream", rate=STREAM_RATE, size=SMALL_SIZE)
    stream = "onion stream" if tor else "loopback stream (no Tor)"
    try:
        await asyncio.sleep(1.0)
        for inband in (True, False):
            tx.send(cmd="inband", on=inband)
            await _changes(table, tx, rx, pairs, "in-band (SES_SIGNAL)" if inband else stream,
                           20 if pairs == 1 else 60)
    finally:
        tx.send(cmd="inband", on=True)
        tx.send(cmd="stream_stop")


async def _changes(table: Table, tx: Child, rx: Child, pairs: int, how: str, limit: float
                   ) -> None:
    firsts: list[float] = []
    opens: list[float] = []
    stalls: list[float] = []
    dups: list[int] = []
    stuck = 0
    for _ in range(pairs):
        m_rx = rx.mark()
        rx.send(cmd="mark")
        marked = await rx.ev("marked", since=m_rx)
        old = int(marked["active"] or 0)
        m_rx, m_tx = rx.mark(), tx.mark()
        tx.send(cmd="force")
        forced = await tx.ev("forced", since=m_tx)
        try:
            moved = await rx.wait(functools.partial(_moved, old), limit, since=m_rx)
        except TimeoutError:
            stuck += 1  # reported; the next change may repair it
            for c in (tx, rx):
                m = c.mark()
                c.send(cmd="debug")
                print(f"(c) stuck change, {c.name}: {await c.ev('debug', since=m)}",
                      file=sys.stderr)
            continue
        opens.append((moved["t"] - forced["t"]) * 1000)
        await asyncio.sleep(1.0)  # deliveries after the switch
        m_rx = rx.mark()
        rx.send(cmd="switch_report", since=forced["t"], old=old)
        rep = await rx.ev("switch", since=m_rx)
        if rep["t_first"] is not None:
            firsts.append((rep["t_first"] - forced["t"]) * 1000)
        stalls.append(rep["stall"] * 1000)
        dups.append(int(rep["dup_bytes"]))
        await asyncio.sleep(0.3)
    table.add(f"(c) generation change, re-signalling {how}, {pairs} changes"
              + (f" ({stuck} did not complete within {limit:.0f} s)" if stuck else "") + ":")
    if not opens:
        return
    if firsts:
        table.add(f"    trigger → first message on the new generation, ms (p50 of {len(firsts)})",
                  f"{_med(firsts):.0f}", "", f"max {max(firsts):.0f}",
                  f"p50 ≤ 250 ({_verdict(_med(firsts) <= 250)})")
    table.add("    trigger → receiver moved traffic (CONNECTION_OPEN active), ms",
              f"{_med(opens):.0f}", "", f"max {max(opens):.0f}")
    table.add("    longest gap between two deliveries around the switch, ms",
              f"{_med(stalls):.0f}", "", f"max {max(stalls):.0f}",
              f"(stream {STREAM_RATE}/s: {1000 // STREAM_RATE} ms)")
    table.add("    bytes carried again on the new generation",
              f"{_med(dups):.0f}", "", f"max {max(dups)}")


async def fig_e(table: Table, pair: tuple[Child, Child], reps: int) -> None:
    tx, rx = pair
    detect: list[float] = []
    recover: list[float] = []
    tx.send(cmd="stream", rate=STREAM_RATE, size=SMALL_SIZE)
    await asyncio.sleep(1.0)
    for _ in range(reps):
        m_tx, m_rx = tx.mark(), rx.mark()
        tx.send(cmd="blackhole")
        rx.send(cmd="probe")
        hole = await tx.ev("blackholed", since=m_tx)
        if not hole["ok"]:
            continue
        dead = int(hole["gen"])

        def left(e: dict[str, Any], d: int = dead) -> bool:
            return e["ev"] == "link" and (
                (e["kind"] == "connection_failed" and e["gen"] == d)
                or (e["kind"] == "connection_open" and bool(e["active"]) and int(e["gen"]) > d))

        lt = [await c.wait(left, 60, since=m) for c, m in ((tx, m_tx), (rx, m_rx))]
        detect.append((min(e["t"] for e in lt) - hole["t"]) * 1000)
        mv = [await c.wait(functools.partial(_moved, dead), 90, since=m)
              for c, m in ((tx, m_tx), (rx, m_rx))]
        recover.append((max(e["t"] for e in mv) - hole["t"]) * 1000)
        await asyncio.sleep(2.0)
    tx.send(cmd="stream_stop")
    if detect:
        table.add(f"(e) dead path: blackhole → left by a side, ms (p50 of {len(detect)})",
                  f"{_med(detect):.0f}", "", f"max {max(detect):.0f}",
                  f"≤ 10000 ({_verdict(max(detect) <= 10000)}; aiortc ≈ 30 s, lab)")
        table.add("(e) dead path: blackhole → new generation active on both, ms",
                  f"{_med(recover):.0f}", "", f"max {max(recover):.0f}")


async def fig_d(ctx: Ctx, table: Table, sessions: int, window: float) -> None:
    base = ctx.work / "hub"
    hub_home = base / "hub"
    hub = Profile.init(hub_home, os.urandom)
    groups: list[list[dict[str, str]]] = [[] for _ in range(min(4, sessions))]
    names = []
    for i in range(sessions):
        name = f"p{i:03d}"
        home = base / name
        p = Profile.init(home, os.urandom)
        root = os.urandom(32)
        hub.add_peer(name, p.identity.public_key, root, "bench")
        p.add_peer("hub", hub.identity.public_key, root, "bench")
        groups[i % len(groups)].append({"home": str(home), "peer": "hub"})
        names.append(name)
    loop = {"loopback": str(base / "onions"), "high_delay": 0.2}
    peers = [await Child.spawn(f"peers{i}", {"kind": "many", "links": g, **loop}, ctx.errlog)
             for i, g in enumerate(groups)]
    hubc = await Child.spawn("hub", {"kind": "many", "home": str(hub_home), "peers": names,
                                     **loop}, ctx.errlog)
    try:
        for c in peers:
            await c.ev("ready", 60, since=0)
            c.send(cmd="start")
        for c in peers:
            await c.ev("started", 300, since=0)
        ready = await hubc.ev("ready", 60, since=0)
        t0 = time.monotonic()
        hubc.send(cmd="start", batch=10, wait=30)
        st = await hubc.ev("started", 1800, since=0)
        ramp = time.monotonic() - t0
        await asyncio.sleep(3.0)
        m = hubc.mark()
        hubc.send(cmd="sample")
        s0 = await hubc.ev("sample", since=m)
        await asyncio.sleep(window)
        m = hubc.mark()
        hubc.send(cmd="sample")
        s1 = await hubc.ev("sample", since=m)
        n = int(s1["connected"])
        per = (s1["rss"] - ready["rss"]) / max(1, sessions) / MIB
        core = (s1["cpu"] - s0["cpu"]) / (s1["t"] - s0["t"]) * 100
        # the baseline, in this (idle) process: aiortc connections alone, both ends here
        raw_n = 2 if ctx.quick else 20
        raw_rss, raw_ms = await idle_generations(raw_n, 1.0 if ctx.quick else 10.0)
        raw_core = raw_ms * sessions / 10  # the same number of ends, % of a core
        table.add(f"(d) hub: sessions connected at the end / started (ramp {ramp:.0f} s)",
                  f"{n}/{sessions}", "", "", f"≥ 200 ({_verdict(n >= 200)})")
        table.add(f"(d) hub RSS per idle session, MiB (raw: per end, {raw_n} idle pairs)",
                  f"{per:.2f}", f"{raw_rss / MIB:.2f}",
                  f"{per / (raw_rss / MIB):.1f}×" if raw_rss > 0 else "",  # (quick: 2 pairs
                  # can fit in pages the process already had: no growth to divide by)
                  f"≤ 1 ({_verdict(per <= 1)})")
        table.add(f"(d) hub CPU with liveness, % of a core ({window:.0f} s; raw: "
                  f"{sessions} idle ends)", f"{core:.2f}", f"{raw_core:.2f}",
                  f"{core / raw_core:.1f}×" if raw_core > 0 else "",
                  f"≤ 10 ({_verdict(core <= 10)})")
        table.add("    the same per session, ms CPU per second", f"{core * 10 / sessions:.3f}",
                  f"{raw_ms:.3f}")
        del st
    finally:
        for c in [hubc, *peers]:
            await c.stop()


def _proc_stat(pid: int) -> tuple[int, float]:
    """(RSS bytes, CPU seconds) of a process, from /proc."""
    with open(f"/proc/{pid}/statm") as f:
        rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


async def fig_d_tor(ctx: Ctx, table: Table, onions: int, window: float) -> None:
    assert ctx.tor is not None
    client = ctx.tor[-1]
    pid = int(Path(client.data_dir, "tor.pid").read_text().strip())
    tor = TorDriver(TorConfig.testnet(client))
    await tor.start()
    handles: list[OnionHandle] = []
    try:
        await asyncio.sleep(1.0)
        r0, c0 = _proc_stat(pid)
        await asyncio.sleep(window)
        r1, c1 = _proc_stat(pid)
        idle_rate = (c1 - c0) / window
        handles = list(await asyncio.gather(*(
            tor.publish(os.urandom(32), {443: 9}, [os.urandom(32)]) for _ in range(onions))))
        await asyncio.sleep(2.0)
        r2, c2 = _proc_stat(pid)
        await asyncio.sleep(window)
        r3, c3 = _proc_stat(pid)
        rate = (c3 - c2) / window
        tick = 1 / os.sysconf("SC_CLK_TCK")
        per_s = (rate - idle_rate) / onions * 1000
        table.add(f"(d) tor RSS per published onion, MiB ({onions} onions, apart)",
                  f"{max(0, r3 - r1) / onions / MIB:.2f}", "", f"tor RSS {r1 / MIB:.0f} MiB")
        table.add("(d) tor CPU to publish one onion, ms", f"{(c2 - c1) / onions * 1000:.1f}")
        table.add(f"(d) tor CPU per published onion, ms/s ({window:.0f} s windows)",
                  f"{per_s:.3f}" if per_s > 0 else
                  f"< {tick / window / onions * 1000:.3f}", "",
                  f"tor idle {idle_rate * 1000:.2f} ms/s")
        del r0, r2
    finally:
        for h in handles:
            with contextlib.suppress(P4Error, OSError):
                await tor.unpublish(h)
        await tor.close()


async def _main(args: argparse.Namespace, tor: list[ClientInfo] | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="p4-bench-session-"))
    ctx = Ctx(work, tor, str(work / "onions"), args.quick, work / "children.stderr")
    table = Table()
    t0 = time.monotonic()
    try:
        q = args.quick
        only = set(args.only)
        if only & set("abce"):
            arms = {"channel": await _link_pair(ctx, "channel")}
            try:
                if args.session and only & set("ab"):
                    arms["session"] = await _link_pair(ctx, "session")
                if args.variant and only & set("ab"):
                    arms["variant"] = await _link_pair(
                        ctx, "channel", dict(v.split("=", 1) for v in args.variant), "variant")
                if only & set("ab"):
                    await fig_ab(ctx, table, arms, 1 if q else args.pairs, 2 if q else args.mib,
                                 500 if q else args.small, args.bulk_size)
                if "c" in only:
                    await fig_c(table, arms["channel"], 1 if q else args.pairs, tor is not None)
                if "e" in only:
                    await fig_e(table, arms["channel"], 1 if q else args.dead)
            finally:
                for pair in arms.values():
                    for c in pair:
                        await c.stop()
        if "d" in only:
            await fig_d(ctx, table, 3 if q else args.sessions, 2.0 if q else args.window)
        if tor is not None and "d" in only:
            await fig_d_tor(ctx, table, 1 if q else 10, 1.0 if q else 30.0)
    except BaseException:
        print(f"children's stderr: {ctx.errlog}", file=sys.stderr)
        table.print()
        raise
    table.print()
    print(f"\n{'quick' if args.quick else 'full'} mode, {time.monotonic() - t0:.0f} s; "
          f"signalling over {'Tor' if tor is not None else 'loopback (no Tor)'} for (a)–(c), "
          "(e); loopback for (d)")
    if os.environ.get("P4_BENCH_KEEP") == "1":
        print(f"kept {work} (children's stderr: {ctx.errlog})")
    else:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--pairs", type=int, default=11, help="A/B pairs and generation changes")
    ap.add_argument("--mib", type=int, default=50, help="MiB per bulk transfer (a)")
    ap.add_argument("--small", type=int, default=20000, help="1 KiB messages per run (b)")
    ap.add_argument("--bulk-size", type=int, default=MAX_DATA,
                    help="bytes per message of (a)'s channel and raw arms (default MAX_DATA)")
    ap.add_argument("--sessions", type=int, default=200, help="idle sessions of the hub (d)")
    ap.add_argument("--dead", type=int, default=5, help="dead paths (e)")
    ap.add_argument("--window", type=float, default=60.0, help="seconds of idle CPU sampling (d)")
    ap.add_argument("--quick", action="store_true", default=os.environ.get("P4_BENCH_QUICK") == "1",
                    help="tiny sizes, for CI (also: P4_BENCH_QUICK=1)")
    ap.add_argument("--session", action="store_true",
                    help="(a), (b): also the session-level API (submit/recv/confirm) as an arm")
    ap.add_argument("--variant", action="append", metavar="KEY=VALUE",
                    help="(a), (b): also a channel arm with a setting changed in both children "
                         "(commit_interval=SECONDS, bulk_interval=SECONDS, gc_threshold=N, "
                         "ack_every=N, synchronous=NORMAL; side=tx or side=rx: in that "
                         "child only); repeatable")
    ap.add_argument("--only", default="abcde", help="figures to run, e.g. 'ce' (default all)")
    ap.add_argument("--tornet", metavar="DIR", help="use the running network described in DIR")
    ap.add_argument("--no-tor", action="store_true", help="loopback signalling everywhere")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        cfg = json.loads(args.child)
        run = {"raw": _raw_child, "link": _link_child, "many": _many_child}[cfg["kind"]]
        if os.environ.get("P4_BENCH_PROFILE"):
            import cProfile

            global _PROFILE
            _PROFILE = cProfile.Profile()
            _PROFILE.enable()
        asyncio.run(run(cfg))
        return 0
    if args.no_tor:
        asyncio.run(_main(args, None))
    elif args.tornet:
        asyncio.run(_main(args, clients_in(args.tornet)))
    else:
        net = TorNet()
        net.start(timeout=180)
        try:
            asyncio.run(_main(args, net.clients))
        finally:
            net.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
