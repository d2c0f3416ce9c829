"""Naming paired peers on the command line: device IDs first, then names, and "did you mean".

A name that reads as a device ID is refused: ``p4 peers forget <ID>`` must only ever mean the
device with that ID (issue 10 §1).  A device ID that does not check out is compared with the
paired devices' IDs: a character the user could have confused (``0``/``O``, ``1``/``I``,
``8``/``B``, the way Syncthing repairs them) or a typo inside the 14-character group whose check
character failed is offered back as "did you mean …".
"""

from __future__ import annotations

import difflib

from ..errors import ErrorCode, P4Error
from ..identity import luhn32_check_char, parse_device_id
from ..io.store import PeerRecord, Profile, check_peer_name

__all__ = ["check_new_name", "looks_like_device_id", "resolve_peer"]

_DEVICE_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_LOOKALIKES = str.maketrans({"0": "O", "1": "I", "8": "B"})
_ID_LEN = 56
_GROUP = 14  # 13 data characters + 1 check character


def _compact(text: str) -> str:
    return text.replace(" ", "").replace("-", "").upper()


def looks_like_device_id(text: str) -> bool:
    """56 letters/digits once spaces and hyphens are gone: a device ID, typed right or wrong."""
    s = _compact(text)
    return len(s) == _ID_LEN and s.isascii() and s.isalnum()


def check_new_name(name: str) -> str:
    """A name to store a peer under: the profile's rules, and not something that reads as a
    device ID (PEER_NAME_INVALID)."""
    norm = check_peer_name(name)
    if looks_like_device_id(norm):
        raise P4Error(ErrorCode.PEER_NAME_INVALID,
                      f"{name!r} looks like a device ID; choose a name such as 'phone'")
    return norm


def _suggest(text: str, peers: list[PeerRecord]) -> list[PeerRecord]:
    """Peers whose ID the mistyped ``text`` is close to (lookalikes, or ≤ 2 typed characters
    or one swap, inside the groups whose check character failed)."""
    typed = _compact(text).translate(_LOOKALIKES)
    if len(typed) != _ID_LEN or not set(typed) <= _DEVICE_ID_CHARS:
        return []
    # the groups whose check character fails locate the typo (p4-02 §3.2.1)
    bad = {g for g in range(_ID_LEN // _GROUP)
           if luhn32_check_char(typed[g * _GROUP : g * _GROUP + _GROUP - 1])
           != typed[g * _GROUP + _GROUP - 1]}
    out: list[PeerRecord] = []
    for p in peers:
        real = _compact(p.device_id)
        diffs = [i for i in range(_ID_LEN) if typed[i] != real[i]]
        if any(i // _GROUP not in bad for i in diffs) or len(diffs) > 2:
            continue  # a difference where the ID checks out is not this typo
        out.append(p)
    return out


def resolve_peer(profile: Profile, key: str) -> PeerRecord:
    """The peer ``key`` names: a device ID (never a name) when it reads as one, else a name."""
    peers = profile.peers()
    if looks_like_device_id(key):
        try:
            ident = parse_device_id(key)
        except P4Error as exc:
            near = _suggest(key, peers)
            hint = "; ".join(f"did you mean {p.device_id} ({p.name!r})?" for p in near)
            raise P4Error(
                ErrorCode.PEER_UNKNOWN,
                f"{key!r} is not a valid device ID ({exc.message})"
                + (f"; {hint}" if hint else "; see `p4 peers`"),
            ) from None
        for p in peers:
            if p.identity_key == ident:
                return p
        raise P4Error(ErrorCode.PEER_UNKNOWN,
                      f"no paired device has the ID {key}; see `p4 peers`")
    for p in peers:
        if p.name == key:
            return p
    close = difflib.get_close_matches(key, [p.name for p in peers], n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else "; see `p4 peers`"
    raise P4Error(ErrorCode.PEER_UNKNOWN, f"no paired peer named {key!r}{hint}")

