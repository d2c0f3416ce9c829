"""The ``p4`` command line (p4-02 §3 for identity and profile, p4-02 §4–§5 for pairing).

    p4 [--home DIR] init                 create a profile with a fresh identity (never overwrites)
    p4 [--home DIR] id [--qr] [--light]  print this device's ID (optionally as a terminal QR code)
    p4 [--home DIR] peers                list paired peers
    p4 [--home DIR] peers rename OLD NEW   OLD: a device ID or a name (IDs are tried first)
    p4 [--home DIR] peers forget ID|NAME
    p4 [--home DIR] pair invite [--tor MODE] [--show-uri]   QR + short code, pairs over Tor
    p4 [--home DIR] pair accept [CODE|URI] [--tor MODE]      else $P4_CODE, else a prompt
    p4 demo [ARGS...]                    runs p4ref.demo:main when that module is present
    p4 [--home DIR] api token add|list|remove, api endpoint   the local API's app tokens
    p4 [--home DIR] up [--tor MODE] [--verbose]   the running peer (:mod:`.up`, p4ref.peer)
    p4 [--home DIR] status | send FILE|- PEER | recv | chat PEER   through it (:mod:`.verbs`)
    p4 [--home DIR] clip [--watch] PEER   clipboard text, through it too (:mod:`.clip`)

Every command is one ``cmd_*(args) -> int`` function so a later layer can be wired in by
replacing one function. Errors print ``p4: error: <message> [CODE]`` on stderr and exit 1;
usage errors exit 2 (argparse). No traceback is printed unless ``P4_DEBUG`` is set.

The package: :mod:`.pair` (``p4 pair``), :mod:`.qr` (terminal QR codes), :mod:`._peers` (device
IDs before names, "did you mean"), :mod:`._common` (profile path, argument types, progress).
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence

from p4ref import __version__
from p4ref.errors import P4Error
from p4ref.io.store import Profile

from ._common import home as _home
from ._peers import check_new_name, resolve_peer
from .pair import add_pair_arguments, cmd_pair_accept, cmd_pair_invite
from .qr import render_qr

__all__ = ["build_parser", "main", "render_qr"]

Command = Callable[[argparse.Namespace], int]

# --------------------------------------------------------------------------------------------
# Commands


def cmd_init(args: argparse.Namespace) -> int:
    profile = Profile.init(_home(args), os.urandom)
    print(f"Created profile {profile.path}")
    print(f"Device ID: {profile.identity.device_id}")
    return 0


def cmd_id(args: argparse.Namespace) -> int:
    device_id = Profile.open(_home(args)).identity.device_id
    if args.qr:
        sys.stdout.write(render_qr(device_id, light_background=args.light, stream=sys.stdout))
    print(device_id)
    return 0


def cmd_peers_list(args: argparse.Namespace) -> int:
    peers = Profile.open(_home(args)).peers()
    if getattr(args, "json", False):
        print(json.dumps([{"name": p.name, "device_id": p.device_id, "paired_at": p.paired_at}
                          for p in peers]))
        return 0
    if not peers:
        print("No paired peers. Pair with `p4 pair invite` / `p4 pair accept CODE`.")
        return 0
    width = max(len("NAME"), *(len(p.name) for p in peers))
    print(f"{'NAME':<{width}}  {'DEVICE ID':<63}  PAIRED (UTC)")
    for p in peers:
        when = datetime.datetime.fromtimestamp(p.paired_at, datetime.UTC)
        print(f"{p.name:<{width}}  {p.device_id}  {when:%Y-%m-%d %H:%M}")
    return 0


def cmd_peers_rename(args: argparse.Namespace) -> int:
    profile = Profile.open(_home(args))
    new = check_new_name(args.new)
    old = resolve_peer(profile, args.old)
    rec = profile.rename_peer(old.name, new)
    print(f"Renamed {old.name!r} to {rec.name!r}")
    return 0


def cmd_peers_forget(args: argparse.Namespace) -> int:
    profile = Profile.open(_home(args))
    rec = profile.forget_peer(resolve_peer(profile, args.name).name)
    print(f"Forgot {rec.name!r} ({rec.device_id}); pair again to talk to it")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Hand over to ``p4ref.demo:main(argv) -> int`` if that module exists; every argument after
    ``demo`` is passed through untouched, a global ``--home`` as ``$P4_HOME``."""
    try:
        demo = importlib.import_module("p4ref.demo")
    except ModuleNotFoundError as e:
        if e.name not in ("p4ref.demo", "p4ref"):  # the demo's own dependency is missing
            print(f"p4: error: the demo cannot start: {e} [INTERNAL_ERROR]", file=sys.stderr)
            return 1
        print("p4: the demo is not part of this build (no p4ref.demo module)", file=sys.stderr)
        return 2
    demo_main: Callable[[list[str]], int | None] = demo.main
    if getattr(args, "home", None):  # the demo's own arguments stay its own: pass --home via env
        os.environ["P4_HOME"] = str(_home(args))
    result = demo_main(list(args.demo_args))
    return int(result or 0)


# --------------------------------------------------------------------------------------------
# Parser and entry point


