"""References to file regions in the session outbox (p4-06 FIL-39, §8.8; p4-04 §4.2).

A p4-06 sender MUST NOT copy the file into an outbox (FIL-39).  The channel layer therefore
stores a channel item whose bytes come, in part, from the file being sent as a *reference*
(``SessionStore.append_outbox(..., ref=, size=)``): the item's other bytes (the p4-05 DATA
header, p4-06 record headers, a FILE_HASHES record), where its file bytes are, and a digest of
those file bytes.  The session machine still gets the whole item in memory until the peer
acknowledges it (bounded by the channel's credit window); only the durable copy is a reference.
When a link restarts, :class:`RegionReader` rebuilds the item from the file
(:func:`resolve_ref`).  A file that no longer holds exactly those bytes (changed, truncated,
gone, unreadable) raises :class:`SourceChanged`: a reference never yields different bytes.

Format (one ASCII line, at most ``MAX_REF`` bytes of the store)::

    p4f1 <digest> <piece>,<piece>,... <path>

``digest``: BLAKE2b-128, hex, of the item's file bytes in item order (the change detector: it
is exact, so a file touched without changing those bytes still resolves, and one changed
without changing its size or modification time does not); ``piece``: in item order, either
``=<hex>`` (literal bytes) or ``<offset>+<length>`` (file bytes); ``path``: the absolute path as
bytes (``os.fsencode``), percent-encoded (``urllib.parse.quote``, ``/`` kept), so that any file
name is ASCII text.  Example (a DATA item: its 18-byte header, then 16353 file bytes)::

    p4f1 0f3e…9a =020000…0000c000 49152+16353 /home/ann/photo.jpg

The outbox is local state: this format is the reference implementation's, not a wire format.
"""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ErrorCode, P4Error
from .session_store import MAX_REF

__all__ = [
    "REF_SCHEME",
    "FileRegions",
    "RegionReader",
    "SourceChanged",
    "encode_ref",
    "is_file_ref",
    "ref_literal",
    "resolve_ref",
]

REF_SCHEME = "p4f1"
_DIGEST_SIZE = 16


class SourceChanged(P4Error):
    """The file no longer holds the bytes a reference names (FILE_SOURCE_CHANGED)."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.FILE_SOURCE_CHANGED, message)


@dataclass(frozen=True, slots=True)
class FileRegions:
    """Which bytes of one channel write were read from a file: ``spans`` of ``(position in
    the written bytes, offset in the file, length)``, in increasing, non-overlapping position
    order.  ``path`` is the file's absolute path."""

    path: str
    spans: tuple[tuple[int, int, int], ...]

    def __post_init__(self) -> None:
        if not os.path.isabs(self.path):
            raise ValueError("a file region names an absolute path")
        end = 0
        for pos, off, n in self.spans:
            if pos < end or off < 0 or n <= 0:
                raise ValueError(f"file spans out of order or empty: {self.spans!r}")
            end = pos + n

    def within(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """The spans clipped to the written bytes ``[start, end)``, positions from ``start``."""
        out = []
        for pos, off, n in self.spans:
            a, b = max(pos, start), min(pos + n, end)
            if a < b:
                out.append((a - start, off + (a - pos), b - a))
        return out


def _digest(parts: Sequence[bytes | memoryview]) -> str:
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    for p in parts:
        h.update(p)
    return h.hexdigest()


def encode_ref(item: bytes, spans: Sequence[tuple[int, int, int]], path: str) -> str | None:
    """The reference for ``item`` whose bytes at ``spans`` (``(position in the item, file
    offset, length)``, in order) were read from ``path``; None when it would not be smaller
    than the item itself or would exceed :data:`MAX_REF` (store the item as it is then)."""
    if not spans:
        return None
    view = memoryview(item)
    pieces: list[str] = []
    data: list[memoryview] = []
    at = 0
    for pos, off, n in spans:
        if pos < at or pos + n > len(item) or n <= 0:
            raise ValueError(f"spans out of order or outside the item: {spans!r}")
        if pos > at:
            pieces.append("=" + view[at:pos].hex())
        pieces.append(f"{off}+{n}")
        data.append(view[pos:pos + n])
        at = pos + n
    if at < len(item):
        pieces.append("=" + view[at:].hex())
    ref = " ".join((REF_SCHEME, _digest(data), ",".join(pieces),
                    urllib.parse.quote(os.fsencode(path), safe="/")))
    if len(ref) >= min(len(item), MAX_REF + 1):
        return None
    return ref


def is_file_ref(ref: str) -> bool:
    return ref.startswith(REF_SCHEME + " ")


def _parse(ref: str) -> tuple[str, list[bytes | tuple[int, int]], str]:
    try:
        scheme, digest, pieces, quoted = ref.split(" ", 3)
        if scheme != REF_SCHEME or len(digest) != 2 * _DIGEST_SIZE:
            raise ValueError("scheme")
        out: list[bytes | tuple[int, int]] = []
        for p in pieces.split(","):
            if p.startswith("="):
                out.append(bytes.fromhex(p[1:]))
            else:
                off, n = (int(x) for x in p.split("+"))
                if off < 0 or n <= 0:
                    raise ValueError("region")
                out.append((off, n))
        return digest, out, os.fsdecode(urllib.parse.unquote_to_bytes(quoted))
    except ValueError as exc:
        raise P4Error(ErrorCode.PROFILE_CORRUPT, f"not a file reference: {ref[:80]!r}") from exc


def ref_literal(ref: str) -> bytes:
    """The literal bytes the reference's item begins with (up to its first file bytes)."""
    _, pieces, _ = _parse(ref)
    first = pieces[0]
    return first if isinstance(first, bytes) else b""


class RegionReader:
    """Reads the regions of many references, each file opened once; :meth:`close` after."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def _read(self, path: str, offset: int, length: int) -> bytes:
        fd = self._fds.get(path)
        if fd is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
            self._fds[path] = fd
        if sys.platform == "win32":  # no pread; only this reader uses the descriptor
            os.lseek(fd, offset, os.SEEK_SET)
            return os.read(fd, length)
        return os.pread(fd, length, offset)

    def resolve(self, ref: str, size: int) -> bytes:
        """The item ``ref`` names, of ``size`` bytes; :class:`SourceChanged` when the file does
        not hold its bytes any more; PROFILE_CORRUPT when ``ref`` is not a reference."""
        digest, pieces, path = _parse(ref)
        out: list[bytes] = []
        data: list[bytes] = []
        for p in pieces:
            if isinstance(p, bytes):
                out.append(p)
                continue
            off, n = p
            try:
                got = self._read(path, off, n)
            except OSError as exc:
                raise SourceChanged(f"{path}: {exc.strerror or exc}") from None
            if len(got) != n:
                raise SourceChanged(f"{path} is shorter than {off + n} bytes now")
            out.append(got)
            data.append(got)
        if _digest(data) != digest:
            raise SourceChanged(f"{path} changed since it was sent")
        item = b"".join(out)
        if len(item) != size:
            raise P4Error(ErrorCode.PROFILE_CORRUPT,
                          f"a file reference of {len(item)} bytes, stored as {size}")
        return item

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def resolve_ref(ref: str, size: int) -> bytes:
    """:meth:`RegionReader.resolve` for one reference."""
    r = RegionReader()
    try:
        return r.resolve(ref, size)
    finally:
        r.close()
