"""Onion re-dial time after a hard move in the network lab, driven by the reconnect policy.

    python bench/bench_reconnect.py [--trials 20] [--baseline] [--limit 120] [--json] [--quick]

Needs root and the lab's prerequisites (tools/netlab, README there). Builds a lab with Tor inside
(:class:`tools.netlab.tor.LabTorNet`: relays on the lab's internet bridge, client 0 in device
``a`` behind its NAT, client 1 in device ``b``), publishes an onion from ``a`` and reaches it
from ``b``. Then, per trial, device ``a`` moves Wi-Fi ↔ cellular (hard) and the two peers'
:class:`p4ref.reconnect.ReconnectPolicy` objects decide what happens:

- ``a`` (the publisher, HIGH) gets ``NetworkChanged`` from :class:`p4ref.io.netwatch.NetWatch`
  in its namespace and carries out the actions: ``NudgeTor`` (``DisableNetwork`` 1→0) and,
  from the 4th move within 10 minutes, ``Republish`` (the same key re-added);
- ``b`` (the dialer, LOW) is told at the move that its stream died (``StreamClosed``; the
  liveness detection of p4-04 §10, up to 10 s, is left out so the figure is Tor's recovery)
  and dials as the policy says: a fresh circuit per ``Dial`` (5 s each), a second one side by
  side when the first has no outcome after 2 s (RDV-70), ``DialFailed`` → backoff and
  ``RefetchDescriptor`` (``HSFETCH``).

Printed: p50 / p90 / max of move → first echo through the onion, and the phases (netwatch
detection, nudge, re-dial), with the dials per move. ``--baseline`` repeats the same with a
tor that is not nudged (a system tor P⁴ did not launch), which takes over 100 s a move in this
lab; it runs ``--baseline-trials`` times (default 2) and says so. ``--quick`` (or
``P4_BENCH_QUICK=1``): one move of each kind (session moves given 40 s), one return of the
dial-only peer, one aiortc-alone move, no ``--baseline``, for CI (about 4 minutes here).
Without root or a lab prerequisite it
prints why and exits 0, except under ``CI=true`` (exit 1).

The session on top (issue 12 §8 (a), (b)): two ``p4ref/link/_testpeer.py`` processes, one in
each device namespace with its own tor client there, a fresh pair, STUN + TURN from the lab's
coturn, traffic both ways. Device ``a`` (which watches its own namespace with NetWatch and calls
``network_changed``; each peer's tor counts as one P⁴ launched, so the link's reconnect policy
nudges it, drops the streams and redials at once, as ``p4 up --tor launch``) moves ``--trials``
times hard and ``--trials`` times make-before-break (both interfaces up for ``--overlap``
seconds, default 3; Wi-Fi ↔ cellular alternately; cellular is a symmetric NAT, so it runs
relayed); then b's NAT rebinds ``--trials`` times (a new public address, mappings lost, no
event on either device: the session's liveness must notice; "detect" is then the first peer
declaring the old path dead), and a makes ``--trials`` more hard moves with 1 % loss and
+50 ms each way on both its networks (NFQUEUE, ``Lab.impair``). Printed per case: the
first message ``a`` submits once its old path is gone → delivered at ``b``, and move → new
direct generation active (the move starts when the old interface goes (hard) or the new one
comes up (make-before-break)), p50 / p90 / max; the phases (median): detection (netwatch),
Tor recovery (the moved peer's new onion stream carrying the session), signalling + ICE +
DTLS + handshake (until the new generation is active) and replay (the first message after the
move, when it came later). Every message is checked: none lost
or duplicated. ``--no-session`` leaves the session part out; ``--cases hard,lossy`` runs only
those; a trial not done within ``--limit`` is counted and told on stderr with what it waited
for.  ``--system-tor``: the peers treat their tors as not launched by P⁴ (the link does not
nudge; the peer process nudges after a move it saw, as someone running a system tor might).
``--strict-nat``: b's router maps TCP only from a SYN (``Lab.set_tcp_strict``), so a rebinding
leaves b's tor connections dead without a reset.

(d) a dial-only peer coming back (a phone brought to the foreground): a second pair, ``b``
dial-only; per trial ``b``'s peer is killed and its tor stopped, ``a`` sends while it is away
(``--away`` s, default 10), then ``b``'s tor starts again from its data directory and ``b``'s
peer dials: tor start → first message at ``b`` and → new direct generation, with the phases
(tor bootstrap; process start, dial and HELLO; signalling + ICE + DTLS + handshake).
``--no-comeback`` leaves it out.

The aiortc-alone baseline (``--aiortc-trials``, default 3, as it takes 30–120 s a move): two
raw aiortc peers (``bench/_aiortc_peer.py``) with the same STUN/TURN and the signalling carried
instantly by this process, no Tor, no P⁴; ``a`` makes (a)'s hard move and nothing reacts until
aiortc itself reports the connection failed, when ``a`` offers a new one at once.  Printed:
move → failure reported, → first message on the new connection, next to (a).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from p4ref.reconnect import (
    Dial,
    DialFailed,
    DialSucceeded,
    NetworkChanged,
    NudgeTor,
    ReconnectConfig,
    ReconnectPolicy,
    RefetchDescriptor,
    Republish,
    StreamClosed,
    Want,
)


def _ms() -> int:
    return int(time.monotonic() * 1000)


def _quantiles(xs: list[float]) -> tuple[float, float, float]:
    s = sorted(xs)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return statistics.median(s), p90, s[-1]


async def _trials(lab: Any, net: Any, n: int, *, nudge: bool, limit: float, settle: float,
                  config: ReconnectConfig) -> dict[str, Any]:
    from p4ref.io.netwatch import NetWatch, nudge_tor
    from tools.netlab.tor import SocksError, echo_once, echo_server

    out: dict[str, Any] = {"nudge": nudge, "total_s": [], "detect_s": [], "nudge_s": [],
                           "redial_s": [], "dials": [], "republished": 0, "failed": 0}
    out["tor_ready_s"] = round(net.timings["total"], 1)
    sock = os.path.join(net.dir, f"echo-{int(nudge)}.sock")
    server = await echo_server(sock)
    c0 = await asyncio.to_thread(net.controller, 0)
    c1 = await asyncio.to_thread(net.controller, 1)
    hs: Any = None
    try:
        hs = await asyncio.to_thread(
            c0.create_ephemeral_hidden_service, {80: f"unix:{sock}"}, key_type="NEW",
            key_content="ED25519-V3", await_publication=True, timeout=60)  # fmt: skip
        onion = hs.service_id + ".onion"
        # Setup, not a figure: a fresh lab network may not serve the new descriptor yet (SOCKS
        # 0xf0 "descriptor not found"); try again for up to 90 s before measuring anything.
        for attempt in range(3):
            try:
                await echo_once(net.socks_socket(1), onion, "first", 30)
                break
            except (SocksError, TimeoutError):
                if attempt == 2:
                    raise
        a = ReconnectPolicy("high", rng=os.urandom, tor_launched=nudge)
        b = ReconnectPolicy("low", rng=os.urandom, config=config)
        a.on_event(Want(), _ms())
        b.on_event(Want(), _ms())
        b.on_event(DialSucceeded(), _ms())
        for i in range(n):
            if i:
                await asyncio.sleep(settle)
            to = "cell" if lab.homes["a"].on == "wlan" else "wlan"
            async with NetWatch(netns=lab.ns("a")) as watch:
                t0 = time.monotonic()
                await asyncio.to_thread(lab.move, "a", to)
                actions = b.on_event(StreamClosed(), _ms())  # b's stream ran over a's circuits
                change = await watch.next(10)
                out["detect_s"].append(change.at - t0)
                t1 = time.monotonic()
                for act in a.on_event(NetworkChanged(), _ms()):
                    if isinstance(act, NudgeTor):
                        await nudge_tor(c0)
                    elif isinstance(act, Republish):
                        out["republished"] += 1
                        await asyncio.to_thread(c0.remove_ephemeral_hidden_service, hs.service_id)
                        await asyncio.to_thread(
                            c0.create_ephemeral_hidden_service, {80: f"unix:{sock}"},
                            key_type=hs.private_key_type, key_content=hs.private_key,
                            await_publication=False)  # fmt: skip
                out["nudge_s"].append(time.monotonic() - t1)
            t2 = time.monotonic()
            dials, done = 0, False
            running: set[asyncio.Task[None]] = set()
            while not done and time.monotonic() - t0 < limit:
                for act in actions:
                    if isinstance(act, RefetchDescriptor):
                        with contextlib.suppress(Exception):
                            await asyncio.to_thread(c1.msg, f"HSFETCH {hs.service_id}")
                    elif isinstance(act, Dial):  # hedged dials run side by side (RDV-70)
                        dials += 1
                        running.add(asyncio.create_task(
                            echo_once(net.socks_socket(1), onion, f"t{i}d{dials}", 5.0)))
                deadline = b.next_deadline()
                wait = limit - (time.monotonic() - t0)
                if deadline is not None:
                    wait = min(wait, max(0.0, (deadline - _ms()) / 1000))
                if running:
                    finished, running = await asyncio.wait(
                        running, timeout=max(wait, 0.0), return_when=asyncio.FIRST_COMPLETED)
                else:
                    finished = set()
                    await asyncio.sleep(max(wait, 0.0))
                actions = []
                for task in finished:
                    if task.exception() is None:
                        actions += b.on_event(DialSucceeded(), _ms())
                        done = True
                    else:
                        code = getattr(task.exception(), "code", 0) or 5
                        actions += b.on_event(DialFailed(code), _ms())
                actions += b.on_timer(_ms())
            for task in running:  # AbandonDial
                task.cancel()
            for task in running:
                with contextlib.suppress(BaseException):
                    await task
            out["dials"].append(dials)
            if done:
                out["redial_s"].append(time.monotonic() - t2)
                out["total_s"].append(time.monotonic() - t0)
            else:
                out["failed"] += 1
    finally:
        if hs is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(c0.remove_ephemeral_hidden_service, hs.service_id)
        if lab.homes["a"].on != "wlan":  # back home, and a's tor told (the next part uses it)
            await asyncio.to_thread(lab.move, "a", "wlan")
            with contextlib.suppress(Exception):
                await nudge_tor(c0)
        c0.close()
        c1.close()
        server.close()
    return out


# ---------------------------------------------------------------------- the session on top

SOCKS_PORT = 9050  # a TCP SocksPort on 127.0.0.1 inside each device namespace


class _Peer:
    """One ``_testpeer`` process inside a lab device namespace, driven over JSON lines."""

    def __init__(self, netns: str, cfg: dict[str, Any],
                 program: tuple[str, ...] = ("-m", "p4ref.link._testpeer")) -> None:
        self.cfg = cfg
        self.lines: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        root = Path(__file__).resolve().parent.parent
        with open(cfg["log"] + ".stderr", "a") as err:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", netns, sys.executable, *program,
                 json.dumps(cfg)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                ev = json.loads(line)
                self.lines.append(ev)
                self._q.put(ev)

    def send(self, **cmd: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait(self, pred: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        """The first event, seen so far or later, that satisfies ``pred``."""
        for ev in self.lines:
            if pred(ev):
                return ev
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                ev = self._q.get(timeout=left)
                if pred(ev):
                    return ev
        raise TimeoutError(f"no such event within {timeout:.0f} s; last {self.lines[-5:]}")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.send(cmd="stop")
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _delivered(log: str) -> int:
    try:
        with open(log) as f:
            return len({tuple(line.split()[:2]) for line in f})
    except FileNotFoundError:
        return 0


def _check_log(log: str, seed: int, count: int) -> None:
    """Messages 0 … count-1 of ``seed``'s traffic, in order, once per id (same content)."""
    from p4ref.link._testpeer import digest, payload

    seen: dict[tuple[str, str], str] = {}
    order: list[str] = []
    with open(log) as f:
        for line in f:
            inc, seq, h = line.split()
            if (inc, seq) in seen:
                if seen[(inc, seq)] != h:
                    raise AssertionError(f"message id {seq} redelivered with other content")
                continue
            seen[(inc, seq)] = h
            order.append(h)
    if order != [digest(payload(seed, i)) for i in range(count)]:
        raise AssertionError(f"{log}: messages lost, duplicated or reordered")


