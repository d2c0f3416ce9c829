"""Data-channel throughput through a whole P⁴ session (p4-04 + p4-05 channels): the Python
reference peer against the TS port in Node (node-datachannel) and in headless Chromium, and
against itself (aiortc × aiortc), in the same run (issue 14, deliverable 5).

Each pair: generation 1 opens (signed RV_OFFER/RV_ANSWER carried by this script), then one
channel each way carries ``--mib`` MiB in 64 KiB messages, both directions at once; the
figure per direction is bytes / (time of the last message's arrival report − time the send
command was given), measured here, so it includes the receiver's channel and session layers.

    .venv/bin/python bench/bench_ts_live.py [--quick] [--mib N] [--pairs node,chromium,aiortc]

Loopback only.  Needs what tests/test_ts_live.py needs (ports/ts/live/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

t: Any = importlib.import_module("test_ts_live")  # tests/ is not a package

MSG = 64 << 10


async def start_node(seed: bytes, peer_pub: bytes) -> Any:
    node = t.node_binary()
    assert node is not None, "node not found"
    cfg = json.dumps({"seed": seed.hex(), "peer_pub": peer_pub.hex()})
    proc = await asyncio.create_subprocess_exec(
        node, str(t.LIVE / "dist" / "node-peer.js"), cfg, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, cwd=str(t.LIVE))
    return t.Proc("node", proc)


async def start_chromium(seed: bytes, peer_pub: bytes) -> Any:
    node = t.node_binary()
    assert node is not None, "node not found"
    cfg = json.dumps({"seed": seed.hex(), "peer_pub": peer_pub.hex()})
    proc = await asyncio.create_subprocess_exec(
        node, str(t.LIVE / "dist" / "browser-peer.js"), cfg, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, cwd=str(t.LIVE))
    return t.Proc("chromium", proc)


async def start_aiortc(seed: bytes, peer_pub: bytes) -> Any:
    p = await t.start_py(seed, peer_pub)
    p.name = "aiortc"
    return p


async def run_pair(start: Any, mib: float) -> dict[str, Any]:
    count = max(1, int(mib * (1 << 20)) // MSG)
    res: dict[str, Any] = {}
    async with t.peers(start) as (py, other):
        procs = [py, other]
        await t.wait_for(lambda: any(e.get("ev") == "ready" for e in py.log)
                         and any(e.get("ev") == "ready" for e in other.log), 30, "ready", procs)
        t0 = time.monotonic()
        py.send(cmd="offer", generation=1)
        # the first generation that opened on both sides (a failed one is retried, p4-04 §5.2)
        await t.wait_for(lambda: bool(t.both_open(py, other, 0)), 45, "open", procs)
        g1 = t.both_open(py, other, 0)[0]
        res["setup_ms"] = round((max(py.opened[g1], other.opened[g1]) - t0) * 1000, 1)
        arrivals: dict[str, float] = {}

        def watch(p: Any, name: str) -> bool:
            if name in arrivals:
                return True
            if p.recv.get(name, {}).get("n", 0) >= count:
                arrivals[name] = time.monotonic()
                return True
            return False

        ts = time.monotonic()
        py.send(cmd="chsend", name="up", count=count, size=MSG)
        other.send(cmd="chsend", name="down", count=count, size=MSG)
        await t.wait_for(lambda: watch(other, "up") & watch(py, "down"), 300, "transfer", procs)
        total = count * MSG / (1 << 20)
        res["py_to_peer_MiBps"] = round(total / (arrivals["up"] - ts), 2)
        res["peer_to_py_MiBps"] = round(total / (arrivals["down"] - ts), 2)
        res["MiB_each_way"] = round(total, 2)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 MiB each way")
    ap.add_argument("--mib", type=float, default=16.0)
    ap.add_argument("--pairs", default="aiortc,node,chromium")
    a = ap.parse_args()
    mib = 2.0 if a.quick else a.mib
    starters = {"aiortc": start_aiortc, "node": start_node, "chromium": start_chromium}
    rows = []
    for name in a.pairs.split(","):
        r = asyncio.run(run_pair(starters[name], mib))
        rows.append((name, r))
        print(f"python x {name:8s} {json.dumps(r)}", flush=True)
    print("\n| pair | setup ms | Python → peer MiB/s | peer → Python MiB/s | MiB each way |")
    print("|---|---|---|---|---|")
    for name, r in rows:
        print(f"| Python × {name} | {r['setup_ms']} | {r['py_to_peer_MiBps']} | "
              f"{r['peer_to_py_MiBps']} | {r['MiB_each_way']} |")


if __name__ == "__main__":
    main()
