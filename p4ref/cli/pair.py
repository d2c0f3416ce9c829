"""``p4 pair invite`` and ``p4 pair accept``: pairing over Tor from the command line (p4-02).

``invite`` offers both entry paths at once, as a person expects: a QR code to scan and, printed
last, a short code to read out (the ``p4:pair`` URI itself, which holds a 256-bit secret, only
with ``--show-uri``).  It publishes the pairing onion of each and pairs with whichever is used
first.  The two fail independently: a wrong guess at the short code spends the code, and the QR
code keeps working.  ``accept`` takes either form, from the command line, from ``$P4_CODE`` or
from a prompt (so the code stays out of the shell's history).

Everything that can be checked locally is checked before anything is published or dialled: the
profile, ``--name``, the code's form, whether this device already burnt that code, a URI's
expiry.  While it works it says what it is doing on stderr ("publishing…", "connecting to the
other device…"); every failure is one line that says what happened in words and what to do, with
the registry code in brackets for scripts.

``--tor`` says where tor is: ``system`` (a running tor's control port, 9051; ``system:PORT``),
``launch`` (start a private tor process with stem), or ``testnet:DIR[:N]`` (client ``N`` of the
project's private network started by ``python tools/tornet.py up --dir DIR``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import ErrorCode, P4Error
from ..identity import device_id
from ..io.burnt import BurntCodes
from ..io.pair_tor import (
    DIAL_TIMEOUT_S,
    InviteGroup,
    PairingResult,
    PendingInvite,
    accept_invitation,
    create_invitation,
)
from ..io.store import PeerRecord, Profile
from ..io.tor import TorConfig, TorDriver
from ..pairing import parse_code, parse_uri
from ..pairing._crypto import inviter_key_commitment
from ._common import home, say, seconds, tor_spec
from ._peers import check_new_name
from .qr import render_qr

__all__ = ["CODE_ENV", "add_pair_arguments", "cmd_pair_accept", "cmd_pair_invite", "tor_config"]

#: Environment variable ``p4 pair accept`` reads the code from when none is given.
CODE_ENV = "P4_CODE"

GET_NEW = "get a new code from the other device"

#: Accepter failures after which the invitation is spent: remembered, refused when retyped.
REMEMBERED = frozenset({
    ErrorCode.PAIR_CONFIRM_FAILED,
    ErrorCode.PAIR_INVITATION_BURNT,
    ErrorCode.PAIR_INVITATION_EXPIRED,
    ErrorCode.PAIR_INVITER_MISMATCH,
    ErrorCode.PAIR_OUTCOME_UNKNOWN,
})


@dataclass(frozen=True)
class _Client:
    control_port: int
    socks_port: int
    cookie_path: str
    data_dir: str


def tor_config(spec: str) -> TorConfig:
    """Parse ``--tor``: ``system[:PORT]``, ``launch`` or ``testnet:DIR[:N]``."""
    spec = tor_spec(spec) if isinstance(spec, str) else spec
    kind, _, rest = spec.partition(":")
    if kind == "system":
        return TorConfig(mode="system", control_port=int(rest) if rest else None)
    if kind == "launch":
        return TorConfig(mode="launch")
    directory, sep, index = rest.rpartition(":")
    if not sep or not index.isdigit():
        directory, index = rest, "0"
    desc_path = Path(directory) / "tornet.json"
    try:
        desc = json.loads(desc_path.read_text("utf-8"))
        c = desc["clients"][int(index)]
        client = _Client(c["control_port"], c["socks_port"], c["cookie_path"], c["data_dir"])
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise P4Error(ErrorCode.TOR_UNREACHABLE,
                      f"no private Tor network described in {desc_path}: {exc}") from None
    return TorConfig.testnet(client)


def add_pair_arguments(p: argparse.ArgumentParser, *, invite: bool) -> None:
    p.add_argument("--tor", default="system", metavar="MODE", type=tor_spec,
                   help="system[:PORT] (default), launch, or testnet:DIR[:N]")
    p.add_argument("--name", help="name to store the new peer under (not a device ID)")
    p.add_argument("--timeout", type=seconds, default=600.0 if invite else 120.0,
                   metavar="SECONDS",
                   help=("how long the invitation stays valid" if invite else
                         "how long to try in all; a code nobody serves fails after"
                         f" {DIAL_TIMEOUT_S:.0f} s") + " (default: %(default).0f)")
    p.add_argument("--replace", action="store_true",
                   help="if the other device is already paired with this one (it forgot this"
                        " device), replace the old pairing without asking")
    if invite:
        p.add_argument("--light", action="store_true", help="QR for a light terminal")
        p.add_argument("--show-uri", action="store_true",
                       help="also print the p4:pair link (it holds the invitation's secret)")


# --------------------------------------------------------------------------------------------
# Before anything goes on the network


def _precheck_name(profile: Profile, args: argparse.Namespace) -> str | None:
    """``--name`` valid and free (unless ``--replace`` may free it): checked before dialling."""
    if args.name is None:
        return None
    name = check_new_name(args.name)
    taken = next((p for p in profile.peers() if p.name == name), None)
    if taken is not None and not args.replace:
        raise P4Error(ErrorCode.PEER_EXISTS,
                      f"a peer named {name!r} is already paired ({taken.device_id}); choose"
                      " another --name, or add --replace if you are pairing with that device"
                      " again")
    return name


def _precheck_repair(profile: Profile, key_commitment: bytes, args: argparse.Namespace) -> None:
    """A URI commits to the inviter's identity key (p4-02 §5.2): if that device is already
    paired here, ask now — before dialling — whether to replace the old pairing, so that no
    answer given later can leave the pair stored on one side only."""
    stale = next((p for p in profile.peers()
                  if inviter_key_commitment(p.identity_key) == key_commitment), None)
    if stale is None or args.replace:
        return
    if not _confirm(f"This link is from {stale.name!r} ({stale.device_id}), which is already"
                    " paired; it seems to have forgotten this device. Pair again and replace"
                    " the old pairing?"):
        raise P4Error(ErrorCode.PEER_EXISTS,
                      f"{stale.name!r} ({stale.device_id}) is already paired; nothing was"
                      " dialled. Add --replace to pair again and replace the old pairing")
    args.replace = True


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def _store(profile: Profile, result: PairingResult, name: str | None,
           args: argparse.Namespace) -> None:
    """Store the new peer; a device that forgot us and paired again replaces its stale record
    once the user agrees (``--replace`` agrees in advance)."""
    peer_id = device_id(result.peer_identity)
    chosen = name is not None
    peers = profile.peers()
    stale: PeerRecord | None = next(
        (p for p in peers if p.identity_key == result.peer_identity), None)
    if stale is not None:
        question = (f"This device was already paired with {stale.name!r} ({peer_id}); it seems"
                    " to have forgotten this one. Replace the old pairing?")
        if not (args.replace or _confirm(question)):
            raise P4Error(ErrorCode.PEER_EXISTS,
                          f"{stale.name!r} ({peer_id}) is already paired and the old pairing was"
                          " kept; run again with --replace to replace it, or first"
                          f" `p4 peers forget {stale.name}`")
        name, chosen = name or stale.name, True
    others = {p.name: p for p in peers if p is not stale}
    if name is None:
        base = name = f"peer-{peer_id[:7].lower()}"
        n = 2
        while name in others:
            name, n = f"{base}-{n}", n + 1
    elif name in others:  # --replace only ever replaces this same device, never another one
        raise P4Error(ErrorCode.PEER_EXISTS,
                      f"a peer named {name!r} is another device ({others[name].device_id});"
                      " the pairing was not stored here — pair again with another --name")
    if stale is not None:
        profile.forget_peer(stale.name)
    profile.add_peer(name, result.peer_identity, result.pair_root_key, result.sas)
    hint = "" if chosen else f"  (name it: p4 peers rename {name} NAME)"
    print(f"Paired with {name} ({peer_id}){hint}")
    print(f"Compare this code with the other device: {result.sas}")


# --------------------------------------------------------------------------------------------
# Failures in words


def _tor_starting(spec: str) -> str:
    return "starting tor…" if spec == "launch" else "connecting to Tor…"


def _tor_trouble(exc: P4Error) -> P4Error | None:
    """Tor itself is the trouble: the driver's message already says what to do."""
    if exc.code.name.startswith("TOR_"):
        return P4Error(exc.code, f"cannot use Tor: {exc.message}")
    return None