def _wait_count(log: str, count: int, limit: float) -> float:
    end = time.monotonic() + limit
    while _delivered(log) < count:
        if time.monotonic() > end:
            raise TimeoutError(f"{_delivered(log)} of {count} delivered within {limit:.0f} s")
        time.sleep(0.01)
    return time.monotonic()


def _nudge(net: Any, i: int) -> None:
    from p4ref.io.netwatch import nudge_tor_sync

    c = net.controller(i)
    try:
        nudge_tor_sync(c)
    finally:
        c.close()


def _newer_than(gen: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["ev"] == "connection_open" and e["active"] and e["gen"] > gen


def _event_after(ev: str, t: float, also: tuple[str, ...] = ()
                 ) -> Callable[[dict[str, Any]], bool]:
    return lambda e: (e["ev"] == ev or e["ev"] in also) and e["t"] > t


def _msg_on(pc: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["ev"] == "msg" and e["pc"] == pc


def _drain_and_check(cfgs: list[dict[str, Any]], count: int, limit: float,
                     out: dict[str, Any]) -> None:
    """After the trials: what a trial that ran out of time left in flight arrives now; then
    each receive log must hold the other peer's messages in order, once each."""
    for c in cfgs:
        with contextlib.suppress(TimeoutError):
            _wait_count(c["log"], count, limit)
    out["undelivered"] = [count - _delivered(c["log"]) for c in cfgs]
    _check_log(cfgs[1]["log"], cfgs[0]["seed"], _delivered(cfgs[1]["log"]))
    _check_log(cfgs[0]["log"], cfgs[1]["seed"], _delivered(cfgs[0]["log"]))
    out["messages_each_way"] = count


def _lab_ice() -> list[dict[str, Any]]:
    """STUN and TURN of the lab's coturn, as ``_testpeer``'s ``ice_servers``."""
    from tools.netlab import STUN_IP, STUN_PORT, TURN_PASSWORD, TURN_USER

    return [{"urls": [f"stun:{STUN_IP}:{STUN_PORT}"]},
            {"urls": [f"turn:{STUN_IP}:{STUN_PORT}"], "username": TURN_USER,
             "credential": TURN_PASSWORD}]


def _lab_pair(net: Any, name: str, keep: str | None, seed: int, extra: list[dict[str, Any]]
              ) -> tuple[str, list[dict[str, Any]]]:
    """A fresh pair of profiles in a new directory and the ``_testpeer`` configurations of
    ``a`` and ``b`` (lab tor clients 0 and 1, every address, STUN+TURN, plus ``extra[i]``)."""
    from p4ref.io.store import Profile

    work = tempfile.mkdtemp(prefix=f"p4-bench-{name}-", dir=keep)
    root = os.urandom(32)
    pa = Profile.init(Path(work) / "a", os.urandom)
    pb = Profile.init(Path(work) / "b", os.urandom)
    pa.add_peer("b", pb.identity.public_key, root, "bench")
    pb.add_peer("a", pa.identity.public_key, root, "bench")
    cfgs: list[dict[str, Any]] = []
    for i, (me, other) in enumerate((("a", "b"), ("b", "a"))):
        cfgs.append({"home": str(Path(work) / me), "peer": other, "log": f"{work}/{me}.log",
                     "seed": seed + i, "tor": dataclasses.asdict(net.clients[i]),
                     "tor_overrides": {"control_socket": net.control_socket(i),
                                       "socks_port": SOCKS_PORT},
                     "host_addresses": None, "ice_servers": _lab_ice(), "verbose": True,
                     **extra[i]})
    return work, cfgs


#: The session cases, in the order they run: moves of device a (hard: the old interface gone
#: before the new one is up; make-before-break: both up for ``--overlap`` s), b's NAT rebinding
#: (no local event: liveness must notice), and a hard move with 1 % loss and +50 ms each way on
#: both of a's networks.
CASES = {"hard": "(a) hard move", "mbb": "(b) make-before-break",
         "rebind": "(c) NAT rebinding (b)", "lossy": "(e) hard move, 1 % loss +50 ms"}


def _session(lab: Any, net: Any, trials: int, *, limit: float, settle: float,
             step: int = 40, keep: str | None = None, overlap: float = 3.0,
             cases: list[str] | None = None, launched: bool = True) -> dict[str, Any]:
    """Hard and make-before-break moves of device ``a`` under a running session (module
    docstring); figures in seconds from the move."""
    work, cfgs = _lab_pair(net, "session", keep, 1000,
                           [{"netwatch": True, "tor_launched": launched}] * 2)
    out: dict[str, Any] = {c: {"first_msg_s": [], "generation_s": [], "detect_s": [],
                               "tor_s": [], "setup_s": [], "replay_s": [], "via_tor": 0,
                               "failed": 0, "paths": []} for c in CASES}
    t_start = time.monotonic()
    a, b = _Peer(lab.ns("a"), cfgs[0]), _Peer(lab.ns("b"), cfgs[1])
    count = step
    try:
        for p in (a, b):
            p.wait(lambda e: e["ev"] == "status" and e["status"] == "connected", 120)
        out["connect_s"] = time.monotonic() - t_start
        for p in (a, b):
            p.send(cmd="send", count=count)
        _wait_count(cfgs[1]["log"], count, 60)
        _wait_count(cfgs[0]["log"], count, 60)
        for case in [c for c in cases or CASES for _ in range(trials)]:
            time.sleep(settle)
            r = out[case]
            gens = [e["gen"] for e in a.lines if e["ev"] == "connection_open" and e["active"]
                    and e["gen"]]
            gen0 = max(gens)
            before = _delivered(cfgs[1]["log"])
            to = "cell" if lab.homes["a"].on == "wlan" else "wlan"
            if case == "lossy":  # both of a's networks, each way (NFQUEUE delay)
                for router in ("a", "rc"):
                    lab.impair(router, loss=0.01, delay_ms=50)
            t0 = time.monotonic()
            if case == "rebind":  # b's NAT gets a new public address: no event anywhere
                lab.rebind("b")
            else:
                lab.move("a", to, make_before_break=case == "mbb", overlap=overlap)
            t_sub = time.monotonic()  # the old path is gone: these can only go the new way
            count += step
            for p in (a, b):
                p.send(cmd="send", count=count)
            try:
                first = _wait_count(cfgs[1]["log"], before + 1, limit) - t_sub
                newer = _newer_than(gen0)
                opened = a.wait(newer, limit)["t"] - t0
                b.wait(newer, limit)
                _wait_count(cfgs[1]["log"], count, limit)
                _wait_count(cfgs[0]["log"], count, limit)
            except TimeoutError as exc:
                r["failed"] += 1
                print(f"bench_reconnect: {case} trial at t={t0 - t_start:.1f} s (a's log "
                      f"clock {t0:.1f}) not within {limit:.0f} s: {exc}", file=sys.stderr)
                continue
            finally:
                if case == "lossy":
                    for router in ("a", "rc"):
                        lab.impair(router)
            if case == "rebind":  # detected when a peer declares the old path dead
                left = [e["t"] for p in (a, b) for e in p.lines if e["t"] > t0
                        and e["ev"] == "connection_failed" and e["gen"] == gen0]
                detect = min(left, default=t0 + opened) - t0
            else:
                detect = a.wait(_event_after("netchange", t0), 5)["t"] - t0
            tor = [e["t"] - t0 for e in a.lines if e["ev"] == "connection_open"
                   and e["gen"] == 0 and t0 < e["t"] < t0 + opened]
            r["first_msg_s"].append(first)
            r["generation_s"].append(opened)
            r["detect_s"].append(detect)
            if tor:
                r["tor_s"].append(tor[0] - detect)
            r["setup_s"].append(opened - (tor[0] if tor else detect))
            # after the new generation was active (or the message was submitted, if later)
            r["replay_s"].append(max(0.0, first + t_sub - t0 - max(opened, t_sub - t0)))
            r["via_tor"] += first + t_sub - t0 < opened
            a.send(cmd="status")
            st = a.wait(_event_after("status_reply", t0 + opened), 30)
            r["paths"].append(st["stats"]["path"])
        _drain_and_check(cfgs, count, limit, out)
    except BaseException:
        for c in cfgs:
            tail: list[str] = []
            with contextlib.suppress(OSError), open(c["log"] + ".stderr") as f:
                tail = [ln for ln in f.read().splitlines() if " stem " not in ln][-15:]
            print(f"{c['log']}.stderr (last lines):", *tail, sep="\n  ", file=sys.stderr)
        raise
    finally:
        for p in (a, b):
            p.stop()
        if lab.homes["a"].on != "wlan":
            lab.move("a", "wlan")
            _nudge(net, 0)
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _comeback(lab: Any, net: Any, trials: int, *, limit: float, away: float, step: int = 40,
              keep: str | None = None) -> dict[str, Any]:
    """(d): device ``b`` is a dial-only phone, ``a`` publishes.  Per trial ``b``'s peer is
    killed (SIGKILL: the app was suspended) and its tor stopped; ``a`` sends while it is away;
    after ``away`` s, ``b``'s tor starts again from its data directory (cached consensus,
    descriptors and guards) and then its peer, which dials ``a``'s onion: figures from the tor
    start to the session's first message at ``b`` and to its new direct generation."""
    work, cfgs = _lab_pair(net, "comeback", keep, 2000,
                           [{"peer_dial_only": True, "tor_launched": True},
                            {"dial_only": True, "tor_launched": True}])
    out: dict[str, Any] = {"first_msg_s": [], "generation_s": [], "tor_s": [], "stream_s": [],
                           "setup_s": [], "replay_s": [], "failed": 0, "paths": []}
    a, b = _Peer(lab.ns("a"), cfgs[0]), _Peer(lab.ns("b"), cfgs[1])
    count = step
    try:
        for p in (a, b):
            p.wait(lambda e: e["ev"] == "status" and e["status"] == "connected", 120)
        for p in (a, b):
            p.send(cmd="send", count=count)
        _wait_count(cfgs[1]["log"], count, 60)
        _wait_count(cfgs[0]["log"], count, 60)
        for _ in range(trials):
            b.proc.kill()
            b.proc.wait()
            net.stop_client(1)
            count += step
            a.send(cmd="send", count=count)  # waits in a's outbox while b is away
            time.sleep(away)
            before = _delivered(cfgs[1]["log"])
            t0 = time.monotonic()
            try:
                net.restart_client(1, timeout=limit)
                net.open_socks(1, SOCKS_PORT)
                t_tor = time.monotonic()
                b = _Peer(lab.ns("b"), cfgs[1])
                b.send(cmd="send", count=count)
                first = _wait_count(cfgs[1]["log"], before + 1, limit) - t0
                onion = b.wait(lambda e: e["ev"] == "connection_open" and e["gen"] == 0,
                               limit)["t"] - t0
                opened = b.wait(_newer_than(0), limit)["t"] - t0
                _wait_count(cfgs[1]["log"], count, limit)
                _wait_count(cfgs[0]["log"], count, limit)
            except (TimeoutError, RuntimeError, OSError) as exc:
                out["failed"] += 1
                print(f"bench_reconnect: (d) trial not within {limit:.0f} s: {exc}",
                      file=sys.stderr)
                continue
            out["first_msg_s"].append(first)
            out["generation_s"].append(opened)
            out["tor_s"].append(t_tor - t0)
            out["stream_s"].append(onion - (t_tor - t0))
            out["setup_s"].append(opened - onion)
            out["replay_s"].append(max(0.0, first - opened))
            b.send(cmd="status")
            st = b.wait(_event_after("status_reply", t0 + opened), 30)
            out["paths"].append(st["stats"]["path"])
        _drain_and_check(cfgs, count, limit, out)
    finally:
        for p in (a, b):
            p.stop()
        if net.process(net.clients[1].nickname) is None:  # a trial failed with it stopped
            with contextlib.suppress(Exception):
                net.restart_client(1)
                net.open_socks(1, SOCKS_PORT)
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _aiortc_signal(a: _Peer, b: _Peer, limit: float) -> int:
    """A new connection offered by ``a``, the signalling carried instantly by this process;
    the number of ``b``'s connection.  ``a`` offers again when gathering failed."""
    end = time.monotonic() + limit
    while True:
        t = time.monotonic()
        a.send(cmd="offer")
        ev = a.wait(_event_after("offer", t, also=("error",)), max(1.0, end - time.monotonic()))
        if ev["ev"] == "offer":
            break
        time.sleep(0.5)
    t = time.monotonic()
    b.send(cmd="answer_to", sdp=ev["sdp"])
    ans = b.wait(lambda e: e["ev"] == "answer" and e["t"] > t, max(1.0, end - time.monotonic()))
    a.send(cmd="answer", sdp=ans["sdp"])
    return int(ans["pc"])


def _aiortc_alone(lab: Any, trials: int, *, limit: float, keep: str | None = None
                  ) -> dict[str, Any]:
    """The baseline of issue 12 §8: two raw aiortc peers (``bench/_aiortc_peer.py``) with the
    same STUN/TURN, signalling carried instantly by this process (no Tor), no P⁴.  Per trial
    ``a`` makes a hard move; nothing reacts until aiortc reports the connection ``failed`` at
    either end (its ICE consent checks), then ``a`` offers a new connection at once: move →
    failure reported, and → first message on the new connection."""
    ice = _lab_ice()
    work = tempfile.mkdtemp(prefix="p4-bench-aiortc-", dir=keep)
    program = (str(Path(__file__).resolve().parent / "_aiortc_peer.py"),)
    a = _Peer(lab.ns("a"), {"ice_servers": ice, "log": f"{work}/a"}, program)
    b = _Peer(lab.ns("b"), {"ice_servers": ice, "log": f"{work}/b"}, program)
    out: dict[str, Any] = {"first_msg_s": [], "detect_s": [], "setup_s": [], "failed": 0}
    try:
        pc = _aiortc_signal(a, b, 60)
        b.wait(_msg_on(pc), 60)
        for _ in range(trials):
            time.sleep(2)
            to = "cell" if lab.homes["a"].on == "wlan" else "wlan"
            t0 = time.monotonic()
            lab.move("a", to)
            try:
                dead = _first_failure(a, b, t0, limit)
                pc = _aiortc_signal(a, b, max(1.0, t0 + limit - time.monotonic()))
                got = b.wait(_msg_on(pc), max(1.0, t0 + limit - time.monotonic()))
            except TimeoutError as exc:
                out["failed"] += 1
                print(f"bench_reconnect: aiortc alone, not within {limit:.0f} s: {exc}",
                      file=sys.stderr)
                with contextlib.suppress(TimeoutError):  # connected again for the next one
                    pc = _aiortc_signal(a, b, 60)
                    b.wait(_msg_on(pc), 60)
                continue
            out["detect_s"].append(dead - t0)
            out["first_msg_s"].append(got["t"] - t0)
            out["setup_s"].append(got["t"] - dead)
    finally:
        for p in (a, b):
            p.stop()
        if lab.homes["a"].on != "wlan":
            lab.move("a", "wlan")
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return out


def _first_failure(a: _Peer, b: _Peer, t0: float, limit: float) -> float:
    """When either aiortc peer first reported its connection failed after ``t0``."""
    end = t0 + limit

    def failed(e: dict[str, Any]) -> bool:
        return e["ev"] == "state" and e["t"] > t0 and e["state"] in ("failed", "closed")
    while time.monotonic() < end:
        for p in (a, b):
            for e in p.lines:
                if failed(e):
                    return float(e["t"])
        time.sleep(0.05)
    raise TimeoutError(f"aiortc reported no failure within {limit:.0f} s")


def _report_comeback(r: dict[str, Any], away: float) -> None:
    n = len(r["first_msg_s"]) + r["failed"]

    def med(k: str) -> str:
        return f"{statistics.median(r[k]):.2f}" if r[k] else "-"
    late = r.get("undelivered", [0, 0])
    print(f"(d) dial-only peer coming back after {away:.0f} s away (its tor restarted from its "
          f"data directory, then its peer; {r.get('messages_each_way', '?')} messages each way, "
          "checked: none lost, duplicated or reordered"
          + (f"; still undelivered a→b {late[0]}, b→a {late[1]}" if any(late) else "") + ")")
    print("| n | tor start → first message p50 / p90 / max (s) | → new direct generation "
          "p50 / p90 / max (s) | tor bootstrap | process + dial + HELLO | signal+ICE+DTLS+"
          "handshake | path |")
    print("|---|---|---|---|---|---|---|")
    paths = ",".join(sorted(set(r["paths"]))) or "-"
    print(f"| {n} | {_fmt(r['first_msg_s'])} | {_fmt(r['generation_s'])} | {med('tor_s')} | "
          f"{med('stream_s')} | {med('setup_s')} | {paths} |"
          + (f" not within the limit: {r['failed']}" if r["failed"] else ""))


def _fmt(xs: list[float]) -> str:
    if not xs:
        return "-"
    p50, p90, mx = _quantiles(xs)
    return f"{p50:.2f} / {p90:.2f} / {mx:.2f}"


def _report_session(r: dict[str, Any]) -> None:
    late = r.get("undelivered", [0, 0])
    print(f"session (two peers in the lab, STUN+TURN, connected in {r.get('connect_s', 0):.1f} s;"
          f" {r.get('messages_each_way', '?')} messages each way, every one delivered checked: "
          "none lost, duplicated or reordered" + (f"; still undelivered a→b {late[0]}, b→a "
                                                  f"{late[1]}" if any(late) else "") + ")")
    print("| case | n | first message after the old path is gone, p50 / p90 / max (s) "
          "| move → new generation p50 / p90 / max (s) | detect | Tor | "
          "signal+ICE+DTLS+handshake | replay | first via Tor | path |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case, name in CASES.items():
        c = r[case]
        n = len(c["first_msg_s"]) + c["failed"]
        if not n:
            continue

        def med(k: str, c: dict[str, Any] = c) -> str:
            return f"{statistics.median(c[k]):.2f}" if c[k] else "-"
        paths = ",".join(sorted(set(c["paths"]))) or "-"
        print(f"| {name} | {n} | {_fmt(c['first_msg_s'])} | {_fmt(c['generation_s'])} | "
              f"{med('detect_s')} | {med('tor_s')} | {med('setup_s')} | {med('replay_s')} | "
              f"{c['via_tor']} | {paths} |" + (f" not within the limit: {c['failed']}"
                                                if c["failed"] else ""))


def _report(name: str, r: dict[str, Any]) -> None:
    n = len(r["total_s"]) + r["failed"]
    if r["total_s"]:
        p50, p90, mx = _quantiles(r["total_s"])
        print(f"{name}: n={n} p50 {p50:.2f} s p90 {p90:.2f} s max {mx:.2f} s"
              f" (not recovered within the limit: {r['failed']})")
        phases = ", ".join(
            f"{k} {statistics.median(r[k + '_s']):.2f} s"
            for k in ("detect", "nudge", "redial") if r[k + "_s"])
        print(f"  phases (median): {phases}; dials per move {statistics.median(r['dials']):.1f};"
              f" re-published {r['republished']} times; tor network ready in "
              f"{r['tor_ready_s']} s")
    else:
        print(f"{name}: n={n}, none recovered within the limit")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--baseline", action="store_true", help="also run without the nudge")
    ap.add_argument("--baseline-trials", type=int, default=2)
    ap.add_argument("--limit", type=float, default=120.0, help="seconds allowed per move")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds between moves")
    ap.add_argument("--dir", help="keep the tor directories (logs) here")
    ap.add_argument("--hedge-ms", type=int, default=ReconnectConfig().hedge_after_ms,
                    help="DIAL_HEDGE of the dialing peer's policy")
    ap.add_argument("--parallel", type=int, default=ReconnectConfig().max_parallel_dials,
                    help="DIAL_PARALLEL of the dialing peer's policy (1: no hedging)")
    ap.add_argument("--no-session", action="store_true", help="only the onion re-dial figures")
    ap.add_argument("--session-only", action="store_true", help="only the session figures")
    ap.add_argument("--session-settle", type=float, default=3.0,
                    help="seconds between the session's moves")
    ap.add_argument("--overlap", type=float, default=3.0,
                    help="make-before-break: seconds both interfaces are up")
    ap.add_argument("--away", type=float, default=10.0,
                    help="(d): seconds the dial-only peer and its tor are gone")
    ap.add_argument("--no-comeback", action="store_true", help="leave (d) out")
    ap.add_argument("--aiortc-trials", type=int, default=3,
                    help="hard moves of the aiortc-alone baseline (30-120 s each; 0: none)")
    ap.add_argument("--system-tor", action="store_true",
                    help="the session's peers treat their tors as not launched by P⁴ (no "
                         "nudge from the link; the peer nudges after a move it saw)")
    ap.add_argument("--strict-nat", action="store_true",
                    help="b's router maps TCP only from a SYN (Lab.set_tcp_strict): a "
                         "rebinding leaves b's tor connections dead without a reset")
    ap.add_argument("--cases", default=",".join(CASES),
                    help="the session cases to run, comma-separated (default: all)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    quick = args.quick or os.environ.get("P4_BENCH_QUICK") == "1"
    if quick:
        args.trials, args.baseline, args.limit, args.settle = 1, False, 60.0, 0.0
        args.aiortc_trials = min(args.aiortc_trials, 1)

    from tools.netlab import Lab, LabError, check_prerequisites, sweep

    reason = check_prerequisites()
    if reason is not None:
        print(f"bench_reconnect: the network lab is unavailable: {reason}")
        return 1 if os.environ.get("CI") == "true" else 0
    sweep()
    lab = Lab()
    try:
        lab.up()
    except LabError as exc:
        print(f"bench_reconnect: the network lab did not build: {exc}")
        return 1
    from tools.netlab.tor import LabTorNet

    results: dict[str, Any] = {}
    config = ReconnectConfig(hedge_after_ms=args.hedge_ms, max_parallel_dials=args.parallel)
    # one Tor-in-lab network for every part (5 relays: with 4 an onion service sometimes found
    # "No available nodes"); the baseline runs last, as it leaves a's tor un-nudged
    net = LabTorNet(lab=lab, authorities=1, relays=5, base_dir=args.dir)
    try:
        net.start(180)
        for i in range(2):
            net.open_socks(i, SOCKS_PORT)
        if args.strict_nat:
            lab.set_tcp_strict("b")
        # the session first: its peers start their links on a network no move has disturbed
        cases = [c for c in args.cases.split(",") if c]
        if not args.no_session and cases:
            results["session"] = _session(lab, net, args.trials,
                                          limit=40.0 if quick else args.limit,
                                          settle=1.0 if quick else args.session_settle,
                                          keep=args.dir, overlap=args.overlap,
                                          cases=cases, launched=not args.system_tor)
        if not args.no_session and not args.no_comeback:
            results["comeback"] = _comeback(lab, net, args.trials,
                                            limit=40.0 if quick else args.limit,
                                            away=args.away, keep=args.dir)
        if not args.no_session and args.aiortc_trials > 0:
            results["aiortc"] = _aiortc_alone(lab, args.aiortc_trials,
                                              limit=120.0 if quick else args.limit,
                                              keep=args.dir)
        if not args.session_only:
            results["policy"] = asyncio.run(_trials(lab, net, args.trials, nudge=True,
                                                    limit=args.limit, settle=args.settle,
                                                    config=config))
        if args.baseline:
            results["baseline"] = asyncio.run(
                _trials(lab, net, args.baseline_trials, nudge=False, limit=args.limit,
                        settle=args.settle, config=config))
    finally:
        net.stop()
        lab.down()
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        for name, r in results.items():
            if name == "aiortc":
                print(f"aiortc alone: first message per move (s) "
                      f"{[round(x, 2) for x in r['first_msg_s']]}")
            elif name == "comeback":
                print(f"session (d): first message per return (s) "
                      f"{[round(x, 2) for x in r['first_msg_s']]}")
            elif "total_s" in r:
                print(f"{name}: per move (s) {[round(x, 2) for x in r['total_s']]}, "
                      f"dials {r['dials']}")
            else:
                for case in CASES:
                    print(f"session {case}: first message per move (s) "
                          f"{[round(x, 2) for x in r[case]['first_msg_s']]}")
    print(f"dialer policy: DIAL_HEDGE {args.hedge_ms} ms, DIAL_PARALLEL {args.parallel}")
    if "policy" in results:
        _report("onion re-dial after a hard move (policy)", results["policy"])
    if "baseline" in results:
        _report(f"baseline, no nudge ({args.baseline_trials} moves)", results["baseline"])
    else:
        print("baseline, no nudge: not run (--baseline; over 100 s a move in this lab)")
    if "session" in results:
        _report_session(results["session"])
    if "comeback" in results:
        _report_comeback(results["comeback"], args.away)
    if "aiortc" in results:
        r = results["aiortc"]
        n = len(r["first_msg_s"]) + r["failed"]
        print(f"baseline, aiortc alone ((a)'s hard move; no P⁴, signalling carried instantly, "
              f"n={n}): first message p50 / p90 / max {_fmt(r['first_msg_s'])} s; aiortc "
              f"reported the failure after {_fmt(r['detect_s'])} s, new connection "
              f"{_fmt(r['setup_s'])} s" + (f"; not within the limit: {r['failed']}"
                                           if r["failed"] else ""))
        if r["first_msg_s"] and "session" in results and results["session"]["hard"][
                "first_msg_s"]:
            ratio = (statistics.median(r["first_msg_s"])
                     / statistics.median(results["session"]["hard"]["first_msg_s"]))
            print(f"  (a) with P⁴ is {ratio:.0f}× faster than aiortc alone (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
