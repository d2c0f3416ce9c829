"""Channel items: the content of one session message (p4-05 §5).

Every item is one p4-04 SES_MSG payload (0 … 16371 bytes): a type byte, then a body.

====== ======= ====== =====================================================================
0x01   OPEN    cbor   ``{1: chan, 2: name}``: the sender opens channel ``chan`` [CHN-18]
0x02   DATA    binary ``Flags (8) || Chan (64) || Offset (64) || Data``: bytes of a channel
0x03   CREDIT  cbor   ``{1: chan, 2: limit}``: cumulative receive limit (a byte offset)
0x04   CLOSE   cbor   ``{1: chan, 2: final}``: the sender's half-close at its final offset
0x05   RESET   cbor   ``{1: chan, 2: code}``: both directions of ``chan`` aborted
====== ======= ====== =====================================================================

Control items are deterministic CBOR maps (p4-00 §5, §6); DATA is binary so that a sender writes
a fixed 18-byte header in front of a file chunk and a receiver slices the data out (§5.1).
Decoding checks, in order: the size, the type byte, then the body (CBOR rules in byte order,
then the schema; or the DATA header) [CHN-13].  Name rules are checked by the machine, not here
(a bad name refuses one channel, it does not break the item stream, §5.3).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeAlias

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import CborValue, decode_cbor_map, encode_cbor

__all__ = [
    "DATA_HEADER_LEN",
    "FLAG_END_OF_MESSAGE",
    "INITIAL_WINDOW",
    "MAX_CHAN_ID",
    "MAX_DATA",
    "MAX_ITEM",
    "MAX_NAME_LEN",
    "U64_MAX",
    "Close",
    "Credit",
    "Data",
    "Item",
    "ItemType",
    "Open",
    "Reset",
    "check_name",
    "decode_item",
    "encode_item",
    "name_ok",
]

#: Largest item: the largest SES_MSG payload of p4-04 (MAX_PAYLOAD) [CHN-1, CHN-13].
MAX_ITEM = 16371
#: Type (8) + Flags (8) + Chan (64) + Offset (64).
DATA_HEADER_LEN = 18
#: Most data bytes one DATA item carries.
MAX_DATA = MAX_ITEM - DATA_HEADER_LEN
#: Every channel direction starts with this credit limit, without any CREDIT item [CHN-25].
INITIAL_WINDOW = 16384
MAX_NAME_LEN = 64
#: Channel ids are 0 … 2^62 - 1 (a uint64 on the wire) [CHN-15, CHN-16].
MAX_CHAN_ID = (1 << 62) - 1
FLAG_END_OF_MESSAGE = 0x01
U64_MAX = (1 << 64) - 1
_HEAD = struct.Struct(">BBQQ")


class ItemType(IntEnum):
    OPEN = 0x01
    DATA = 0x02
    CREDIT = 0x03
    CLOSE = 0x04
    RESET = 0x05


@dataclass(frozen=True, slots=True)
class Open:
    chan: int
    name: str


@dataclass(frozen=True, slots=True)
class Data:
    chan: int
    offset: int  # channel byte offset of data[0]
    data: bytes  # at least one byte [CHN-11]
    end_of_message: bool


@dataclass(frozen=True, slots=True)
class Credit:
    chan: int
    limit: int  # cumulative: the sender of CREDIT accepts bytes below this offset


@dataclass(frozen=True, slots=True)
class Close:
    chan: int
    final: int  # the sender's total bytes on this channel


@dataclass(frozen=True, slots=True)
class Reset:
    chan: int
    code: int  # 0 … 65535


Item: TypeAlias = Open | Data | Credit | Close | Reset

_CBOR_KEYS: dict[ItemType, tuple[str, str]] = {
    ItemType.OPEN: ("chan", "name"),
    ItemType.CREDIT: ("chan", "limit"),
    ItemType.CLOSE: ("chan", "final"),
    ItemType.RESET: ("chan", "code"),
}
_CLASSES: dict[ItemType, type[Open] | type[Credit] | type[Close] | type[Reset]] = {
    ItemType.OPEN: Open, ItemType.CREDIT: Credit, ItemType.CLOSE: Close, ItemType.RESET: Reset,
}
_TYPE_OF: dict[type, ItemType] = {Open: ItemType.OPEN, Data: ItemType.DATA,
                                  Credit: ItemType.CREDIT, Close: ItemType.CLOSE,
                                  Reset: ItemType.RESET}


def name_ok(name: str) -> bool:
    """§5.3: 1 … 64 characters, each visible ASCII 0x21 … 0x7E [CHN-8]."""
    return 1 <= len(name) <= MAX_NAME_LEN and all(0x21 <= ord(c) <= 0x7E for c in name)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name_ok(name):
        raise LocalProtocolError(ErrorCode.CHAN_NAME_INVALID, f"channel name {name!r}")
    return name


def _u64(value: object) -> bool:
    return type(value) is int and 0 <= value <= U64_MAX


def _field_ok(item_type: ItemType, key: str, value: object) -> bool:
    if key == "name":
        return isinstance(value, str)
    if key == "code":
        return type(value) is int and 0 <= value <= 0xFFFF
    return _u64(value)


def encode_item(item: Item) -> bytes:
    """The bytes of one item; refuses (LocalProtocolError) what a receiver would reject."""
    itype = _TYPE_OF.get(type(item))
    if itype is None:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"not an item: {item!r}")
    if isinstance(item, Data):
        if not (_u64(item.chan) and _u64(item.offset)) or item.offset + len(item.data) > U64_MAX:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "DATA chan/offset out of range")
        if not 1 <= len(item.data) <= MAX_DATA:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID,
                                     f"DATA carries 1 … {MAX_DATA} bytes, not {len(item.data)}")
        flags = FLAG_END_OF_MESSAGE if item.end_of_message else 0
        return _HEAD.pack(itype, flags, item.chan, item.offset) + bytes(item.data)
    body: dict[int, CborValue] = {}
    for key_no, key in enumerate(_CBOR_KEYS[itype], start=1):
        value = getattr(item, key)
        if not _field_ok(itype, key, value):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{itype.name} {key}={value!r}")
        body[key_no] = value
    if isinstance(item, Open):
        check_name(item.name)
    return bytes([itype]) + encode_cbor(body)


_ITEM_TYPES = {int(t): t for t in ItemType}


def decode_item(raw: bytes) -> Item:
    """One item, checked in the order of §5.5 [CHN-13]; DecodeError otherwise."""
    raw = bytes(raw)
    if not raw:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, "empty item")
    if len(raw) > MAX_ITEM:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, f"item of {len(raw)} bytes > {MAX_ITEM}")
    itype = _ITEM_TYPES.get(raw[0])
    if itype is None:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, f"unknown item type 0x{raw[0]:02x}")
    if itype is ItemType.DATA:
        if len(raw) < DATA_HEADER_LEN + 1:
            raise DecodeError(ErrorCode.MESSAGE_INVALID, "DATA shorter than header + 1 byte")
        _, flags, chan, offset = _HEAD.unpack_from(raw)
        if flags & ~FLAG_END_OF_MESSAGE:
            raise DecodeError(ErrorCode.MESSAGE_INVALID, f"DATA flags 0x{flags:02x}")
        data = raw[DATA_HEADER_LEN:]
        if offset + len(data) > U64_MAX:
            raise DecodeError(ErrorCode.MESSAGE_INVALID, "DATA ends beyond 2^64 - 1")
        return Data(int(chan), int(offset), data, bool(flags & FLAG_END_OF_MESSAGE))
    body = decode_cbor_map(raw[1:])
    keys = _CBOR_KEYS[itype]
    if set(body) != {1, 2}:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{itype.name}: keys {sorted(body)}")
    for key_no, key in enumerate(keys, start=1):
        if not _field_ok(itype, key, body[key_no]):
            raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{itype.name}: key {key_no} invalid")
    cls = _CLASSES[itype]
    return cls(body[1], body[2])  # type: ignore[arg-type]
