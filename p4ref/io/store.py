"""The profile directory: the identity seed and the paired-peer records (p4-02 §3.4).

Layout (default ``$P4_HOME``, else the platform's folder: :func:`p4ref.io._platform.default_home`)::

    <home>/             mode 0700
      identity.key      mode 0600  "p4-identity-key 1" header, hex seed, device ID   [IDN-18]
      peers.json        mode 0600  {"format", "version", "peers", "sha256"}          [IDN-19]
      lock              mode 0600  exclusive-lock target serialising writers         [IDN-26]

Rules this module implements (p4-02 §3.4):

- Every write is atomic: a temp file in the same directory, ``fsync``, ``os.replace`` (or
  ``os.link`` when the target must not exist yet), then ``fsync`` of the directory [IDN-23].
  A crash at any point leaves either the old or the new file, never a mixture.
- Every read is strict: a file that does not parse exactly, fails its checksum or schema, or whose
  redundant fields disagree is PROFILE_CORRUPT; a newer format version is
  PROFILE_VERSION_UNSUPPORTED. Nothing is ever repaired, replaced or deleted on the user's
  behalf [IDN-24]; ``init`` never overwrites [IDN-25].
- ``identity.key`` and ``peers.json`` hold secrets: a file or directory that is a symlink, is
  owned by another user or is group/other-accessible is PROFILE_INSECURE [IDN-16] [IDN-17]
  (owner and mode checks only where POSIX modes exist; p4-02 §3.4.5 for Windows).
- A profile file that is not a regular file (a FIFO, a device, a directory) is PROFILE_CORRUPT
  and is never opened in a way that could block [IDN-29]; ``peers.json`` that nests deeper than
  its schema or holds an integer of more than 15 digits is PROFILE_CORRUPT, never a Python
  RecursionError or ValueError [IDN-30].
- Absent ``peers.json`` means "no peers yet"; it is created by the first :meth:`Profile.add_peer`.

This is the only module that touches the profile on disk; :mod:`p4ref.identity` stays pure, and
every platform difference (locking, modes, open flags, the default directory) is in
:mod:`p4ref.io._platform`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from p4ref.errors import ErrorCode, P4Error, RemoteProtocolError
from p4ref.identity import (
    Identity,
    check_public_key,
    device_id,
    generate_identity,
    parse_device_id,
)
from p4ref.io import _platform

__all__ = [
    "IDENTITY_FILE",
    "LOCK_FILE",
    "PEERS_FILE",
    "PeerRecord",
    "Profile",
    "ProfileError",
    "atomic_write",
    "default_home",
    "locked_file",
    "read_private_file",
]

IDENTITY_FILE = "identity.key"
PEERS_FILE = "peers.json"
LOCK_FILE = "lock"
KEY_FORMAT = "p4-identity-key"
PEERS_FORMAT = "p4-peers"
FORMAT_VERSION = 1
MAX_NAME_LEN = 64
MAX_SAS_LEN = 128
MAX_FILE_SIZE = 16 * 1024 * 1024
MAX_INT_DIGITS = 15  # peers.json: paired_at and version need far fewer [IDN-30]
_TMP_PREFIX = ".tmp-"


class ProfileError(P4Error):
    """A local profile problem (codes 0x06xx); the message names the file and what to do."""


def default_home() -> Path:
    """``$P4_HOME`` if set and non-empty, else the platform's default (p4-02 §3.4)."""
    return _platform.default_home()


# --------------------------------------------------------------------------------------------
# Peer records


def check_peer_name(name: str) -> str:
    """A peer name as stored: NFC, 1..64 characters, no control/format characters, no
    leading/trailing white space (p4-02 §3.4.2) [IDN-20]. Raises PEER_NAME_INVALID."""
    if not isinstance(name, str):
        raise ProfileError(ErrorCode.PEER_NAME_INVALID, "a peer name must be text")
    norm = unicodedata.normalize("NFC", name)
    if not norm or len(norm) > MAX_NAME_LEN:
        raise ProfileError(
            ErrorCode.PEER_NAME_INVALID, f"a peer name has 1 to {MAX_NAME_LEN} characters"
        )
    if norm != norm.strip():
        raise ProfileError(
            ErrorCode.PEER_NAME_INVALID, "a peer name must not start or end with white space"
        )
    if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp") for c in norm):
        raise ProfileError(
            ErrorCode.PEER_NAME_INVALID, "a peer name must not contain control characters"
        )
    return norm


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """One paired peer (p4-02 §3.4): what pairing produced and the user's name for it."""

    name: str
    identity_key: bytes
    pair_root_key: bytes = field(repr=False)
    paired_at: int  # Unix time, whole seconds, UTC
    sas: str

    @property
    def device_id(self) -> str:
        return device_id(self.identity_key)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "device_id": self.device_id,
            "identity_key": self.identity_key.hex(),
            "pair_root_key": self.pair_root_key.hex(),
            "paired_at": self.paired_at,
            "sas": self.sas,
        }


