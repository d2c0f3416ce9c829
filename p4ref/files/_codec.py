"""File-transfer records, names and hashes (spec/p4-06-files-v1.md §5–§7).

A transfer runs on one P⁴ channel (p4-05).  Each direction of the channel carries a sequence of
*records*, ``Version (8) = 1 || Type (8) || Flags (8) = 0 || Length (16) || Body`` [FIL-12],
[FIL-47] (the layout of a p4-01 frame header, with this document's own types):

============= ====== ========= ============================================================
FILE_OFFER    0x10   cbor      sender → receiver: name, size, block size, root [FIL-16]
FILE_ACCEPT   0x11   cbor      receiver → sender: the offset to send from [FIL-17]
FILE_REFUSE   0x12   cbor      receiver → sender: a refusal code [FIL-18]
FILE_HASHES   0x13   cbor      sender → receiver: leaf hashes of the next blocks [FIL-19]
FILE_DATA     0x14   binary    sender → receiver: 1..32768 bytes of the file, in order
FILE_COMPLETE 0x15   cbor      receiver → sender: every byte is verified and stored (``{}``)
FILE_CANCEL   0x16   cbor      either way: the transfer ends with a code [FIL-20]
============= ====== ========= ============================================================

Hashes (§6): ``leaf_k = SHA-256(block k)``; ``chain_0 = SHA-256("P4-FILES-v1" || 0x00 ||
u64(size) || u32(block_size))``; ``chain_{k+1} = SHA-256(chain_k || leaf_k)``; the *root* is
``chain_n`` for the ``n = ceil(size / block_size)`` blocks.  A receiver that persists
``(verified, chain)`` resumes without re-reading its partial file.

Decoding a record applies the checks of §7.4 in order; the machines never see CBOR maps, only
the dataclasses below.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import CborValue, decode_cbor_map, encode_cbor

__all__ = [
    "CHAIN_CONTEXT",
    "HASH_LEN",
    "HEADER_LEN",
    "MAX_BLOCK_SIZE",
    "MAX_CBOR_BODY",
    "MAX_CODE",
    "MAX_DATA_LEN",
    "MAX_HASHES_PER_RECORD",
    "MAX_NAME_BYTES",
    "MAX_SIZE",
    "MIN_BLOCK_SIZE",
    "VERSION",
    "Accept",
    "Cancel",
    "Complete",
    "Data",
    "Hashes",
    "Offer",
    "Record",
    "RecordType",
    "Refuse",
    "block_count",
    "block_length",
    "chain_init",
    "chain_step",
    "check_name",
    "decode_body",
    "decode_record",
    "encode_record",
    "leaf_hashes",
    "root_of",
]

HEADER_LEN = 5
#: The Version byte of every v1 record [FIL-47].
VERSION = 1
#: Largest FILE_DATA body (§7.1) [FIL-13].
MAX_DATA_LEN = 32768
#: Largest body of every other record type (§7.1) [FIL-13].
MAX_CBOR_BODY = 4096
MIN_BLOCK_SIZE = 1 << 10
MAX_BLOCK_SIZE = 1 << 22
#: Largest file size: 2^63 − 1, the largest signed 64-bit file offset (§7.3).
MAX_SIZE = (1 << 63) - 1
MAX_NAME_BYTES = 255
MAX_HASHES_PER_RECORD = 64
MAX_CODE = 0xFFFF
HASH_LEN = 32
CHAIN_CONTEXT = b"P4-FILES-v1"


class RecordType(IntEnum):
    """Record types (§7.2); any other value is FILE_RECORD_INVALID [FIL-14]."""

    FILE_OFFER = 0x10
    FILE_ACCEPT = 0x11
    FILE_REFUSE = 0x12
    FILE_HASHES = 0x13
    FILE_DATA = 0x14
    FILE_COMPLETE = 0x15
    FILE_CANCEL = 0x16


# ------------------------------------------------------------------------------------ names

#: Code points a name must not contain besides the C0 controls, DEL and C1 controls (§5)
#: [FIL-7]: path separators, the drive / stream separator, and the bidirectional formatting
#: characters that reorder how a name is displayed.
_FORBIDDEN = frozenset("/\\:") | frozenset(
    chr(c) for c in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
)


def check_name(name: str) -> None:
    """Raise FILE_NAME_INVALID unless ``name`` obeys §5 [FIL-6]–[FIL-9].

    ``name`` is the decoded text (CBOR already checked its UTF-8); the rules use explicit code
    point sets only, no Unicode tables, no normalisation and no case folding.
    """
    raw = name.encode("utf-8", "surrogatepass")
    if not 1 <= len(raw) <= MAX_NAME_BYTES:
        raise DecodeError(ErrorCode.FILE_NAME_INVALID, f"name is {len(raw)} bytes [FIL-6]")
    for ch in name:
        c = ord(ch)
        if c < 0x20 or 0x7F <= c <= 0x9F or 0xD800 <= c <= 0xDFFF or ch in _FORBIDDEN:
            raise DecodeError(ErrorCode.FILE_NAME_INVALID, f"character U+{c:04X} [FIL-7]")
    if name[-1] in ". ":
        raise DecodeError(ErrorCode.FILE_NAME_INVALID, "name ends in '.' or space [FIL-8]")


# ----------------------------------------------------------------------------------- hashes


def block_count(size: int, block_size: int) -> int:
    """``n = ceil(size / block_size)`` (§6.1)."""
    return -(-size // block_size)


def block_length(index: int, size: int, block_size: int) -> int:
    """Bytes in block ``index``: ``block_size``, or less for the last block (§6.1)."""
    return min(block_size, size - index * block_size)


def chain_init(size: int, block_size: int) -> bytes:
    """``chain_0`` (§6.2) [FIL-11]."""
    return hashlib.sha256(
        CHAIN_CONTEXT + b"\x00" + struct.pack(">QI", size, block_size)
    ).digest()


def chain_step(chain: bytes, leaf: bytes) -> bytes:
    """``chain_{k+1} = SHA-256(chain_k || leaf_k)`` (§6.2) [FIL-11]."""
    return hashlib.sha256(chain + leaf).digest()


def leaf_hashes(data: bytes, block_size: int) -> list[bytes]:
    """The leaf hash of every block of ``data`` (§6.1) [FIL-10]."""
    return [hashlib.sha256(data[i : i + block_size]).digest()
            for i in range(0, len(data), block_size)]


def root_of(size: int, block_size: int, leaves: list[bytes]) -> tuple[bytes, list[bytes]]:
    """``(root, [chain_0 … chain_n])`` for a file's leaves (§6.2)."""
    chains = [chain_init(size, block_size)]
    for leaf in leaves:
        chains.append(chain_step(chains[-1], leaf))
    return chains[-1], chains