def _explain_accept(exc: P4Error, dialling: bool) -> P4Error:
    c = exc.code
    if c.name.startswith(("PEER_", "PROFILE_")):  # already worded for a person
        return exc
    if c is ErrorCode.PAIR_CONFIRM_FAILED:
        return P4Error(c, f"wrong code, or someone guessing — {GET_NEW}")
    if c is ErrorCode.PAIR_INVITATION_BURNT:
        return P4Error(c, f"this code was already used — {GET_NEW}")
    if c is ErrorCode.PAIR_INVITATION_EXPIRED:
        return P4Error(c, f"this code has expired — {GET_NEW}")
    if c is ErrorCode.PAIR_OUTCOME_UNKNOWN:
        return P4Error(c, "the connection broke at the very end: the other device may have stored"
                          " the pairing, this one did not — pair again with a new code (that"
                          " replaces it)")
    if c is ErrorCode.PAIR_INVITER_MISMATCH:
        return P4Error(c, "the device answering is not the one that made this QR code (someone"
                          f" may be in the way) — nothing was stored; {GET_NEW}")
    if dialling and c in (ErrorCode.TOR_ONION_UNREACHABLE, ErrorCode.TOR_TIMEOUT):
        return P4Error(c, f"no device is offering this code (tried for {DIAL_TIMEOUT_S:.0f} s):"
                          " check it, or it has expired or was already used — " + GET_NEW)
    if (trouble := _tor_trouble(exc)) is not None:
        return trouble
    if c is ErrorCode.TIMEOUT:
        return P4Error(c, "the other device stopped answering during pairing — try again with"
                          " a new code")
    if c is ErrorCode.PROTOCOL_VIOLATION:
        return P4Error(c, "the connection to the other device was lost during pairing — try"
                          " again with a new code")
    return P4Error(c, f"pairing failed: {exc.message}")


