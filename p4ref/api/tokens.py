"""Per-app tokens of the local API and what each one may do (its *scope*).

An app (the scheduler, a notes app…) is registered once with ``p4 api token add NAME --peer X
--prefix notes/``: the profile stores the token's SHA-256 (never the token), the peers the app may
use (device IDs, or every peer) and its channel-name prefix. The token is shown once.

Prefixes of two apps that may use a common peer must not overlap (neither is a prefix of the
other): every incoming channel then has exactly one owning app, so no app can read another's
traffic, and a slow app stalls only its own channels' credit, never another app's.

The file is ``<home>/api/tokens.json`` (mode 0600, in a 0700 directory), written atomically under
the profile lock; the server re-reads it when it changes, so ``token add``/``remove`` take effect
for the next request without restarting ``p4 up``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p4ref.errors import ErrorCode
from p4ref.io.store import ProfileError, atomic_write, locked_file, read_private_file

__all__ = [
    "ALL_PEERS",
    "API_DIR",
    "RESERVED_APP",
    "RESERVED_PREFIX",
    "TOKEN_PREFIX",
    "AppScope",
    "TokenError",
    "TokenStore",
    "api_dir",
    "channel_name_ok",
]

API_DIR = "api"
TOKENS_FILE = "tokens.json"
TOKENS_FORMAT = "p4-api-tokens"
TOKEN_PREFIX = "p4tok_"  # makes a leaked token easy to find (and to refuse in a URL)
ALL_PEERS = "*"
#: Channel names the reference peer keeps for its own services (files ``p4files/``, the CLI's
#: ``p4chat/``…): only apps named ``p4-…`` (registered by ``p4 up`` itself) may own them.
RESERVED_PREFIX = "p4"
RESERVED_APP = "p4-"
DEFAULT_QUOTA_MESSAGES = 1024
DEFAULT_QUOTA_BYTES = 16 * 1024 * 1024
MAX_CHANNEL_NAME = 200
_APP_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,31}")
_CHANNEL_CHARS = re.compile(r"[\x21-\x7e]*")


class TokenError(Exception):
    """A token command refused: ``code`` is ``APP_NAME_INVALID``, ``SCOPE_INVALID``,
    ``APP_EXISTS``, ``SCOPE_OVERLAP`` or ``APP_UNKNOWN``."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def channel_name_ok(name: str, *, prefix: bool = False) -> bool:
    """A channel name (or prefix) the API accepts: printable ASCII without space, 1 to 200
    characters (a prefix may be empty)."""
    return ((prefix or len(name) >= 1) and len(name) <= MAX_CHANNEL_NAME
            and _CHANNEL_CHARS.fullmatch(name) is not None)


def api_dir(home: Path) -> Path:
    """``<home>/api``, created with mode 0700 if missing."""
    d = home / API_DIR
    d.mkdir(mode=0o700, exist_ok=True)
    return d


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AppScope:
    """One app: its name, the peers (device IDs, or ``("*",)`` for all) and the channel-name
    prefix it may use, and the quota of its subscription (unconfirmed messages and bytes)."""

    name: str
    peers: tuple[str, ...]
    prefix: str
    quota_messages: int = DEFAULT_QUOTA_MESSAGES
    quota_bytes: int = DEFAULT_QUOTA_BYTES
    created: float = 0.0

    def allows_peer(self, device_id: str) -> bool:
        return ALL_PEERS in self.peers or device_id in self.peers

    def allows_channel(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def overlaps(self, other: AppScope) -> bool:
        shared = ALL_PEERS in self.peers or ALL_PEERS in other.peers or bool(
            set(self.peers) & set(other.peers))
        return shared and (self.prefix.startswith(other.prefix)
                           or other.prefix.startswith(self.prefix))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "peers": list(self.peers), "prefix": self.prefix,
                "quota_messages": self.quota_messages, "quota_bytes": self.quota_bytes,
                "created": self.created}


