"""``p4 pair invite`` and ``p4 pair accept``: pairing over Tor from the command line (p4-02).

``invite`` offers both entry paths at once, as a person expects: it prints a short code to read
out and draws a ``p4:pair`` URI as a QR code to scan, publishes the pairing onion of each, and
pairs with whichever is used first; the other is withdrawn.  ``accept`` takes either form.

``--tor`` says where tor is: ``system`` (a running tor's control port, 9051; ``system:PORT``),
``launch`` (start a private tor process with stem), or ``testnet:DIR[:N]`` (client ``N`` of the
project's private network started by ``python tools/tornet.py up --dir DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import ErrorCode, P4Error
from .identity import device_id
from .io.pair_tor import PairingResult, PendingInvite, accept_invitation, create_invitation
from .io.store import Profile
from .io.tor import TorConfig, TorDriver
from .pairing import parse_code, parse_uri

__all__ = ["add_pair_arguments", "cmd_pair_accept", "cmd_pair_invite", "tor_config"]


@dataclass(frozen=True)
class _Client:
    control_port: int
    socks_port: int
    cookie_path: str
    data_dir: str


def tor_config(spec: str) -> TorConfig:
    """Parse ``--tor``: ``system[:PORT]``, ``launch`` or ``testnet:DIR[:N]``."""
    kind, _, rest = spec.partition(":")
    if kind == "system":
        return TorConfig(mode="system", control_port=int(rest) if rest else None)
    if kind == "launch" and not rest:
        return TorConfig(mode="launch")
    if kind == "testnet" and rest:
        directory, _, index = rest.partition(":")
        desc_path = Path(directory) / "tornet.json"
        try:
            desc = json.loads(desc_path.read_text("utf-8"))
            c = desc["clients"][int(index or 0)]
            client = _Client(c["control_port"], c["socks_port"], c["cookie_path"], c["data_dir"])
        except (OSError, ValueError, KeyError, IndexError) as exc:
            raise P4Error(ErrorCode.TOR_UNREACHABLE,
                          f"no private Tor network described in {desc_path}: {exc}") from None
        return TorConfig.testnet(client)
    raise P4Error(ErrorCode.TOR_UNREACHABLE,
                  f"--tor {spec!r}: expected system[:PORT], launch or testnet:DIR[:N]")


def add_pair_arguments(p: argparse.ArgumentParser, *, invite: bool) -> None:
    p.add_argument("--tor", default="system", metavar="MODE",
                   help="system[:PORT] (default), launch, or testnet:DIR[:N]")
    p.add_argument("--name", help="name to store the new peer under")
    p.add_argument("--timeout", type=float, default=600.0 if invite else 120.0,
                   help="seconds to wait (default: %(default)s)")
    if invite:
        p.add_argument("--light", action="store_true", help="QR for a light terminal")


def _store(profile: Profile, result: PairingResult, name: str | None) -> str:
    peer_name = name or f"peer-{device_id(result.peer_identity)[:7].lower()}"
    profile.add_peer(peer_name, result.peer_identity, result.pair_root_key, result.sas)
    print(f"Paired with {peer_name} ({device_id(result.peer_identity)})")
    print(f"Compare this code with the other device: {result.sas}")
    return peer_name


async def _invite(profile: Profile, args: argparse.Namespace) -> PairingResult:
    from .cli import render_qr

    tor = TorDriver(tor_config(args.tor))
    await tor.start()
    invites: list[PendingInvite] = []
    try:
        invites.append(await create_invitation(tor, profile.identity.seed,
                                               expires_s=args.timeout))
        invites.append(await create_invitation(tor, profile.identity.seed, uri=True,
                                               expires_s=args.timeout))
        code, uri = invites[0].text, invites[1].text
        expiry = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
        print(f"On the other device run:  p4 pair accept {code}", flush=True)
        print(f"or scan this p4: URI ({uri}):", flush=True)
        print(render_qr(uri, light_background=args.light, stream=sys.stdout), flush=True)
        print(f"The invitation expires at {expiry:%H:%M} and works once.", flush=True)
        tasks = [asyncio.ensure_future(i.wait(timeout=args.timeout)) for i in invites]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:  # the path nobody used is withdrawn
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError, P4Error):
                await t
        return next(iter(done)).result()
    finally:
        for i in invites:
            await i.close()
        await tor.close()


def cmd_pair_invite(args: argparse.Namespace) -> int:
    from .cli import _home

    profile = Profile.open(_home(args))
    result = asyncio.run(_invite(profile, args))
    _store(profile, result, args.name)
    return 0


async def _accept(profile: Profile, args: argparse.Namespace) -> PairingResult:
    tor = TorDriver(tor_config(args.tor))
    await tor.start()
    try:
        return await accept_invitation(tor, profile.identity.seed, args.code,
                                       timeout=args.timeout, rng=os.urandom)
    finally:
        await tor.close()


def cmd_pair_accept(args: argparse.Namespace) -> int:
    from .cli import _home

    text = args.code.strip()
    _ = parse_uri(text) if text.lower().startswith("p4:") else parse_code(text)  # typo: fail now
    profile = Profile.open(_home(args))
    _store(profile, asyncio.run(_accept(profile, args)), args.name)
    return 0