def _explain_invite(exc: P4Error, expiry: datetime.datetime) -> P4Error:
    c = exc.code
    if c.name.startswith(("PEER_", "PROFILE_")):  # already worded for a person
        return exc
    again = "run `p4 pair invite` again"
    if c is ErrorCode.PAIR_INVITATION_EXPIRED:
        return P4Error(c, f"nobody used the invitation before it expired at {expiry:%H:%M} —"
                          f" {again}")
    if c is ErrorCode.PAIR_CONFIRM_FAILED:
        return P4Error(c, "someone tried a wrong code, so the invitation is used up — " + again
                          + " and read the new code out carefully")
    if (trouble := _tor_trouble(exc)) is not None:
        return trouble
    if c is ErrorCode.TIMEOUT:
        return P4Error(c, f"the other device stopped answering during pairing — {again}")
    if c is ErrorCode.PROTOCOL_VIOLATION:
        return P4Error(c, f"the connection to the other device was lost during pairing — {again}")
    return P4Error(c, f"pairing failed: {exc.message}")


# --------------------------------------------------------------------------------------------
# invite


def _screen(code: str, uri: str, expiry: datetime.datetime, args: argparse.Namespace) -> str:
    """QR + short code in 80×24: a compact QR (quiet zone 1, level L, the URI in upper case so
    most of it is coded as alphanumerics), the instructions beside it, the code last."""
    qr = render_qr(uri.upper(), light_background=args.light, stream=sys.stdout, border=1,
                   error_correction="L").splitlines()
    side = ["Scan this with the other device,", "or there run the command below.",
            f"It expires at {expiry:%H:%M}, works once."]
    width = max(len(line) for line in qr)
    cols = shutil.get_terminal_size((80, 24)).columns
    lines = list(qr)
    if width + 2 + max(len(s) for s in side) <= max(cols, 80):
        for i, s in enumerate(side):
            lines[len(qr) - len(side) + i] += "  " + s
    else:
        lines += side
    if args.show_uri:
        lines.append(f"  p4 pair accept {shlex.quote(uri)}")
    lines.append(f"  p4 pair accept {code}")
    return "\n".join(lines) + "\n"


