"""Pairing message codec (p4-02 §6): dataclass ↔ frame with a canonical CBOR body.

Each body is a CBOR map with small unsigned-integer keys.  Decoding is strict: the framing layer
has already rejected non-canonical CBOR; here a missing key, an extra key, a wrong type or a wrong
length is ``MESSAGE_INVALID`` [PAIR-22], and an unknown version is ``VERSION_UNSUPPORTED``.
The machine never sees a CBOR map, only these dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DecodeError, ErrorCode
from ..framing import CborValue, Frame, FrameType, decode_cbor_map, encode_cbor
from ._crypto import COMMITMENT_LEN, ELEMENT_LEN, IDENTITY_CT_LEN, MAC_LEN, PROTOCOL_VERSION

__all__ = [
    "Message",
    "PairConfirm",
    "PairDone",
    "PairIdentity",
    "PairPake",
    "decode_message",
    "encode_message",
]


@dataclass(frozen=True, slots=True)
class PairPake:
    """PAIR_PAKE (0x10): ``{1: version uint = 1, 2: element bstr(32)}``."""

    element: bytes
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class PairConfirm:
    """PAIR_CONFIRM (0x11): ``{1: mac bstr(32), ?2: commitment bstr(32)}``.

    ``mac`` is cA or cB of RFC 9382 §4.  The inviter's PAIR_CONFIRM carries its identity
    commitment (key 2, p4-02 §7.5); the accepter's has none.  The codec accepts both shapes;
    which one a role must receive is the machine's check.
    """

    mac: bytes
    commitment: bytes | None = None


@dataclass(frozen=True, slots=True)
class PairIdentity:
    """PAIR_IDENTITY (0x12): ``{1: ciphertext bstr(154)}`` — the sealed identity."""

    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class PairDone:
    """PAIR_DONE (0x13): ``{1: mac bstr(32)}``."""

    mac: bytes


Message = PairPake | PairConfirm | PairIdentity | PairDone


def encode_message(msg: Message) -> Frame:
    body: dict[int, CborValue]
    if isinstance(msg, PairPake):
        return Frame(FrameType.PAIR_PAKE, 0, encode_cbor({1: msg.version, 2: msg.element}))
    if isinstance(msg, PairConfirm):
        body, ftype = {1: msg.mac}, FrameType.PAIR_CONFIRM
        if msg.commitment is not None:
            body[2] = msg.commitment
    elif isinstance(msg, PairIdentity):
        body, ftype = {1: msg.ciphertext}, FrameType.PAIR_IDENTITY
    else:
        body, ftype = {1: msg.mac}, FrameType.PAIR_DONE
    return Frame(ftype, 0, encode_cbor(body))


_PAIRING_TYPES = frozenset(
    {FrameType.PAIR_PAKE, FrameType.PAIR_CONFIRM, FrameType.PAIR_IDENTITY, FrameType.PAIR_DONE}
)


def _invalid(ftype: FrameType, why: str) -> DecodeError:
    return DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: {why}")


def _bstr(fields: dict[int, CborValue], key: int, length: int, ftype: FrameType) -> bytes:
    value = fields.get(key)
    if not isinstance(value, bytes) or len(value) != length:
        raise _invalid(ftype, f"key {key} must be a {length}-byte string")
    return value


def decode_message(frame: Frame) -> Message:
    """Decode a pairing frame's body (the frame header was checked by the framing codec).

    Raises:
        DecodeError: UNEXPECTED_MESSAGE for a frame type that is not a pairing message (any
            other type, assigned or not); a CBOR_* code from the framing layer; MESSAGE_INVALID;
            VERSION_UNSUPPORTED.
    """
    if frame.type not in _PAIRING_TYPES:
        raise DecodeError(ErrorCode.UNEXPECTED_MESSAGE, f"frame type 0x{frame.type:02x}")
    ftype = FrameType(frame.type)
    fields = decode_cbor_map(frame.body)
    if ftype is FrameType.PAIR_PAKE:
        allowed: tuple[set[int], ...] = ({1, 2},)
    elif ftype is FrameType.PAIR_CONFIRM:
        allowed = ({1}, {1, 2})
    else:
        allowed = ({1},)
    if set(fields) not in allowed:
        raise _invalid(ftype, f"keys must be exactly one of {[sorted(k) for k in allowed]}")
    if ftype is FrameType.PAIR_PAKE:
        version = fields[1]
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise _invalid(ftype, "version must be an unsigned integer")
        element = _bstr(fields, 2, ELEMENT_LEN, ftype)
        if version != PROTOCOL_VERSION:
            raise DecodeError(ErrorCode.VERSION_UNSUPPORTED, f"pairing version {version}")
        return PairPake(element, version)
    if ftype is FrameType.PAIR_CONFIRM:
        mac = _bstr(fields, 1, MAC_LEN, ftype)
        commitment = _bstr(fields, 2, COMMITMENT_LEN, ftype) if 2 in fields else None
        return PairConfirm(mac, commitment)
    if ftype is FrameType.PAIR_IDENTITY:
        return PairIdentity(_bstr(fields, 1, IDENTITY_CT_LEN, ftype))
    return PairDone(_bstr(fields, 1, MAC_LEN, ftype))
