"""The onion stream as a live fallback data path (p4-04 §5.1, SES-9, SES-10, SES-53, SES-70,
SES-71, SES-72, SES-73; p4-03 RDV-68): two peers in two processes (p4ref/link/_testpeer.py),
the private Tor network, real aiortc on loopback, real SQLite files.

One run, three phases: (1) no generation can open (every ICE socket of both processes drops
everything): small messages on three channels each way still arrive over Tor, in order, once,
and ``path`` is ``tor``; (2) the direct path comes back: traffic moves to a data channel with
nothing lost or duplicated; (3) the active data channel is blackholed mid-stream: the session
falls back to Tor within the dead-path time (PROBE_BUSY + PONG_TIMEOUT = 9 s, with slack) and
keeps delivering while a new generation is set up, then moves to it.  Timings are printed, not
asserted (except the dead-path bound, a protocol requirement).
"""

from __future__ import annotations

import time
from typing import Any

from tests.test_link import (
    Peer,
    chan_delivered,
    check_chan_log,
    diagnose,
    status_of,
    wait_chan,
    wait_path,
)
from tests.test_link import pair as pair  # the two test peers (fixture)

#: Small messages on three channels (the onion stream carries small messages, p4-04 SES-10).
SIZE = 200


def _plan(count: int) -> dict[str, tuple[int, int | None]]:
    return {f"t{k}": (count, SIZE) for k in range(3)}


def _send(peers: tuple[Peer, ...], count: int) -> None:
    for p in peers:
        for name in _plan(count):
            p.send(cmd="chsend", name=name, count=count, size=SIZE)


def test_tor_fallbackwait_path(pair: Any) -> None:
    cfg_a, cfg_b, spawn = pair
    for cfg in (cfg_a, cfg_b):
        cfg.update(channels=True, block_direct=True, open_timeout=3.0, follower_delay=2.0)
    t0 = time.monotonic()
    a, b = spawn(cfg_a, "a"), spawn(cfg_b, "b")
    peers = (a, b)

    # (1) no direct path at all: the session runs on the onion stream
    t_tor = max(wait_path(p, "tor", 90) for p in peers)
    _send(peers, 40)
    wait_chan(cfg_b, _plan(40), 60, peers)
    wait_chan(cfg_a, _plan(40), 60, peers)
    t_first = time.monotonic()
    for p in peers:
        st = status_of(p)
        assert st["path"] == "tor" and st["stats"]["path"] == "tor", st
        assert st["opened"] == 0, st  # no generation ever opened
        assert not any(e["ev"] == "connection_open" and e["gen"] for e in p.lines), p.lines
    end = time.monotonic() + 30  # generations are tried (SES-10) and fail (CONNECT_TIMEOUT)
    while not any(e["ev"] == "generation_failed" for e in a.lines + b.lines):
        assert time.monotonic() < end, "no generation was tried"
        time.sleep(0.1)
    check_chan_log(cfg_b["log"], cfg_a["seed"], _plan(40))
    check_chan_log(cfg_a["log"], cfg_b["seed"], _plan(40))

    # (2) the direct path comes back (as after a network change): traffic moves to it
    marks = [len(p.lines) for p in peers]
    _send(peers, 400)
    for p in peers:
        p.send(cmd="allow_direct")
    a.send(cmd="network_changed")
    t_allow = time.monotonic()
    t_direct = max(wait_path(p, "datachannel", 60, m) for p, m in zip(peers, marks, strict=True))
    wait_chan(cfg_b, _plan(400), 60, peers)
    wait_chan(cfg_a, _plan(400), 60, peers)
    for p in peers:
        st = status_of(p)
        assert st["path"] == "datachannel" and st["stats"]["path"] == "direct", st
    check_chan_log(cfg_b["log"], cfg_a["seed"], _plan(400))
    check_chan_log(cfg_a["log"], cfg_b["seed"], _plan(400))

    # (3) the active data channel dies silently mid-stream: Tor carries the session (no new
    # generation can open until the direct path is allowed again), then a new generation does
    marks = [len(p.lines) for p in peers]
    _send(peers, 1500)
    time.sleep(0.3)
    a.send(cmd="blackhole")
    hole = a.wait(lambda e: e["ev"] == "blackholed", 10)
    assert hole["ok"], hole
    for p in peers:
        p.send(cmd="block_direct")
    t_back = [wait_path(p, "tor", 30, m) for p, m in zip(peers, marks, strict=True)]
    before = [chan_delivered(cfg["log"], "t0") for cfg in (cfg_a, cfg_b)]
    end = time.monotonic() + 30  # delivery goes on over Tor
    while any(chan_delivered(cfg["log"], "t0") < n + 50 and n + 50 <= 1500
              for cfg, n in zip((cfg_a, cfg_b), before, strict=True)):
        assert time.monotonic() < end, f"nothing delivered over Tor: {before}; {diagnose(peers)}"
        time.sleep(0.1)
    on_tor = [chan_delivered(cfg["log"], "t0") - n
              for cfg, n in zip((cfg_a, cfg_b), before, strict=True)]
    for p in peers:
        assert status_of(p)["path"] == "tor"
        p.send(cmd="allow_direct")
    t_allow3 = time.monotonic()
    t_again = [wait_path(p, "datachannel", 60, m) for p, m in zip(peers, marks, strict=True)]
    wait_chan(cfg_b, _plan(1500), 90, peers)
    wait_chan(cfg_a, _plan(1500), 90, peers)
    check_chan_log(cfg_b["log"], cfg_a["seed"], _plan(1500))
    check_chan_log(cfg_a["log"], cfg_b["seed"], _plan(1500))
    fallback = max(t_back) - hole["t"]
    assert fallback < 12.0, f"fell back to Tor {fallback:.1f} s after the path died"
    print(f"\nlink over Tor: on tor {t_tor - t0:.1f} s after start, 3×40 messages each way "
          f"over Tor by {t_first - t0:.1f} s; direct {t_direct - t_allow:.1f} s after it was "
          f"allowed; after the blackhole: on tor in {fallback:.1f} s, {on_tor} messages of "
          f"channel t0 delivered over Tor, direct again {max(t_again) - t_allow3:.1f} s after "
          f"it was allowed; total {time.monotonic() - t0:.1f} s")