def build_parser() -> argparse.ArgumentParser:
    home = argparse.ArgumentParser(add_help=False)
    home.add_argument(
        "--home",
        metavar="DIR",
        default=argparse.SUPPRESS,
        help=("profile directory (default: $P4_HOME, else ~/.p4 on Linux, the per-user "
              "application-data folder on macOS and Windows)"),
    )
    parser = argparse.ArgumentParser(
        prog="p4", description="P⁴ — the Persistent Point-to-Point Protocol, reference peer."
    )
    parser.add_argument("--version", action="version", version=f"p4 {__version__}")
    parser.add_argument("--home", metavar="DIR", default=None, help=home._actions[0].help)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, func: Command, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[home], help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    add("init", cmd_init, "create a profile with a new device identity")
    p_id = add("id", cmd_id, "print this device's ID")
    p_id.add_argument("--qr", action="store_true", help="also draw it as a QR code")
    p_id.add_argument(
        "--light", action="store_true", help="QR for a terminal with a light background"
    )

    p_peers = add("peers", cmd_peers_list, "list paired peers (or rename/forget one)")
    p_peers.add_argument("--json", action="store_true", help="machine-readable output")
    peers_sub = p_peers.add_subparsers(dest="peers_command", metavar="ACTION")
    p_ren = peers_sub.add_parser("rename", parents=[home], help="rename a paired peer")
    p_ren.add_argument("old", metavar="OLD", help="device ID or current name")
    p_ren.add_argument("new", metavar="NEW", help="new name")
    p_ren.set_defaults(func=cmd_peers_rename)
    p_fgt = peers_sub.add_parser("forget", parents=[home], help="delete a paired peer")
    p_fgt.add_argument("name", metavar="ID|NAME", help="device ID or name")
    p_fgt.add_argument("--json", action="store_true", help="machine-readable output")
    from .verbs import cmd_peers_forget_live  # stops a running p4 up's link first

    p_fgt.set_defaults(func=cmd_peers_forget_live)
    p_list = peers_sub.add_parser("list", parents=[home], help="list paired peers")
    p_list.add_argument("--json", action="store_true", help="machine-readable output")
    p_list.set_defaults(func=cmd_peers_list)

    p_pair = add("pair", cmd_pair_invite, "pair with another device")
    pair_sub = p_pair.add_subparsers(dest="pair_command", metavar="ACTION", required=True)
    p_inv = pair_sub.add_parser("invite", parents=[home], help="show a code / QR to pair with")
    add_pair_arguments(p_inv, invite=True)
    p_inv.set_defaults(func=cmd_pair_invite)
    p_acc = pair_sub.add_parser("accept", parents=[home], help="pair using a code or p4: URI")
    p_acc.add_argument("code", metavar="CODE|URI", nargs="?", default=None,
                       help="e.g. 7-adroitness-aardvark or a p4:pair link; if left out, taken"
                            " from $P4_CODE or asked for (keeps it out of shell history)")
    add_pair_arguments(p_acc, invite=False)
    p_acc.set_defaults(func=cmd_pair_accept)

    p_demo = add("demo", cmd_demo, "run the local demo (p4ref.demo); later arguments are its own")
    p_demo.set_defaults(demo_args=[])

    from .clip import add_clip_parser  # clip: clipboard text, through the local API
    from .up import add_up_parser  # p4 up: the running peer (p4ref.peer)
    from .verbs import add_verb_parsers  # status, send, recv, chat: through the local API

    add_up_parser(add, home)
    add_verb_parsers(add)
    add_clip_parser(add)

    from p4ref.api.cli import add_api_parser  # p4 api token add|list|remove, p4 api endpoint

    add_api_parser(sub, [home])
    return parser


def _split_demo(argv: list[str]) -> tuple[list[str], list[str]]:
    """``[globals…, "demo", rest…]`` -> (``[globals…, "demo"]``, ``rest``): everything after
    ``demo`` belongs to the demo, even ``--options`` argparse would otherwise claim."""
    i = 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--home":
            i += 2
            continue
        if tok.startswith("-"):
            i += 1
            continue
        if tok == "demo":
            return argv[: i + 1], argv[i + 1 :]
        break
    return argv, []


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``p4`` console script; returns the exit status."""
    parser = build_parser()
    args_list = list(sys.argv[1:] if argv is None else argv)
    args_list, demo_args = _split_demo(args_list)
    try:
        args = parser.parse_args(args_list)
        if demo_args:
            args.demo_args = demo_args
    except SystemExit as e:  # --help, --version, usage errors
        return e.code if isinstance(e.code, int) else 2
    func: Command = args.func
    try:
        return func(args)
    except P4Error as e:
        print(f"p4: error: {e.message} [{e.code.name}]", file=sys.stderr)
        return 1
    except OSError as e:
        where = f" ({e.filename})" if e.filename else ""
        print(f"p4: error: {e.strerror or e}{where} [OS_ERROR]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("p4: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, unless P4_DEBUG asks for the traceback
        if os.environ.get("P4_DEBUG"):
            raise
        print(
            f"p4: error: internal error: {type(e).__name__}: {e} (set P4_DEBUG=1 for a"
            " traceback) [INTERNAL_ERROR]",
            file=sys.stderr,
        )
        return 1
