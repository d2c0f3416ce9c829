"""P⁴'s own CPU per MiB on one channel, without the transport: issue 11 (a)'s added CPU, measured
where the noise of aiortc does not drown it.

``bench_session`` (a) measures what P⁴ adds as the difference of two whole-process figures,
P⁴ over aiortc minus raw aiortc, each 60–110 ms/MiB and varying ±15 % between runs: what P⁴
adds (5–12 ms/MiB) moves by several points from run to run and no small change can be seen in
it.  Here the two :class:`~p4ref.link.Link` ends run in two processes joined by a Unix
``SOCK_SEQPACKET`` socket pair standing in for the data channel (one message per datagram, one
read per loop turn, as aiortc hands over a message), with the real session store (WAL,
``synchronous=FULL``), the real machines and the channel API the application uses
(``Channel.send`` / ``recv`` / ``ChannelMessage.confirm``).  The baseline arm moves the same
messages over the same socket with nothing on top, so what P⁴ costs is nearly all of the P⁴ arm.

Printed per side: CPU ms per MiB of the whole process (all threads) and of the session store's
writer thread, for both arms, medians of ``--pairs`` interleaved pairs, and the difference.
Signalling and the handshake's transport are stubbed (a fixed binding), so this is no test of
them; compare figures of one run only.

    python bench/bench_link_cpu.py [--mib 50] [--pairs 5] [--size 16353]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import MIB, cpu_seconds, writer_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 256  # sends / confirms in flight per application, as in bench_session
SNDBUF = 4 << 20


def _message(i: int, size: int) -> bytes:
    return i.to_bytes(4, "big") + b"\x5a" * (size - 4)


class SocketGen:
    """The part of :class:`~p4ref.io.webrtc.Generation` a link uses, over a SEQPACKET socket:
    one frame per datagram; what the socket cannot take now waits in order (``backlog``)."""

    state = "open"

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.queue: collections.deque[bytes] = collections.deque()
        self.backlog = 0
        self._low: list[asyncio.Future[None]] = []

    def send(self, data: bytes) -> None:
        if not self.queue:
            try:
                self.sock.send(data)
                return
            except BlockingIOError:
                self.loop.add_writer(self.sock, self._flush)
        self.queue.append(data)
        self.backlog += len(data)

    def _flush(self) -> None:
        while self.queue:
            try:
                self.sock.send(self.queue[0])
            except BlockingIOError:
                return
            self.backlog -= len(self.queue.popleft())
        self.loop.remove_writer(self.sock)
        for f in self._low:
            if not f.done():
                f.set_result(None)
        self._low.clear()

    async def below(self, limit: int) -> None:
        while self.backlog >= limit:
            f = self.loop.create_future()
            self._low.append(f)
            await f

    def close(self) -> asyncio.Future[None]:
        f = self.loop.create_future()
        f.set_result(None)
        return f

    async def close_when_drained(self, timeout: float = 10.0) -> None:
        return None


class _NoSignaller:
    """Stands in for :class:`~p4ref.link._signalling.Signaller`: this bench has no rendezvous."""

    given_up = False
    on_stream_ready: Any = None
    on_session_data: Any = None
    on_stream_end: Any = None

    def __init__(self, *_: Any, **__: Any) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


async def _forever(*_: Any) -> None:
    await asyncio.Event().wait()


def out(ev: str, **kw: Any) -> None:
    sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
    sys.stdout.flush()


async def _commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _p4_child(cfg: dict[str, Any], sock: socket.socket) -> None:
    import p4ref.link._link as link_mod
    from p4ref.link import Link, LinkConfig
    from p4ref.link._link import _Gen

    setattr(link_mod, "Signaller", _NoSignaller)  # noqa: B010 (no rendezvous in this bench)
    setattr(Link, "_signal_loop", _forever)  # noqa: B010
    setattr(Link, "_reconnect_loop", _forever)  # noqa: B010
    tx = cfg["role"] == "tx"
    link = Link.open(cfg["home"], cfg["peer"], tor=None,  # type: ignore[arg-type]
                     config=LinkConfig(synchronous="FULL", channels=True))
    await link.start()
    gen = SocketGen(sock)
    rec = _Gen(1, tx, 0)
    rec.g = gen  # type: ignore[assignment]
    link._gens[1] = rec
    a, b = hashlib.sha256(b"tx").digest(), hashlib.sha256(b"rx").digest()
    link.machine.open(1, 1, "datachannel", a if tx else b, b if tx else a, link._now())
    rec.opened = True
    link._live.add(1)
    link._pending = None
    link._need = False
    loop = asyncio.get_running_loop()
    loop.add_reader(sock, lambda: link._on_dc_data(1, sock.recv(1 << 17)))
    link._process()
    await _app(link, tx)


async def _app(link: Any, tx: bool) -> None:
    reader = await _commands()

    def out_cpu(ev: str) -> None:
        out(ev, cpu=cpu_seconds(), db=writer_cpu_seconds(), commits=link.store.db.commits)

    expect = [0, 0]  # bytes awaited, bytes got
    if tx:
        ch = await link.open_channel("bench")
    else:
        ch = await link.accept_channel()
    out("ready")
    recv: asyncio.Task[None] | None = None

    async def receive() -> None:
        confirming: collections.deque[asyncio.Future[None]] = collections.deque()
        while (msg := await ch.recv()) is not None:
            confirming.append(msg.confirm())
            expect[1] += len(msg.data)
            if expect[1] == expect[0]:
                while confirming:
                    await confirming.popleft()
                out_cpu("done")
            elif len(confirming) >= WINDOW:
                await confirming.popleft()

    if not tx:
        recv = asyncio.create_task(receive())
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "expect":
            expect[:] = [int(cmd["total"]), 0]
            out_cpu("expecting")
        elif cmd["cmd"] == "send":
            out_cpu("started")
            sending: collections.deque[asyncio.Future[None]] = collections.deque()
            for i in range(int(cmd["count"])):
                sending.append(ch.send(_message(i, int(cmd["size"]))))
                if len(sending) >= WINDOW:
                    await sending.popleft()
            while sending:
                await sending.popleft()
        elif cmd["cmd"] == "cpu":
            out_cpu("cpu")
        elif cmd["cmd"] == "stop":
            break
    if recv is not None:
        recv.cancel()
    await link.stop()


async def _raw_child(cfg: dict[str, Any], sock: socket.socket) -> None:
    """The baseline: the same messages over the same socket, nothing on top."""
    reader = await _commands()
    loop = asyncio.get_running_loop()
    gen = SocketGen(sock)
    expect = [0, 0]

    def on_message() -> None:
        data = sock.recv(1 << 17)
        expect[1] += len(data)
        if expect[1] == expect[0]:
            out("done", cpu=cpu_seconds(), db=0.0, commits=0)

    loop.add_reader(sock, on_message)
    out("ready")
    while line := await reader.readline():
        cmd = json.loads(line)
        if cmd["cmd"] == "expect":
            expect[:] = [int(cmd["total"]), 0]
            out("expecting", cpu=cpu_seconds(), db=0.0, commits=0)
        elif cmd["cmd"] == "send":
            out("started", cpu=cpu_seconds(), db=0.0, commits=0)
            for i in range(int(cmd["count"])):
                gen.send(_message(i, int(cmd["size"])))
                if gen.backlog >= 1 << 20:
                    await gen.below(1 << 18)
        elif cmd["cmd"] == "cpu":
            out("cpu", cpu=cpu_seconds(), db=0.0, commits=0)
        elif cmd["cmd"] == "stop":
            break


class Child:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def spawn(cls, cfg: dict[str, Any], fd: int) -> Child:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--child", json.dumps({**cfg, "fd": fd}), cwd=ROOT,
            env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            pass_fds=(fd,))
        return cls(proc)

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())

    async def ev(self, name: str, timeout: float = 300) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            if not line:
                raise RuntimeError(f"child exited before {name!r}")
            e: dict[str, Any] = json.loads(line)
            if e["ev"] == name:
                return e

    async def stop(self) -> None:
        self.send(cmd="stop")
        try:
            await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()


async def _pair(kind: str, work: Path) -> tuple[Child, Child]:
    s1, s2 = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for s in (s1, s2):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        s.setblocking(False)
    cfg: dict[str, Any] = {"kind": kind}
    if kind == "p4":
        from p4ref.io.store import Profile

        root = os.urandom(32)
        pa = Profile.init(work / "tx", os.urandom)
        pb = Profile.init(work / "rx", os.urandom)
        pa.add_peer("rx", pb.identity.public_key, root, "bench")
        pb.add_peer("tx", pa.identity.public_key, root, "bench")
    tx = await Child.spawn({**cfg, "role": "tx", "home": str(work / "tx"), "peer": "rx"},
                           s1.fileno())
    rx = await Child.spawn({**cfg, "role": "rx", "home": str(work / "rx"), "peer": "tx"},
                           s2.fileno())
    s1.close()
    s2.close()
    await asyncio.gather(tx.ev("ready"), rx.ev("ready"))
    return tx, rx


async def _transfer(tx: Child, rx: Child, count: int, size: int) -> tuple[float, ...]:
    rx.send(cmd="expect", total=count * size)
    e = await rx.ev("expecting")
    tx.send(cmd="send", count=count, size=size)
    s = await tx.ev("started")
    d = await rx.ev("done")
    tx.send(cmd="cpu")
    c = await tx.ev("cpu")
    return (d["t"] - s["t"], c["cpu"] - s["cpu"], c["db"] - s["db"],
            d["cpu"] - e["cpu"], d["db"] - e["db"],
            c["commits"] - s["commits"], d["commits"] - e["commits"])


async def _main(args: argparse.Namespace) -> None:
    size = int(args.size)
    count = int(args.mib) * MIB // size
    mib = count * size / MIB
    with tempfile.TemporaryDirectory(prefix="p4-bench-cpu-") as d:
        arms = {"p4": await _pair("p4", Path(d)), "raw": await _pair("raw", Path(d))}
        res: dict[str, list[tuple[float, ...]]] = {k: [] for k in arms}
        await _transfer(*arms["p4"], min(count, 200), size)  # warm up
        for i in range(args.pairs):
            for k in (list(arms) if i % 2 == 0 else list(arms)[::-1]):
                res[k].append(await _transfer(*arms[k], count, size))
        for pair in arms.values():
            for c in pair:
                await c.stop()

    def med(k: str, j: int, scale: float = 1000) -> float:
        """The median of column ``j`` per MiB (seconds as ms: ``scale`` 1000)."""
        return float(statistics.median([float(r[j]) for r in res[k]])) / mib * scale

    print(f"{count} messages of {size} B ({mib:.1f} MiB) per transfer, medians of "
          f"{args.pairs} interleaved pairs; CPU in ms per MiB")
    print(f"{'':26}{'P⁴':>10}{'bare socket':>14}{'P⁴ adds':>10}")
    for label, j in (("sender, all threads", 1), ("  of which SQLite thread", 2),
                     ("receiver, all threads", 3), ("  of which SQLite thread", 4)):
        p, r = med("p4", j), med("raw", j)
        print(f"{label:26}{p:10.2f}{r:14.2f}{p - r:10.2f}")
    print(f"{'commits per MiB, tx / rx':26}{med('p4', 5, 1):6.1f} /{med('p4', 6, 1):4.1f}")
    p, r = med("p4", 0), med("raw", 0)
    print(f"{'wall ms per MiB':26}{p:10.2f}{r:14.2f}{p / r if r else 0:9.1f}×")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--size", type=int, default=16353, help="bytes per message (MAX_DATA)")
    ap.add_argument("--quick", action="store_true",
                    default=os.environ.get("P4_BENCH_QUICK") == "1", help="2 MiB, 1 pair (CI)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        cfg = json.loads(args.child)
        sock = socket.socket(fileno=cfg["fd"])
        sock.setblocking(False)

        async def run() -> None:
            await (_p4_child if cfg["kind"] == "p4" else _raw_child)(cfg, sock)
        prof = None
        if os.environ.get("P4_BENCH_PROFILE"):  # a cProfile of each child into that folder
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
        asyncio.run(run())
        if prof is not None:
            prof.disable()
            prof.dump_stats(os.path.join(os.environ["P4_BENCH_PROFILE"],
                                         f"{cfg['kind']}-{cfg['role']}.prof"))
        os._exit(0)
    if args.quick:
        args.mib, args.pairs = 2, 1
    asyncio.run(_main(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
