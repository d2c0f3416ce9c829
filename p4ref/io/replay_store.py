"""Per-peer rendezvous high-water marks on disk (p4-03 §8.3, §12) [RDV-52].

The rendezvous machine refuses an OFFER whose generation is not above ``G``, the highest
generation it knows of; ``G`` starts at the machine's ``last_generation`` config.  Kept only in
memory, ``G`` falls back to 0 when the process restarts, and an OFFER recorded earlier would again
be "new".  This store keeps ``last_generation`` per peer identity key across restarts: the driver
(:mod:`p4ref.io.signal`) loads it into every machine of that peer and advances it, *before* it
answers or sends an OFFER, to the generation agreed.

File (default ``<profile home>/replay.json``, mode 0600)::

    {"format": "p4-replay", "version": 1,
     "peers": {"<peer identity key, 64 lowercase hex>": {"last_generation": <0 … 2^64-1>}}}

- Writes are atomic and durable (the profile store's :func:`~p4ref.io.store.atomic_write`: temp
  file, ``fsync``, replace, ``fsync`` of the directory), under an exclusive lock on
  ``<file>.lock`` (:func:`~p4ref.io.store.locked_file`) so two processes never lose each other's
  update.  A crash leaves the old file or the new one.
- Reads are strict: anything that is not exactly this format (not a regular file, over 1 MiB, not
  UTF-8 JSON, duplicate keys, an unknown key, a value out of range, …) raises
  :class:`ReplayStoreError` with ``PROFILE_CORRUPT`` and the file is never rewritten, so a
  corrupt mark is never silently reset to 0 (which would re-open the replay window).
- The mark only grows: :meth:`ReplayStore.advance` keeps the larger of the stored and the new
  generation.

The session layer (p4-04) will own generations; until then the signalling driver is the writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from p4ref.errors import ErrorCode, P4Error
from p4ref.io.store import ProfileError, atomic_write, locked_file, read_private_file

__all__ = ["FORMAT", "REPLAY_FILE", "VERSION", "ReplayStore", "ReplayStoreError"]

REPLAY_FILE = "replay.json"
FORMAT = "p4-replay"
VERSION = 1
MAX_FILE_BYTES = 1 << 20
LOCK_TIMEOUT = 10.0  # seconds; a writer holds the lock for one small write
_U64_MAX = (1 << 64) - 1
_HEX = frozenset("0123456789abcdef")


class ReplayStoreError(P4Error):
    """The replay file is unreadable or not in the format above (``PROFILE_CORRUPT``)."""


def _corrupt(path: Path, why: str) -> ReplayStoreError:
    return ReplayStoreError(ErrorCode.PROFILE_CORRUPT, f"{path}: {why}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _peer_key(peer_pub: bytes) -> str:
    if not isinstance(peer_pub, bytes | bytearray) or len(peer_pub) != 32:
        raise P4Error(ErrorCode.RDV_KEY_INVALID, "peer identity key is 32 bytes")
    return bytes(peer_pub).hex()


class ReplayStore:
    """``last_generation`` per peer identity key, in one JSON file (see the module docstring)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------------ reading

    def _read(self) -> dict[str, int]:
        try:
            raw = read_private_file(self.path)
        except ProfileError as exc:  # not a regular file, a symlink, a FIFO, wrong owner/mode
            raise _corrupt(self.path, exc.message) from None
        if raw is None:
            return {}
        if len(raw) > MAX_FILE_BYTES:
            raise _corrupt(self.path, f"larger than {MAX_FILE_BYTES} bytes")
        try:
            doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _corrupt(self.path, f"not JSON ({type(exc).__name__})") from None
        return self._validate(doc)

    def _validate(self, doc: object) -> dict[str, int]:
        if not isinstance(doc, dict) or set(doc) != {"format", "version", "peers"}:
            raise _corrupt(self.path, "expected keys format, version, peers")
        if doc["format"] != FORMAT:
            raise _corrupt(self.path, f"format is not {FORMAT!r}")
        if type(doc["version"]) is not int or doc["version"] != VERSION:
            raise _corrupt(self.path, f"version is not {VERSION}")
        peers = doc["peers"]
        if not isinstance(peers, dict):
            raise _corrupt(self.path, "peers is not an object")
        out: dict[str, int] = {}
        for key, rec in peers.items():
            if len(key) != 64 or not set(key) <= _HEX:
                raise _corrupt(self.path, "a peer key is not 64 lowercase hex digits")
            if not isinstance(rec, dict) or set(rec) != {"last_generation"}:
                raise _corrupt(self.path, "a peer record is not {last_generation}")
            g = rec["last_generation"]
            if type(g) is not int or not 0 <= g <= _U64_MAX:
                raise _corrupt(self.path, "last_generation is not 0 … 2^64-1")
            out[key] = g
        return out

    def last_generation(self, peer_pub: bytes) -> int:
        """The persisted mark for ``peer_pub`` (0 for a peer never seen)."""
        return self._read().get(_peer_key(peer_pub), 0)

    # ------------------------------------------------------------------------ writing

    def _write(self, peers: dict[str, int]) -> None:
        doc = {"format": FORMAT, "version": VERSION,
               "peers": {k: {"last_generation": peers[k]} for k in sorted(peers)}}
        atomic_write(self.path, (json.dumps(doc, indent=1) + "\n").encode("utf-8"))

    def advance(self, peer_pub: bytes, generation: int) -> int:
        """Raise the mark of ``peer_pub`` to ``generation`` if it is higher; return the mark.
        Durable when it returns; a corrupt file raises and is left untouched."""
        key = _peer_key(peer_pub)
        if type(generation) is not int or not 0 <= generation <= _U64_MAX:
            raise P4Error(ErrorCode.MESSAGE_INVALID, "generation is 0 … 2^64-1")
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with locked_file(lock, LOCK_TIMEOUT, f"another p4 process is writing {self.path}"):
            peers = self._read()
            if generation <= peers.get(key, -1):
                return peers[key]
            peers[key] = generation
            self._write(peers)
            return generation
