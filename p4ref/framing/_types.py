"""The frame-type registry of p4-01-framing-v1 §4.3, as data.

``tools/spec_check.py`` reads the ``frame-types`` registry tables out of ``spec/*.md`` and fails
when they differ from :data:`REGISTRY`; edit both together.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum, StrEnum

__all__ = [
    "GREASE_TYPES",
    "HEADER_LEN",
    "IGNORABLE_RANGE",
    "MAX_BODY_SIZE",
    "MAX_FRAME_SIZE",
    "REGISTRY",
    "RESERVED_TYPES",
    "VERSION",
    "BodyKind",
    "FrameType",
    "Path",
    "TypeInfo",
]

VERSION = 1
HEADER_LEN = 5
#: Largest frame, header included, on every path (ARCHITECTURE decision 1: cross-stack safe).
MAX_FRAME_SIZE = 16384
MAX_BODY_SIZE = MAX_FRAME_SIZE - HEADER_LEN

#: Unassigned types in this range are discarded, not rejected (p4-01 §8).
IGNORABLE_RANGE = range(0xE0, 0xFF)
GREASE_TYPES = (0xEA, 0xFA)
RESERVED_TYPES = (0x00, 0xFF)


class Path(StrEnum):
    """Where a frame travels (p4-01 §3)."""

    TOR = "tor"  # a byte stream through an onion circuit: frames are concatenated
    DATACHANNEL = "datachannel"  # one frame per WebRTC data-channel message


class BodyKind(Enum):
    CBOR = "cbor"  # one deterministic CBOR map (p4-00 §5)
    BINARY = "binary"  # raw bytes, layout owned by the type's layer


class FrameType(IntEnum):
    ERROR = 0x01
    PING = 0x02
    PONG = 0x03
    PADDING = 0x04
    PAIR_PAKE = 0x10
    PAIR_CONFIRM = 0x11
    PAIR_IDENTITY = 0x12
    PAIR_DONE = 0x13
    RV_HELLO = 0x20
    RV_OFFER = 0x21
    RV_ANSWER = 0x22
    RV_BYE = 0x23
    SES_HELLO = 0x31
    SES_AUTH = 0x32
    SES_MSG = 0x33
    SES_ACK = 0x34
    SES_END = 0x35
    SES_SIGNAL = 0x36
    DATA = 0x40


@dataclass(frozen=True, slots=True)
class TypeInfo:
    body: BodyKind
    flags: int  # mask of the flag bits this type allows
    paths: frozenset[Path]
    owner: str  # the spec doc that defines the body


_BOTH = frozenset(Path)
_TOR = frozenset({Path.TOR})
_DC = frozenset({Path.DATACHANNEL})

REGISTRY: dict[FrameType, TypeInfo] = {
    FrameType.ERROR: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-01"),
    FrameType.PING: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-01"),
    FrameType.PONG: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-01"),
    FrameType.PADDING: TypeInfo(BodyKind.BINARY, 0x00, _BOTH, "p4-01"),
    FrameType.PAIR_PAKE: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-02"),
    FrameType.PAIR_CONFIRM: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-02"),
    FrameType.PAIR_IDENTITY: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-02"),
    FrameType.PAIR_DONE: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-02"),
    FrameType.RV_HELLO: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-03"),
    FrameType.RV_OFFER: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-03"),
    FrameType.RV_ANSWER: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-03"),
    FrameType.RV_BYE: TypeInfo(BodyKind.CBOR, 0x00, _TOR, "p4-03"),
    FrameType.SES_HELLO: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-04"),
    FrameType.SES_AUTH: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-04"),
    FrameType.SES_MSG: TypeInfo(BodyKind.BINARY, 0x00, _BOTH, "p4-04"),
    FrameType.SES_ACK: TypeInfo(BodyKind.BINARY, 0x00, _BOTH, "p4-04"),
    FrameType.SES_END: TypeInfo(BodyKind.CBOR, 0x00, _BOTH, "p4-04"),
    FrameType.SES_SIGNAL: TypeInfo(BodyKind.BINARY, 0x00, _BOTH, "p4-04"),
    FrameType.DATA: TypeInfo(BodyKind.BINARY, 0x01, _DC, "p4-05"),
}

#: DATA flag: the last DATA frame of a channel message (p4-01 §4.5).
FLAG_FIN = 0x01