_PEER_KEYS = frozenset(PeerRecord("x", bytes(32), bytes(32), 0, "").to_json())
_TOP_KEYS = frozenset({"format", "version", "peers", "sha256"})


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _peers_checksum(peers_json: list[dict[str, Any]]) -> str:
    """sha256 over the canonical JSON of {"format", "version", "peers"} [IDN-19]."""
    body = {"format": PEERS_FORMAT, "version": FORMAT_VERSION, "peers": peers_json}
    return hashlib.sha256(_canonical(body)).hexdigest()


def _encode_peers(peers: list[PeerRecord]) -> bytes:
    items = [p.to_json() for p in peers]
    doc = {
        "format": PEERS_FORMAT,
        "version": FORMAT_VERSION,
        "peers": items,
        "sha256": _peers_checksum(items),
    }
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _corrupt(path: Path, why: str) -> ProfileError:
    return ProfileError(
        ErrorCode.PROFILE_CORRUPT,
        f"{path} is corrupt ({why}); it was left untouched — restore it from a backup or move it"
        " away",
    )


def _hex_field(path: Path, rec: dict[str, Any], key: str, n: int) -> bytes:
    value = rec[key]
    if not isinstance(value, str) or len(value) != 2 * n or value != value.lower():
        raise _corrupt(path, f"peer field {key!r} is not {n} bytes of lowercase hex")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise _corrupt(path, f"peer field {key!r} is not hex") from None


class _TooLong(ValueError):
    pass


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise _TooLong(f"an integer of {len(text)} digits")
    return int(text)


