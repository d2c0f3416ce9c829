"""``p4 up``: run the peer of one profile in the foreground (:mod:`p4ref.peer`).

    p4 [--home DIR] up [--tor MODE] [--verbose] [--inbox DIR] [--max-file-size BYTES]
                       [--host-address ADDR ...] [--stun URL ...]
                       [--turn URL --turn-user USER [--turn-pass PASSWORD]]

STUN/TURN: none by default (no third party learns this device's address); docs/network.md.
``$P4_UP_PROFILE=FILE`` runs the daemon under cProfile and writes the profile to FILE when it stops
(diagnostics; bench/bench_send.py sets it with ``P4_BENCH_PROFILE``).

Logs go to stderr, one readable line per event (``--verbose`` adds the links' details).
Ctrl-C or SIGTERM stops it cleanly. A second ``p4 up`` on the same profile exits at once with
PROFILE_LOCKED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ._common import home as _home
from ._common import tor_spec

__all__ = ["add_up_parser", "cmd_up"]


def cmd_up(args: argparse.Namespace) -> int:
    from ..peer import Daemon, DaemonOptions
    from ..peer.daemon import daemon_lock
    from .pair import tor_config

    home = _home(args).resolve()  # endpoint.json must name the socket for any cwd
    level = logging.DEBUG if args.verbose else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("p4").setLevel(level)
    noisy = ("stem", "aiortc", "aioice", "aiohttp")  # stem sets its own logger's level

    def quiet(record: logging.LogRecord) -> bool:
        if record.name.startswith("stem"):  # stem's NOTICE is 30, its WARN 40
            return record.levelno > logging.WARNING
        return record.levelno >= logging.WARNING or not record.name.startswith(noisy)

    handler.addFilter(quiet)
    if args.verbose:
        logging.getLogger("p4ref").setLevel(logging.INFO)
    with daemon_lock(home):  # fail fast, before Tor, when another p4 up runs
        pass
    tor = tor_config(args.tor)
    hosts = tuple(args.host_address) if args.host_address else (
        ("127.0.0.1",) if args.tor.startswith("testnet:") else None)
    options = DaemonOptions(tor=tor, host_addresses=hosts, ice_servers=ice_servers(args),
                            inbox=Path(args.inbox).expanduser() if args.inbox else None,
                            max_file_size=args.max_file_size)
    daemon = Daemon(home, options)
    prof_path = os.environ.get("P4_UP_PROFILE")  # diagnostics (bench/bench_send.py): cProfile
    prof: Any = None
    if prof_path:
        import cProfile

        prof = cProfile.Profile()
        prof.enable()
    try:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(daemon.run())
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(prof_path)
    return 0


def ice_servers(args: argparse.Namespace) -> tuple[Any, ...]:
    """``--stun`` / ``--turn`` as :class:`~p4ref.io.webrtc.IceServer` values (docs/network.md).
    A URL without its scheme gets ``stun:`` / ``turn:``; the TURN password comes from
    ``--turn-pass`` or ``$P4_TURN_PASSWORD`` (so it can stay out of the process list)."""
    from ..errors import ErrorCode, P4Error
    from ..io.webrtc import IceServer

    servers: list[Any] = []
    for url in args.stun:
        servers.append(IceServer((url if url.startswith("stun:") else "stun:" + url,)))
    turns = [u if u.startswith(("turn:", "turns:")) else "turn:" + u for u in args.turn]
    password = args.turn_pass if args.turn_pass is not None else os.environ.get(
        "P4_TURN_PASSWORD")
    if turns and (not args.turn_user or password is None):
        raise P4Error(ErrorCode.MESSAGE_INVALID, "--turn needs --turn-user and a password "
                       "(--turn-pass or $P4_TURN_PASSWORD)")
    if turns:
        servers.append(IceServer(tuple(turns), args.turn_user, password))
    return tuple(servers)


def add_up_parser(add: object, home: argparse.ArgumentParser) -> None:
    """Register ``p4 up`` with the ``add(name, func, help)`` helper of :func:`build_parser`."""
    p: argparse.ArgumentParser = add("up", cmd_up,  # type: ignore[operator]
                                     "run this device's peer (keep it running)")
    p.add_argument("--tor", default="system", metavar="MODE", type=tor_spec,
                   help="system[:PORT] (default), launch, or testnet:DIR[:N]")
    p.add_argument("--verbose", "-v", action="store_true", help="more detail in the log")
    p.add_argument("--inbox", metavar="DIR", default=None,
                   help="where received files go (default: <profile>/inbox)")
    p.add_argument("--max-file-size", metavar="BYTES", type=int, default=(1 << 63) - 1,
                   help="refuse incoming files larger than this")
    p.add_argument("--host-address", metavar="ADDR", action="append", default=[],
                   help="local address for direct connections (repeatable; default: all,"
                        " 127.0.0.1 with --tor testnet:…)")
    p.add_argument("--stun", metavar="URL", action="append", default=[],
                   help="STUN server, e.g. stun:stun.example.org:3478 (repeatable; default:"
                        " none, see docs/network.md)")
    p.add_argument("--turn", metavar="URL", action="append", default=[],
                   help="TURN relay, e.g. turn:turn.example.org:3478 (repeatable, one account)")
    p.add_argument("--turn-user", metavar="USER", default=None, help="TURN user name")
    p.add_argument("--turn-pass", metavar="PASSWORD", default=None,
                   help="TURN password (default: $P4_TURN_PASSWORD)")