# ---------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Offer:
    """FILE_OFFER (0x10) [FIL-16]."""

    name: str
    size: int
    block_size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class Accept:
    """FILE_ACCEPT (0x11): send from ``offset`` [FIL-17]."""

    offset: int


@dataclass(frozen=True, slots=True)
class Refuse:
    """FILE_REFUSE (0x12): ``code`` is an error-code registry value [FIL-18]."""

    code: int


@dataclass(frozen=True, slots=True)
class Hashes:
    """FILE_HASHES (0x13): the leaves of blocks ``first`` … ``first + len(hashes) − 1``."""

    first: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Data:
    """FILE_DATA (0x14): the next ``1 … MAX_DATA_LEN`` bytes of the file."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Complete:
    """FILE_COMPLETE (0x15): every byte is verified against the root and stored."""


@dataclass(frozen=True, slots=True)
class Cancel:
    """FILE_CANCEL (0x16): the transfer ends; ``code`` says why [FIL-20]."""

    code: int


Record: TypeAlias = Offer | Accept | Refuse | Hashes | Data | Complete | Cancel

_TYPE_OF: dict[type, RecordType] = {
    Offer: RecordType.FILE_OFFER, Accept: RecordType.FILE_ACCEPT,
    Refuse: RecordType.FILE_REFUSE, Hashes: RecordType.FILE_HASHES, Data: RecordType.FILE_DATA,
    Complete: RecordType.FILE_COMPLETE, Cancel: RecordType.FILE_CANCEL,
}

# Schemas (§7.3): key -> (name, CBOR type); every key is required.
_SCHEMA: dict[RecordType, dict[int, tuple[str, type]]] = {
    RecordType.FILE_OFFER: {1: ("name", str), 2: ("size", int), 3: ("block_size", int),
                            4: ("root", bytes)},
    RecordType.FILE_ACCEPT: {1: ("offset", int)},
    RecordType.FILE_REFUSE: {1: ("code", int)},
    RecordType.FILE_HASHES: {1: ("first", int), 2: ("hashes", list)},
    RecordType.FILE_COMPLETE: {},
    RecordType.FILE_CANCEL: {1: ("code", int)},
}


def _invalid(what: str) -> DecodeError:
    return DecodeError(ErrorCode.MESSAGE_INVALID, what)


def _fields(rtype: RecordType, body: dict[int, CborValue]) -> dict[str, CborValue]:
    schema = _SCHEMA[rtype]
    if set(body) != set(schema):
        raise _invalid(f"{rtype.name} keys {sorted(body)} != {sorted(schema)} [FIL-15]")
    out: dict[str, CborValue] = {}
    for key, (name, kind) in schema.items():
        value = body[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _invalid(f"{rtype.name} {name} is not {kind.__name__} [FIL-15]")
        if kind is int and not isinstance(value, bool) and isinstance(value, int) and value < 0:
            raise _invalid(f"{rtype.name} {name} is negative [FIL-15]")
        out[name] = value
    return out


def _uint(fields: dict[str, CborValue], name: str) -> int:
    value = fields[name]
    assert isinstance(value, int)
    return value


def _offer(f: dict[str, CborValue]) -> Offer:
    name, root = f["name"], f["root"]
    assert isinstance(name, str) and isinstance(root, bytes)
    size, bs = _uint(f, "size"), _uint(f, "block_size")
    if size > MAX_SIZE:
        raise _invalid(f"size {size} > 2^63 - 1 [FIL-16]")
    if not MIN_BLOCK_SIZE <= bs <= MAX_BLOCK_SIZE or bs & (bs - 1):
        raise _invalid(f"block_size {bs} [FIL-16]")
    if len(root) != HASH_LEN:
        raise _invalid("root is 32 bytes [FIL-16]")
    check_name(name)  # §7.4 step 8: after the schema
    return Offer(name, size, bs, root)


def _hashes(f: dict[str, CborValue]) -> Hashes:
    first, items = _uint(f, "first"), f["hashes"]
    assert isinstance(items, list)
    if first > MAX_SIZE:
        raise _invalid("first > 2^63 - 1 [FIL-19]")
    if not 1 <= len(items) <= MAX_HASHES_PER_RECORD:
        raise _invalid(f"{len(items)} hashes [FIL-19]")
    if not all(isinstance(h, bytes) and len(h) == HASH_LEN for h in items):
        raise _invalid("every hash is 32 bytes [FIL-19]")
    return Hashes(first, tuple(h for h in items if isinstance(h, bytes)))


def _code(f: dict[str, CborValue], rtype: RecordType) -> int:
    code = _uint(f, "code")
    if code > MAX_CODE:
        raise _invalid(f"{rtype.name} code {code} > 0xFFFF")
    return code


def decode_body(rtype: RecordType, body: bytes) -> Record:
    """The record of one complete body: §7.4 steps 6–8 (CBOR, schema, name)."""
    if rtype is RecordType.FILE_DATA:
        return Data(bytes(body))
    f = _fields(rtype, decode_cbor_map(body))
    if rtype is RecordType.FILE_OFFER:
        return _offer(f)
    if rtype is RecordType.FILE_ACCEPT:
        offset = _uint(f, "offset")
        if offset > MAX_SIZE:
            raise _invalid("offset > 2^63 - 1 [FIL-17]")
        return Accept(offset)
    if rtype is RecordType.FILE_REFUSE:
        return Refuse(_code(f, rtype))
    if rtype is RecordType.FILE_HASHES:
        return _hashes(f)
    if rtype is RecordType.FILE_COMPLETE:
        return Complete()
    return Cancel(_code(f, rtype))


def parse_header(head: bytes) -> tuple[RecordType, int]:
    """§7.4 steps 2–5 on a 5-byte header: ``(type, Length)``, or the first failing check's
    code: the version (VERSION_UNSUPPORTED), the type, the flags, the Length
    (FILE_RECORD_INVALID), before any of the body is buffered [FIL-13]."""
    if head[0] != VERSION:
        raise DecodeError(ErrorCode.VERSION_UNSUPPORTED, f"record version {head[0]} [FIL-47]")
    try:
        rtype = RecordType(head[1])
    except ValueError:
        raise DecodeError(ErrorCode.FILE_RECORD_INVALID,
                          f"record type 0x{head[1]:02x} [FIL-14]") from None
    if head[2] != 0:
        raise DecodeError(ErrorCode.FILE_RECORD_INVALID, f"flags 0x{head[2]:02x} [FIL-47]")
    length = int.from_bytes(head[3:5], "big")
    check_length(rtype, length)
    return rtype, length


def check_length(rtype: RecordType, length: int) -> None:
    """§7.4 step 5: the Length of a record of this type [FIL-13]."""
    if rtype is RecordType.FILE_DATA:
        if not 1 <= length <= MAX_DATA_LEN:
            raise DecodeError(ErrorCode.FILE_RECORD_INVALID, f"FILE_DATA of {length} bytes")
    elif length > MAX_CBOR_BODY:
        raise DecodeError(ErrorCode.FILE_RECORD_INVALID, f"{rtype.name} of {length} bytes")


def decode_record(unit: bytes) -> Record:
    """Decode ``unit``, which must hold exactly one record (§7.4; op ``files.decode``)."""
    if len(unit) < HEADER_LEN:
        raise DecodeError(ErrorCode.FILE_RECORD_INVALID, "shorter than a record header")
    rtype, length = parse_header(unit[:HEADER_LEN])
    if len(unit) != HEADER_LEN + length:
        raise DecodeError(ErrorCode.FILE_RECORD_INVALID,
                          f"{len(unit) - HEADER_LEN} body bytes, Length {length}")
    return decode_body(rtype, unit[HEADER_LEN:])


def _local(what: str, code: ErrorCode = ErrorCode.MESSAGE_INVALID) -> LocalProtocolError:
    return LocalProtocolError(code, what)


def encode_record(record: Record) -> bytes:
    """The bytes of one record; refuses what a decoder would reject [FIL-15] (p4-00 CNV-31)."""
    rtype = _TYPE_OF[type(record)]
    if isinstance(record, Data):
        body = bytes(record.data)
    else:
        try:
            decode_check = _encode_map(record)
        except DecodeError as exc:
            raise _local(exc.message, exc.code) from None
        body = decode_check
    try:
        check_length(rtype, len(body))
        decode_body(rtype, body)  # the encoder refuses exactly what a decoder rejects
    except DecodeError as exc:
        code = exc.code
        if code is ErrorCode.FILE_RECORD_INVALID:  # a DATA or body size is a schema limit
            code = ErrorCode.MESSAGE_INVALID
        raise _local(exc.message, code) from None
    return struct.pack(">BBBH", VERSION, rtype, 0, len(body)) + body


def _encode_map(record: Record) -> bytes:
    value: dict[int, CborValue]
    if isinstance(record, Offer):
        value = {1: record.name, 2: record.size, 3: record.block_size, 4: record.root}
    elif isinstance(record, Accept):
        value = {1: record.offset}
    elif isinstance(record, Refuse | Cancel):
        value = {1: record.code}
    elif isinstance(record, Hashes):
        value = {1: record.first, 2: list(record.hashes)}
    else:
        value = {}
    for v in value.values():
        if isinstance(v, int) and not 0 <= v < (1 << 64):
            raise _local(f"integer {v} out of range")
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise DecodeError(ErrorCode.FILE_NAME_INVALID, "name is not UTF-8") from None
    return encode_cbor(value)