async def _invite(profile: Profile, name: str | None,
                  args: argparse.Namespace) -> PairingResult:
    expiry = datetime.datetime.now() + datetime.timedelta(seconds=args.timeout)
    tor = TorDriver(tor_config(args.tor))
    group = InviteGroup()

    def notify(kind: str, invite: PendingInvite, exc: P4Error | None) -> None:
        what = "QR code" if invite.is_uri else "short code"
        if kind == "attempt":
            say(f"a device connected with the {what}; pairing…")
        elif exc is not None:
            others = [m for m in group.members if m is not invite and not m.consumed]
            still = "short code" if invite.is_uri else "QR code"
            rest = f"; the {still} still works" if others else ""
            if exc.code is ErrorCode.PAIR_CONFIRM_FAILED:
                first = f"someone used the {what} with the wrong words (a typo, or a guess)"
            else:
                first = f"pairing with the {what} failed: " + (
                    _explain_invite(exc, expiry).message.split(" — ")[0])
            say(f"{first}; the {what} no longer works{rest} [{exc.code.name}]")

    try:
        try:
            say(_tor_starting(args.tor))
            await tor.start()
            say("publishing the invitation…")
            def store(result: PairingResult) -> None:  # before our PAIR_DONE goes out
                _store(profile, result, name, args)

            published = await asyncio.gather(*(  # both at once: each waits for its uploads
                create_invitation(tor, profile.identity.seed, uri=uri, expires_s=args.timeout,
                                  group=group, notify=notify, on_paired=store)
                for uri in (False, True)), return_exceptions=True)
            for p in published:
                if isinstance(p, BaseException):
                    raise p
            code, uri = (p for p in published if isinstance(p, PendingInvite))
            sys.stdout.write(_screen(code.text, uri.text, expiry, args))
            sys.stdout.flush()
            _, result = await group.wait(args.timeout)
            return result
        except P4Error as exc:
            raise _explain_invite(exc, expiry) from None
    finally:
        for m in group.members:
            await m.close()
        await tor.close()


def cmd_pair_invite(args: argparse.Namespace) -> int:
    profile = Profile.open(home(args))
    name = _precheck_name(profile, args)
    asyncio.run(_invite(profile, name, args))  # stores the pair itself (p4-02 [PAIR-63])
    return 0


# --------------------------------------------------------------------------------------------
# accept


def _read_code(args: argparse.Namespace) -> str:
    """The code: the argument, else ``$P4_CODE``, else a prompt (or one line of stdin)."""
    text: str | None = args.code
    if text is None:
        text = os.environ.get(CODE_ENV) or None
    if text is None:
        if sys.stdin.isatty():
            try:
                text = input("Code (or p4:pair link) shown on the other device: ")
            except EOFError:
                text = ""
        else:
            text = sys.stdin.readline()
    text = text.strip()
    if not text:
        raise P4Error(ErrorCode.PAIR_CODE_MALFORMED,
                      f"no code given: type it when asked, or set {CODE_ENV}, or pass it as an"
                      " argument")
    return text


async def _accept(profile: Profile, text: str, args: argparse.Namespace) -> PairingResult:
    tor = TorDriver(tor_config(args.tor))
    dialling = False

    def progress(line: str) -> None:
        nonlocal dialling
        dialling = line.startswith("connecting")
        say(line)

    try:
        say(_tor_starting(args.tor))
        await tor.start()
        return await accept_invitation(tor, profile.identity.seed, text, timeout=args.timeout,
                                       rng=os.urandom, progress=progress)
    except P4Error as exc:
        raise _explain_accept(exc, dialling) from exc
    finally:
        await tor.close()


def cmd_pair_accept(args: argparse.Namespace) -> int:
    text = _read_code(args)
    _ = parse_uri(text) if text.lower().startswith("p4:") else parse_code(text)  # typo: fail now
    profile = Profile.open(home(args))
    name = _precheck_name(profile, args)
    burnt = BurntCodes(profile.path, profile.identity.seed)
    try:
        burnt.check(text)
    except P4Error as exc:
        raise _explain_accept(exc, False) from None
    if text.lower().startswith("p4:"):
        uri = parse_uri(text)
        if uri.expires * 1000 <= _now_ms():
            raise _explain_accept(P4Error(ErrorCode.PAIR_INVITATION_EXPIRED), False)
        _precheck_repair(profile, uri.key_commitment, args)
    try:
        result = asyncio.run(_accept(profile, text, args))
    except P4Error as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, P4Error) else exc
        if cause.code in REMEMBERED:
            burnt.remember(text, cause.code)
        raise
    burnt.remember(text, ErrorCode.PAIR_INVITATION_BURNT)  # used now: retyping it says so
    _store(profile, result, name, args)
    return 0


def _now_ms() -> int:
    return int(datetime.datetime.now(datetime.UTC).timestamp() * 1000)
