"""``p4 api …``: the local API's command line (the ``p4`` CLI registers it with one call).

    p4 api token add NAME (--peer ID|NAME … | --all-peers) --prefix PREFIX
                     [--quota-messages N] [--quota-bytes N] [--token-file PATH] [--json]
    p4 api token list [--json]
    p4 api token remove NAME
    p4 api endpoint [--json]          where the running p4 up listens

``token add`` prints the token once (or writes it, mode 0600, to ``--token-file``); the profile
keeps only its hash. Errors are ``p4: error: … [CODE]`` with exit status 1, as everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from p4ref.io.store import Profile, atomic_write

from .endpoint import read_endpoint
from .tokens import (
    ALL_PEERS,
    DEFAULT_QUOTA_BYTES,
    DEFAULT_QUOTA_MESSAGES,
    RESERVED_APP,
    TokenError,
    TokenStore,
)

__all__ = ["add_api_parser", "cmd_endpoint", "cmd_token_add", "cmd_token_list",
           "cmd_token_remove"]


def _home(args: argparse.Namespace) -> Path:
    from p4ref.cli._common import home  # the CLI's rule: --home, $P4_HOME, platform default

    return home(args)


def _fail(e: TokenError) -> int:
    print(f"p4: error: {e.message} [{e.code}]", file=sys.stderr)
    return 1


def cmd_token_add(args: argparse.Namespace) -> int:
    home = _home(args)
    if args.name.startswith(RESERVED_APP):
        return _fail(TokenError("APP_NAME_INVALID",
                                f"app names starting with {RESERVED_APP!r} are p4's own"))
    if args.all_peers:
        peers = [ALL_PEERS]
    else:
        from p4ref.cli._peers import resolve_peer

        profile = Profile.open(home)
        peers = [resolve_peer(profile, p).device_id for p in args.peer]
    try:
        token = TokenStore(home).add(args.name, peers, args.prefix,
                                     quota_messages=args.quota_messages,
                                     quota_bytes=args.quota_bytes)
    except TokenError as e:
        return _fail(e)
    if args.token_file:
        atomic_write(Path(args.token_file), (token + "\n").encode())
        shown: str | None = None
        where = f"written to {args.token_file} (mode 0600)"
    else:
        shown, where = token, "shown once: keep it in the app's secret store"
    if args.json:
        print(json.dumps({"app": args.name, "token": shown, "peers": peers,
                          "prefix": args.prefix}))
    else:
        if shown:
            print(shown)
        print(f"p4: app {args.name!r} may use channels {args.prefix!r}* with"
              f" {'every peer' if args.all_peers else ', '.join(args.peer)}; token {where}",
              file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    apps = TokenStore(_home(args)).apps()
    if args.json:
        print(json.dumps({"apps": [a.to_json() for a in apps]}))
        return 0
    if not apps:
        print("No app tokens. Add one with `p4 api token add NAME --peer PEER --prefix P/`.")
        return 0
    for a in apps:
        peers = "every peer" if ALL_PEERS in a.peers else ", ".join(a.peers)
        print(f"{a.name}: prefix {a.prefix!r}, peers {peers}, quota {a.quota_messages}"
              f" messages / {a.quota_bytes} bytes")
    return 0


def cmd_token_remove(args: argparse.Namespace) -> int:
    try:
        scope = TokenStore(_home(args)).remove(args.name)
    except TokenError as e:
        return _fail(e)
    print(f"Removed app {scope.name!r}; its token no longer works")
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    ep = read_endpoint(_home(args))
    if ep is None:
        print("p4: error: the local API is not running (start `p4 up`) [BACKEND_UNAVAILABLE]",
              file=sys.stderr)
        return 1
    d: dict[str, Any] = ep.to_json()
    print(json.dumps(d) if args.json else (ep.path or f"http://{ep.host}:{ep.port}"))
    return 0


def add_api_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """Register ``p4 api`` on the CLI's subparsers (``parents``: the ``--home`` parent)."""
    p_api = sub.add_parser("api", parents=parents, help="the local API apps use (tokens)",
                           description="the local API apps use: tokens and endpoint")
    api_sub = p_api.add_subparsers(dest="api_command", metavar="ACTION", required=True)
    p_tok = api_sub.add_parser("token", parents=parents, help="manage app tokens")
    tok_sub = p_tok.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    p_add = tok_sub.add_parser("add", parents=parents, help="register an app, print its token")
    p_add.add_argument("name", metavar="NAME", help="app name: 1-32 of a-z 0-9 . _ -")
    who = p_add.add_mutually_exclusive_group(required=True)
    who.add_argument("--peer", action="append", metavar="ID|NAME",
                     help="a peer the app may use (repeat for several)")
    who.add_argument("--all-peers", action="store_true", help="every paired peer")
    p_add.add_argument("--prefix", required=True,
                       help="the channel-name prefix the app owns, e.g. notes/")
    p_add.add_argument("--quota-messages", type=int, default=DEFAULT_QUOTA_MESSAGES,
                       metavar="N", help="unconfirmed messages held for the app")
    p_add.add_argument("--quota-bytes", type=int, default=DEFAULT_QUOTA_BYTES, metavar="N",
                       help="unconfirmed bytes held for the app")
    p_add.add_argument("--token-file", metavar="PATH",
                       help="write the token to PATH (mode 0600) instead of printing it")
    p_add.add_argument("--json", action="store_true")
    p_add.set_defaults(func=cmd_token_add)

    p_list = tok_sub.add_parser("list", parents=parents, help="list registered apps")
    p_list.add_argument("--json", action="store_true")
    p_list.set_defaults(func=cmd_token_list)

    p_rm = tok_sub.add_parser("remove", parents=parents, help="revoke an app's token")
    p_rm.add_argument("name", metavar="NAME")
    p_rm.set_defaults(func=cmd_token_remove)

    p_ep = api_sub.add_parser("endpoint", parents=parents,
                              help="where the running p4 up's local API listens")
    p_ep.add_argument("--json", action="store_true")
    p_ep.set_defaults(func=cmd_endpoint)