def _scope_from_json(path: Path, rec: Any) -> tuple[str, AppScope]:
    try:
        scope = AppScope(
            name=str(rec["name"]), peers=tuple(str(p) for p in rec["peers"]),
            prefix=str(rec["prefix"]), quota_messages=int(rec["quota_messages"]),
            quota_bytes=int(rec["quota_bytes"]), created=float(rec["created"]))
        digest = str(rec["token_sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise ProfileError(ErrorCode.PROFILE_CORRUPT, f"{path}: bad app record ({e})") from None
    if len(digest) != 64 or not _APP_NAME.fullmatch(scope.name):
        raise ProfileError(ErrorCode.PROFILE_CORRUPT, f"{path}: bad app record {scope.name!r}")
    return digest, scope


class TokenStore:
    """The app tokens of one profile (see the module docstring)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / API_DIR / TOKENS_FILE
        self._cache: tuple[tuple[int, int, int], dict[str, AppScope]] | None = None

    # --- reading ---

    def _load(self) -> dict[str, AppScope]:
        """token SHA-256 (hex) -> scope, re-read only when the file changed."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        data = read_private_file(self.path)
        apps: dict[str, AppScope] = {}
        if data:
            try:
                doc = json.loads(data)
                records = doc["apps"] if doc.get("format") == TOKENS_FORMAT else None
            except (ValueError, AttributeError, KeyError):
                records = None
            if not isinstance(records, list):
                raise ProfileError(ErrorCode.PROFILE_CORRUPT, f"{self.path} is not a token file")
            for rec in records:
                digest, scope = _scope_from_json(self.path, rec)
                apps[digest] = scope
        self._cache = (key, apps)
        return apps

    def apps(self) -> list[AppScope]:
        return sorted(self._load().values(), key=lambda a: a.name)

    def verify(self, token: str) -> AppScope | None:
        """The scope of ``token``, or None. Constant-time in the token's value."""
        digest = _hash(token)
        found: AppScope | None = None
        for known, scope in self._load().items():
            if hmac.compare_digest(known, digest):
                found = scope
        return found

    # --- changing (under the profile lock) ---

    def _write(self, apps: dict[str, AppScope]) -> None:
        records = [dict(scope.to_json(), token_sha256=d)
                   for d, scope in sorted(apps.items(), key=lambda kv: kv[1].name)]
        doc = {"format": TOKENS_FORMAT, "version": 1, "apps": records}
        atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        self._cache = None

    def add(self, name: str, peers: Sequence[str], prefix: str, *,
            quota_messages: int = DEFAULT_QUOTA_MESSAGES,
            quota_bytes: int = DEFAULT_QUOTA_BYTES) -> str:
        """Register app ``name``; returns its new token (shown once, stored only hashed).
        ``peers``: device IDs, or ``["*"]``. TokenError APP_EXISTS if the name is taken,
        SCOPE_OVERLAP if the prefix overlaps another app's on a common peer, APP_NAME_INVALID
        or SCOPE_INVALID for a bad name, prefix, peer list or quota."""
        if not _APP_NAME.fullmatch(name):
            raise TokenError("APP_NAME_INVALID",
                             f"{name!r}: an app name is 1-32 of a-z 0-9 . _ - (lower case)")
        if not channel_name_ok(prefix, prefix=True):
            raise TokenError("SCOPE_INVALID",
                             f"{prefix!r}: a prefix is printable ASCII without spaces")
        if not peers:
            raise TokenError("SCOPE_INVALID", "name at least one peer (or all peers)")
        if not name.startswith(RESERVED_APP) and (
                prefix.startswith(RESERVED_PREFIX) or RESERVED_PREFIX.startswith(prefix)):
            raise TokenError("SCOPE_INVALID", f"{prefix!r}: channel names starting with"
                             f" {RESERVED_PREFIX!r} belong to p4 itself; choose another prefix")
        if not 1 <= quota_messages <= 1_000_000 or not 1024 <= quota_bytes <= 1 << 34:
            raise TokenError("SCOPE_INVALID", "quota out of range (1..1000000 messages,"
                             " 1 KiB..16 GiB)")
        scope = AppScope(name, tuple(sorted(set(peers))), prefix, quota_messages, quota_bytes,
                         round(time.time(), 3))
        api_dir(self.home)
        with locked_file(self.home / API_DIR / "lock", 10.0, "another p4 is changing tokens"):
            self._cache = None
            apps = dict(self._load())
            for other in apps.values():
                if other.name == name:
                    raise TokenError("APP_EXISTS", f"an app named {name!r} exists;"
                                     f" remove it first (p4 api token remove {name})")
                if scope.overlaps(other):
                    raise TokenError(
                        "SCOPE_OVERLAP",
                        f"prefix {prefix!r} overlaps app {other.name!r} (prefix"
                        f" {other.prefix!r}) on a common peer: each channel has one owner")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            apps[_hash(token)] = scope
            self._write(apps)
        return token

    def remove(self, name: str) -> AppScope:
        api_dir(self.home)
        with locked_file(self.home / API_DIR / "lock", 10.0, "another p4 is changing tokens"):
            self._cache = None
            apps = dict(self._load())
            for digest, scope in apps.items():
                if scope.name == name:
                    del apps[digest]
                    self._write(apps)
                    return scope
        raise TokenError("APP_UNKNOWN", f"no app named {name!r}")