def _decode_peers(path: Path, data: bytes) -> list[PeerRecord]:
    try:
        doc = json.loads(data.decode("utf-8"), parse_int=_parse_int)
    except _TooLong as e:
        raise _corrupt(path, str(e)) from None
    except RecursionError:  # nesting deeper than the interpreter's stack; the schema has 3 levels
        raise _corrupt(path, "nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise _corrupt(path, f"not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != PEERS_FORMAT:
        raise _corrupt(path, f'not a "{PEERS_FORMAT}" file')
    version = doc.get("version")
    if type(version) is not int:
        raise _corrupt(path, "no format version")
    if version != FORMAT_VERSION:
        raise ProfileError(
            ErrorCode.PROFILE_VERSION_UNSUPPORTED,
            f"{path} has format version {version}; this p4 reads version {FORMAT_VERSION}",
        )
    if set(doc) != _TOP_KEYS:
        raise _corrupt(path, f"top-level keys must be exactly {sorted(_TOP_KEYS)}")
    items = doc["peers"]
    if not isinstance(items, list) or not all(isinstance(r, dict) for r in items):
        raise _corrupt(path, '"peers" is not a list of objects')
    if doc["sha256"] != _peers_checksum(items):
        raise _corrupt(path, "checksum mismatch")
    peers: list[PeerRecord] = []
    names: set[str] = set()
    keys: set[bytes] = set()
    for rec in items:
        if set(rec) != _PEER_KEYS:
            raise _corrupt(path, f"a peer record's keys must be exactly {sorted(_PEER_KEYS)}")
        ident = _hex_field(path, rec, "identity_key", 32)
        root = _hex_field(path, rec, "pair_root_key", 32)
        paired_at, sas, name = rec["paired_at"], rec["sas"], rec["name"]
        if type(paired_at) is not int or paired_at < 0:
            raise _corrupt(path, "peer field 'paired_at' is not a non-negative integer")
        if not isinstance(sas, str) or len(sas) > MAX_SAS_LEN:
            raise _corrupt(path, "peer field 'sas' is not a short string")
        try:
            if check_peer_name(name) != name:
                raise _corrupt(path, f"peer name {name!r} is not in NFC")
        except ProfileError as e:
            if e.code is ErrorCode.PROFILE_CORRUPT:
                raise
            raise _corrupt(path, f"peer name {name!r}: {e.message}") from None
        if rec["device_id"] != device_id(ident):
            raise _corrupt(path, f"peer {name!r}: device_id does not match identity_key")
        if name in names or ident in keys:
            raise _corrupt(path, f"peer {name!r} appears twice")
        names.add(name)
        keys.add(ident)
        peers.append(PeerRecord(name, ident, root, paired_at, sas))
    if _encode_peers(peers) != data:
        # Strict schema: the file must be exactly what this version writes (no extra spacing,
        # no reordering, no escapes) so that two implementations agree on "corrupt".
        raise _corrupt(path, "not in canonical form")
    return peers


# --------------------------------------------------------------------------------------------
# identity.key


def _encode_key(identity: Identity) -> bytes:
    return (
        f"{KEY_FORMAT} {FORMAT_VERSION}\nseed {identity.seed.hex()}\n"
        f"device-id {identity.device_id}\n"
    ).encode("ascii")


def _decode_key(path: Path, data: bytes) -> Identity:
    lines = data.split(b"\n")
    header = lines[0].split(b" ")
    if len(header) != 2 or header[0] != KEY_FORMAT.encode():
        raise _corrupt(path, f'does not start with "{KEY_FORMAT} {FORMAT_VERSION}"')
    if header[1] != str(FORMAT_VERSION).encode():
        if header[1].isdigit():
            raise ProfileError(
                ErrorCode.PROFILE_VERSION_UNSUPPORTED,
                f"{path} has format version {header[1].decode()}; this p4 reads version"
                f" {FORMAT_VERSION}",
            )
        raise _corrupt(path, "bad format version")
    if len(lines) != 4 or lines[3] != b"" or not lines[1].startswith(b"seed "):
        raise _corrupt(path, "expected exactly the lines: header, seed, device-id")
    hexseed = lines[1][5:]
    if len(hexseed) != 64 or not all(c in b"0123456789abcdef" for c in hexseed):
        raise _corrupt(path, "the seed is not 64 lowercase hex digits")
    identity = Identity(bytes.fromhex(hexseed.decode("ascii")))
    if _encode_key(identity) != data:
        raise _corrupt(path, "the device-id line does not match the seed (damaged key?)")
    return identity


# --------------------------------------------------------------------------------------------
# File primitives


def _check_type(path: Path, st: os.stat_result, *, is_dir: bool) -> None:
    """Symlink: PROFILE_INSECURE [IDN-17]; not a directory / regular file: PROFILE_CORRUPT
    [IDN-29]. Called on ``lstat`` before opening, so a FIFO is never opened."""
    if stat.S_ISLNK(st.st_mode):
        raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{path} is a symbolic link")
    if is_dir != stat.S_ISDIR(st.st_mode) or (not is_dir and not stat.S_ISREG(st.st_mode)):
        raise _corrupt(path, "not a directory" if is_dir else "not a regular file")


def _check_mode(path: Path, st: os.stat_result, *, is_dir: bool) -> None:
    _check_type(path, st, is_dir=is_dir)
    if not _platform.POSIX_MODES:
        return  # Windows: the per-user folder's ACL, not modes (p4-02 §3.4.5)
    if not _platform.owned_by_user(st):
        raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{path} is owned by another user")
    if st.st_mode & 0o077:
        want = "0700" if is_dir else "0600"
        raise ProfileError(
            ErrorCode.PROFILE_INSECURE,
            f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it holds secrets and must be"
            f" {want} (chmod {want[1:]} {path})",
        )


def read_private_file(path: Path) -> bytes | None:
    """The bytes of ``path`` (None if it does not exist), after the ownership/mode checks.

    ``lstat`` first, so a FIFO or device in its place is refused without being opened (opening
    a FIFO waits for a writer); the open itself is non-blocking and does not follow symlinks,
    and ``fstat`` re-checks what was opened, in case the name was swapped in between [IDN-29].
    """
    try:
        _check_type(path, os.lstat(path), is_dir=False)
    except FileNotFoundError:
        return None
    try:
        fd = os.open(path, _platform.OPEN_READ)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{path} is a symbolic link") from None
        raise
    try:
        st = os.fstat(fd)
        _check_mode(path, st, is_dir=False)
        if st.st_size > MAX_FILE_SIZE:
            raise _corrupt(path, "implausibly large")
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Replace ``path`` by ``data`` atomically, mode 0600 (p4-02 §3.4.3) [IDN-23].

    Temp file in the same directory → write → fsync → ``os.replace`` (or ``os.link`` when
    ``exclusive``: fails with PROFILE_EXISTS instead of replacing) → fsync of the directory.
    On any failure the temp file is removed and the old file is untouched.
    """
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX + path.name + ".", dir=directory)
    try:
        try:
            _platform.make_private(fd)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ProfileError(
                    ErrorCode.PROFILE_EXISTS, f"{path} already exists; not replaced"
                ) from None
        else:
            _platform.replace(tmp, path)
            tmp = ""
    finally:
        if tmp:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    _platform.fsync_dir(directory)


# --------------------------------------------------------------------------------------------
# Profile


@dataclass(slots=True)
class Profile:
    """An opened profile directory (p4-02 §3.4). Create with :meth:`init` or :meth:`open`.

    :meth:`peers` re-reads ``peers.json`` on every call, so several processes may share one
    profile; writers serialise on an exclusive lock of ``<home>/lock`` [IDN-26].
    """

    path: Path
    identity: Identity
    lock_timeout: float = 10.0

    # --- construction ---

    @classmethod
    def init(
        cls, path: Path | str | None, rng: Callable[[int], bytes], *, lock_timeout: float = 10.0
    ) -> Profile:
        """Create a profile with a fresh identity from ``rng(32)``. Refuses (PROFILE_EXISTS) if
        ``identity.key`` or ``peers.json`` is already there — never overwrites [IDN-25]."""
        home = Path(path) if path is not None else default_home()
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.lstat(home)
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{home} is not a plain directory")
        if not _platform.owned_by_user(st):
            raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{home} is owned by another user")
        identity = generate_identity(rng)
        for name in (IDENTITY_FILE, PEERS_FILE):
            if os.path.lexists(home / name):
                raise ProfileError(
                    ErrorCode.PROFILE_EXISTS,
                    f"a profile already exists at {home} ({name}); not replaced",
                )
        others = [n for n in os.listdir(home) if n != LOCK_FILE and not n.startswith(_TMP_PREFIX)]
        if others:
            raise ProfileError(
                ErrorCode.PROFILE_EXISTS,
                f"{home} is not empty ({others[0]}…); choose an empty or new directory",
            )
        os.chmod(home, 0o700)
        with _locked(home, lock_timeout):
            _remove_stale_temps(home)
            atomic_write(home / IDENTITY_FILE, _encode_key(identity), exclusive=True)
        return cls(home, identity, lock_timeout)

    @classmethod
    def open(cls, path: Path | str | None = None, *, lock_timeout: float = 10.0) -> Profile:
        """Open an existing profile; checks modes [IDN-17] and parses every file strictly
        [IDN-18] [IDN-19]."""
        home = Path(path) if path is not None else default_home()
        try:
            st = os.lstat(home)
        except FileNotFoundError:
            raise ProfileError(
                ErrorCode.PROFILE_NOT_FOUND, f"no profile at {home} (run `p4 init`)"
            ) from None
        _check_mode(home, st, is_dir=True)
        data = read_private_file(home / IDENTITY_FILE)
        if data is None:
            raise ProfileError(
                ErrorCode.PROFILE_NOT_FOUND,
                f"no {IDENTITY_FILE} in {home} (run `p4 init`)",
            )
        profile = cls(home, _decode_key(home / IDENTITY_FILE, data), lock_timeout)
        profile.peers()  # fail now, not later, on a damaged peers.json
        return profile

    # --- reading ---

    def peers(self) -> list[PeerRecord]:
        """All paired peers, in the order they were added."""
        path = self.path / PEERS_FILE
        data = read_private_file(path)
        return [] if data is None else _decode_peers(path, data)

    def peer(self, key: str) -> PeerRecord:
        """The peer named ``key``, or else whose device ID ``key`` is (PEER_UNKNOWN)."""
        return _find(self.peers(), key)

    # --- writing (each one: lock, re-read, change, atomic replace) ---

    def add_peer(
        self,
        name: str,
        identity_key: bytes,
        pair_root_key: bytes,
        sas: str,
        paired_at: int | None = None,
    ) -> PeerRecord:
        """Record a newly paired peer. PEER_EXISTS if the name or the key is already there."""
        name = check_peer_name(name)
        if len(identity_key) != 32 or len(pair_root_key) != 32:
            raise ProfileError(
                ErrorCode.IDENTITY_KEY_INVALID, "identity and pair root keys are 32 bytes"
            )
        try:  # a key no signature can verify with (p4-02 §3.1.1) is never stored [IDN-21]
            check_public_key(bytes(identity_key))
        except RemoteProtocolError as e:
            raise ProfileError(ErrorCode.IDENTITY_KEY_INVALID, e.message) from None
        if not isinstance(sas, str) or len(sas) > MAX_SAS_LEN:
            raise ProfileError(ErrorCode.MESSAGE_INVALID, f"sas is text ≤ {MAX_SAS_LEN} chars")
        if identity_key == self.identity.public_key:
            raise ProfileError(ErrorCode.PEER_EXISTS, "that is this device's own identity")
        when = int(time.time()) if paired_at is None else paired_at
        if type(when) is not int or when < 0:
            raise ProfileError(ErrorCode.MESSAGE_INVALID, "paired_at is Unix seconds, ≥ 0")
        rec = PeerRecord(name, bytes(identity_key), bytes(pair_root_key), when, sas)
        with self._update() as peers:
            for p in peers:
                if p.name == name:
                    raise ProfileError(ErrorCode.PEER_EXISTS, f"a peer named {name!r} exists")
                if p.identity_key == rec.identity_key:
                    raise ProfileError(
                        ErrorCode.PEER_EXISTS, f"that device is already paired as {p.name!r}"
                    )
            peers.append(rec)
        return rec

    def rename_peer(self, old: str, new: str) -> PeerRecord:
        """Give a peer a new name (PEER_UNKNOWN, PEER_EXISTS, PEER_NAME_INVALID)."""
        new = check_peer_name(new)
        with self._update() as peers:
            rec = _find(peers, old)
            if any(p.name == new and p is not rec for p in peers):
                raise ProfileError(ErrorCode.PEER_EXISTS, f"a peer named {new!r} exists")
            renamed = PeerRecord(new, rec.identity_key, rec.pair_root_key, rec.paired_at, rec.sas)
            peers[peers.index(rec)] = renamed
        return renamed

    def forget_peer(self, key: str) -> PeerRecord:
        """Delete a peer's record, pair root key included (PEER_UNKNOWN)."""
        with self._update() as peers:
            rec = _find(peers, key)
            peers.remove(rec)
        return rec

    @contextlib.contextmanager
    def _update(self) -> Iterator[list[PeerRecord]]:
        with _locked(self.path, self.lock_timeout):
            _remove_stale_temps(self.path)
            peers = self.peers()
            before = list(peers)
            yield peers
            if peers != before:
                atomic_write(self.path / PEERS_FILE, _encode_peers(peers))


def _find(peers: list[PeerRecord], key: str) -> PeerRecord:
    for p in peers:
        if p.name == key:
            return p
    try:
        ident = parse_device_id(key)
    except RemoteProtocolError:
        ident = None
    for p in peers:
        if p.identity_key == ident:
            return p
    raise ProfileError(ErrorCode.PEER_UNKNOWN, f"no paired peer named {key!r}")


def _remove_stale_temps(home: Path) -> None:
    """Delete temp files a dead writer left (p4-02 §3.4.3). Call only while holding the lock:
    writers create temp files only under it, so any found then is stale (and may hold a seed)."""
    for name in os.listdir(home):
        if name.startswith(_TMP_PREFIX):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(home / name)


def _locked(home: Path, timeout: float) -> contextlib.AbstractContextManager[None]:
    """Hold an exclusive lock on ``<home>/lock`` (PROFILE_LOCKED after ``timeout`` s): ``flock``
    on POSIX, ``LockFileEx`` on byte 0 on Windows (p4-02 §3.4.4) [IDN-26]."""
    return locked_file(home / LOCK_FILE, timeout, f"another p4 process is changing {home}")


@contextlib.contextmanager
def locked_file(path: Path, timeout: float, busy: str) -> Iterator[None]:
    """Hold an exclusive lock on the lock file ``path`` (created 0600; a symlink, FIFO or other
    non-regular file in its place is refused); PROFILE_LOCKED with ``busy`` after ``timeout`` s."""
    with contextlib.suppress(FileNotFoundError):
        _check_type(path, os.lstat(path), is_dir=False)
    try:
        fd = os.open(path, _platform.OPEN_LOCK, 0o600)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ProfileError(ErrorCode.PROFILE_INSECURE, f"{path} is a symbolic link") from None
        raise
    try:
        _check_type(path, os.fstat(fd), is_dir=False)
        deadline = time.monotonic() + timeout
        while not _platform.try_lock(fd):
            if time.monotonic() >= deadline:
                raise ProfileError(ErrorCode.PROFILE_LOCKED, f"{busy}; try again")
            time.sleep(0.02)
        try:
            yield
        finally:
            _platform.unlock(fd)
    finally:
        os.close(fd)
