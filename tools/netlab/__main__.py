"""Command line of the lab: ``python -m tools.netlab up|down|status|sweep``.

- ``up [--nat a=symmetric …] [--no-turn]``: build a lab, print its description (JSON), stay up
  until Ctrl-C or SIGTERM, then remove it. Its namespaces are named after this process, so a
  ``kill -9`` leaves a lab that ``sweep`` recognises as stale.
- ``status``: every lab namespace on this host, grouped by lab, with owner pid and liveness.
- ``down PREFIX``: stop the lab's owner (SIGTERM, if it is a netlab process) or remove it.
- ``sweep``: remove every lab whose owner is dead.
- ``tor-move [--trials N] [--no-nudge] [--limit S]``: build a lab with Tor inside, publish an
  onion from device ``a``, move ``a`` N times and print how long the onion took to answer again
  from device ``b`` (tools/netlab/tor.py ``measure_move_recovery``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from typing import cast

from .lab import NAT_TYPES, Lab, LabError, NatType, list_labs, sweep


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _up(args: argparse.Namespace) -> int:
    homes: dict[str, NatType] = {"a": "port-restricted", "b": "port-restricted"}
    for spec in args.nat or []:
        home, _, nat = spec.partition("=")
        if nat not in NAT_TYPES:
            print(
                f"netlab: unknown NAT type {nat!r}; one of {', '.join(NAT_TYPES)}", file=sys.stderr
            )
            return 2
        homes[home] = cast(NatType, nat)

    def _on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _on_term)
    lab = Lab(homes, turn=not args.no_turn)
    try:
        lab.up()
        print(json.dumps({**lab.describe(), "timings_s": lab.timings}, indent=2), flush=True)
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    except LabError as exc:
        print(f"netlab: {exc}", file=sys.stderr)
        return 2
    finally:
        lab.down()


def _down(prefix: str) -> int:
    lab = list_labs().get(prefix)
    if lab is None:
        print(json.dumps({"removed": []}))
        return 0
    pid = int(lab["owner"])
    if lab["alive"] and "netlab" in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end and prefix in list_labs():
            time.sleep(0.1)
    print(json.dumps({"removed": sweep(prefix) or lab["namespaces"]}))
    return 0


def _tor_move(args: argparse.Namespace) -> int:
    import asyncio
    import warnings

    from . import tor

    warnings.filterwarnings("ignore", r"setDaemon\(\) is deprecated", DeprecationWarning)
    with Lab(turn=False) as lab:
        result = asyncio.run(
            tor.measure_move_recovery(
                lab,
                trials=args.trials,
                nudge=not args.no_nudge,
                limit=args.limit,
                settle=args.settle,
                base_dir=os.path.abspath(args.dir) if args.dir else None,
                extra_torrc=args.torrc,
                relays=args.relays,
                hsfetch=not args.no_hsfetch,
                republish=args.republish,
            )
        )
    print(json.dumps(result), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.netlab", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a lab and stay up until Ctrl-C")
    up.add_argument("--nat", action="append", help="HOME=TYPE, e.g. a=symmetric (repeatable)")
    up.add_argument("--no-turn", action="store_true", help="do not start coturn")
    sub.add_parser("status", help="list the labs on this host")
    down = sub.add_parser("down", help="remove one lab")
    down.add_argument("prefix")
    sub.add_parser("sweep", help="remove labs whose owner process is dead")
    tm = sub.add_parser("tor-move", help="measure onion recovery after moves, Tor in the lab")
    tm.add_argument("--trials", type=int, default=3)
    tm.add_argument("--no-nudge", action="store_true", help="do not set DisableNetwork 1/0")
    tm.add_argument("--limit", type=float, default=120.0, help="seconds to wait per move")
    tm.add_argument("--no-hsfetch", action="store_true", help="dialler does not refetch")
    tm.add_argument("--republish", action="store_true", help="re-add the onion after a move")
    tm.add_argument("--relays", type=int, default=4, help="relays besides the one authority")
    tm.add_argument("--settle", type=float, default=10.0, help="seconds between moves")
    tm.add_argument("--dir", help="keep the tor directories (logs) here")
    tm.add_argument("--torrc", action="append", default=[], help="extra torrc line (repeatable)")
    args = ap.parse_args(argv)
    if args.cmd == "tor-move":
        return _tor_move(args)
    if args.cmd == "up":
        return _up(args)
    if args.cmd == "status":
        print(json.dumps(list_labs(), indent=2))
        return 0
    if args.cmd == "down":
        return _down(args.prefix)
    print(json.dumps({"removed": sweep()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
