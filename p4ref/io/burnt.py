"""Invitations this profile has burnt as an accepter, so the same code is not tried twice.

After a wrong code (PAIR_CONFIRM_FAILED) the inviter's invitation is spent, and typing the same
code again would only be another online guess for whoever is answering it (issue 8 §1.5).  So
``p4 pair accept`` remembers each code that failed after the PAKE, or that the inviter reported
used or expired, and refuses it before dialling.  The file holds keyed hashes, never a code:

    <home>/burnt-codes.json   mode 0600
    {"format": "p4-burnt-codes", "version": 1,
     "codes": [{"hash": <hex HMAC-SHA256>, "code": <registry name>, "until": <Unix s>}, ...]}

The HMAC key is derived from the identity seed, so the file alone does not let anyone test
guesses.  Entries are dropped when they expire: a URI at its own expiry, a short code after
:data:`SHORT_CODE_TTL_S` (longer than any invitation lives).  The file is a cache: a damaged
one is ignored (and replaced on the next write), never a reason to refuse pairing.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import ErrorCode, P4Error
from ..pairing import parse_code, parse_uri
from .store import LOCK_FILE, atomic_write, locked_file

__all__ = ["BURNT_FILE", "SHORT_CODE_TTL_S", "BurntCodes"]

BURNT_FILE = "burnt-codes.json"
FORMAT = "p4-burnt-codes"
SHORT_CODE_TTL_S = 24 * 3600
MAX_ENTRIES = 1000
LOCK_TIMEOUT_S = 10.0
_MAX_SIZE = 1 << 20

def canonical(text: str) -> tuple[str, int | None]:
    """The canonical form of a code or URI, and the URI's expiry (Unix s) if it has one."""
    if text.strip().lower().startswith("p4:"):
        u = parse_uri(text)
        return str(u), u.expires
    return str(parse_code(text)), None


class BurntCodes:
    """The burnt-codes file of one profile."""

    def __init__(self, home: Path, identity_seed: bytes) -> None:
        self.path = Path(home) / BURNT_FILE
        self._key = hashlib.sha256(b"p4 burnt pairing codes v1\x00" + identity_seed).digest()

    def _hash(self, text: str) -> str:
        canon, _ = canonical(text)
        return hmac.new(self._key, canon.encode("utf-8"), hashlib.sha256).hexdigest()

    def _load(self, now: int) -> list[dict[str, Any]]:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
                         | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return []
        try:
            with os.fdopen(fd, "rb") as f:
                doc = json.loads(f.read(_MAX_SIZE).decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return []
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != 1:
            return []
        codes = doc.get("codes")
        if not isinstance(codes, list):
            return []
        return [e for e in codes if isinstance(e, dict) and isinstance(e.get("hash"), str)
                and isinstance(e.get("code"), str) and type(e.get("until")) is int
                and e["until"] > now]

    def check(self, text: str, now: int | None = None) -> None:
        """Raise the code the invitation was burnt with (a P4Error) if it is remembered."""
        t = int(time.time()) if now is None else now
        h = self._hash(text)
        for e in self._load(t):
            if hmac.compare_digest(e["hash"], h):
                code = ErrorCode.__members__.get(e["code"], ErrorCode.PAIR_INVITATION_BURNT)
                raise P4Error(code, "this code was already tried on this device")

    def remember(self, text: str, code: ErrorCode, now: int | None = None) -> None:
        """Record that ``text`` is spent (``code`` says how); crash-safe (atomic replace)."""
        t = int(time.time()) if now is None else now
        _, uri_expiry = canonical(text)
        until = uri_expiry + 60 if uri_expiry is not None else t + SHORT_CODE_TTL_S
        if until <= t:
            return
        h = self._hash(text)
        # Read-modify-write under the profile's writer lock [IDN-26]: two `p4 pair accept` at
        # once must not drop each other's entry.  A cache that cannot be written (lock busy,
        # disk full) costs only a re-tried guess, never the pairing's outcome.
        with contextlib.suppress(OSError, P4Error), locked_file(
                self.path.parent / LOCK_FILE, LOCK_TIMEOUT_S, "another p4 process is writing"):
            entries = [e for e in self._load(t) if e["hash"] != h]
            entries.append({"hash": h, "code": code.name, "until": until})
            doc = {"format": FORMAT, "version": 1, "codes": entries[-MAX_ENTRIES:]}
            atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode("ascii"))
