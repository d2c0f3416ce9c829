"""Rendezvous signalling messages: body schemas, signing, verification (p4-03 §6–§7).

Every message is one P⁴ frame on the ``tor`` path whose body is a deterministic CBOR map with
small integer keys; key 15 holds the Ed25519 signature.  The schema is exact: a missing key, an
unknown key, a wrong type or an out-of-range value is ``MESSAGE_INVALID`` [RDV-16].

Signature input [RDV-23]::

    "P4-RDV-v1" || u8(frame type) || sender_pub(32) || recipient_pub(32)
                || deterministic CBOR of the body map without key 15

The machines never see CBOR maps, only the dataclasses below.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeAlias

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import CborValue, Frame, FrameType, decode_cbor_map, encode_cbor
from ._derive import epoch_of

__all__ = [
    "FINGERPRINT_LEN",
    "INC_LEN",
    "KEY_SIG",
    "MAX_SDP_BYTES",
    "NONCE_LEN",
    "SIG_CONTEXT",
    "Answer",
    "Bye",
    "Hello",
    "Message",
    "Offer",
    "decode_message",
    "encode_message",
    "sign_message",
    "signature_input",
    "unsigned_body",
    "verify_message",
]

SIG_CONTEXT = b"P4-RDV-v1"
NONCE_LEN = 16
FINGERPRINT_LEN = 32
SIG_LEN = 64
PUB_LEN = 32
#: Largest SDP in bytes of UTF-8 [RDV-18].
MAX_SDP_BYTES = 8192
KEY_SIG = 15
_U64_MAX = (1 << 64) - 1
_UNSIGNED = b"\x00" * SIG_LEN
_NO_STREAM = b"\x00" * NONCE_LEN
#: Bytes of a session incarnation (p4-04 ``INC_LEN``) [RDV-59].
INC_LEN = 16
_NO_INC = b"\x00" * INC_LEN


@dataclass(frozen=True, slots=True)
class Hello:
    """RV_HELLO (0x20): proof of identity and freshness at the start of a stream [RDV-20]."""

    epoch: int
    nonce: bytes
    timestamp_ms: int
    sender_pub: bytes
    recipient_pub: bytes
    echo: bytes | None = None  # the nonce of the peer's HELLO this one answers [RDV-21]
    #: The sender's persisted high-water mark ``last_generation`` with the recipient [RDV-59].
    generation: int = 0
    #: The sender's session incarnation for the pair (p4-04 §9) [RDV-59].  The default (zeros)
    #: is only for codec-level callers.
    incarnation: bytes = _NO_INC
    signature: bytes = _UNSIGNED


@dataclass(frozen=True, slots=True)
class Offer:
    """RV_OFFER (0x21): start generation ``generation`` with this SDP offer."""

    epoch: int
    nonce: bytes
    generation: int
    sdp: str
    fingerprint: bytes
    last_rx: int
    #: The recipient's HELLO nonce on this stream [RDV-51].  The default (zeros) is only for
    #: codec-level callers; a receiver refuses it unless its own HELLO nonce is zero (fail-closed).
    stream_nonce: bytes = _NO_STREAM
    signature: bytes = _UNSIGNED


@dataclass(frozen=True, slots=True)
class Answer:
    """RV_ANSWER (0x22): accept the OFFER whose nonce is ``offer_nonce``."""

    epoch: int
    nonce: bytes
    generation: int
    sdp: str
    fingerprint: bytes
    last_rx: int
    offer_nonce: bytes
    #: The recipient's HELLO nonce on this stream [RDV-51].  The default (zeros) is only for
    #: codec-level callers; a receiver refuses it unless its own HELLO nonce is zero (fail-closed).
    stream_nonce: bytes = _NO_STREAM
    signature: bytes = _UNSIGNED


@dataclass(frozen=True, slots=True)
class Bye:
    """RV_BYE (0x23): the sender closes this rendezvous stream; ``reason`` is a registry code."""

    epoch: int
    nonce: bytes
    reason: int
    #: The recipient's HELLO nonce on this stream [RDV-51].  The default (zeros) is only for
    #: codec-level callers; a receiver refuses it unless its own HELLO nonce is zero (fail-closed).
    stream_nonce: bytes = _NO_STREAM
    signature: bytes = _UNSIGNED


Message: TypeAlias = Hello | Offer | Answer | Bye

# (field name, CBOR key, kind, optional).  kinds: "u64", "u16", "nonce", "pub", "fp", "sdp", "sig"
_Schema = tuple[tuple[str, int, str, bool], ...]
_COMMON: _Schema = (("epoch", 1, "u64", False), ("nonce", 2, "nonce", False))
# OFFER and ANSWER both describe one generation's direct path (p4-03 §6.2).
_SESSION: _Schema = (
    *_COMMON,
    ("generation", 3, "u64", False),
    ("sdp", 4, "sdp", False),
    ("fingerprint", 5, "fp", False),
    ("last_rx", 6, "u64", False),
)
# Every message after the HELLOs names the recipient's HELLO nonce on its stream [RDV-51].
_STREAM: tuple[str, int, str, bool] = ("stream_nonce", 8, "nonce", False)
_SCHEMAS: dict[FrameType, tuple[type[Any], _Schema]] = {
    FrameType.RV_HELLO: (
        Hello,
        (
            *_COMMON,
            ("timestamp_ms", 3, "u64", False),
            ("sender_pub", 4, "pub", False),
            ("recipient_pub", 5, "pub", False),
            ("echo", 6, "nonce", True),
            ("generation", 7, "u64", False),
            ("incarnation", 8, "inc", False),
            ("signature", KEY_SIG, "sig", False),
        ),
    ),
    FrameType.RV_OFFER: (
        Offer,
        (*_SESSION, _STREAM, ("signature", KEY_SIG, "sig", False)),
    ),
    FrameType.RV_ANSWER: (
        Answer,
        (
            *_SESSION,
            ("offer_nonce", 7, "nonce", False),
            _STREAM,
            ("signature", KEY_SIG, "sig", False),
        ),
    ),
    FrameType.RV_BYE: (
        Bye,
        (*_COMMON, ("reason", 3, "u16", False), _STREAM, ("signature", KEY_SIG, "sig", False)),
    ),
}
_TYPE_OF: dict[type[Any], FrameType] = {cls: t for t, (cls, _) in _SCHEMAS.items()}
_BYTES_LEN = {
    "nonce": NONCE_LEN, "pub": PUB_LEN, "fp": FINGERPRINT_LEN, "sig": SIG_LEN, "inc": INC_LEN,
}


def _valid(kind: str, value: object) -> bool:
    if kind in ("u64", "u16"):
        limit = _U64_MAX if kind == "u64" else 0xFFFF
        return type(value) is int and 0 <= value <= limit
    if kind == "sdp":
        return isinstance(value, str) and 0 < len(value.encode("utf-8")) <= MAX_SDP_BYTES
    return isinstance(value, bytes) and len(value) == _BYTES_LEN[kind]


def frame_type_of(msg: Message) -> FrameType:
    return _TYPE_OF[type(msg)]


def _to_map(msg: Message, *, with_sig: bool) -> dict[int, CborValue]:
    _, schema = _SCHEMAS[frame_type_of(msg)]
    out: dict[int, CborValue] = {}
    for name, key, kind, optional in schema:
        value = getattr(msg, name)
        if key == KEY_SIG and not with_sig:
            continue
        if value is None and optional:
            continue
        if not _valid(kind, value):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{name}={value!r} is not a {kind}")
        out[key] = value
    return out


def _check_hello_epoch(msg: Message, err: type[LocalProtocolError] | type[DecodeError]) -> None:
    if isinstance(msg, Hello) and epoch_of(msg.timestamp_ms // 1000) != msg.epoch:
        raise err(ErrorCode.MESSAGE_INVALID, "HELLO timestamp is not inside its epoch")


def unsigned_body(msg: Message) -> bytes:
    """Deterministic CBOR of ``msg``'s body map without key 15 (the signed part) [RDV-23]."""
    return encode_cbor(_to_map(msg, with_sig=False))


def signature_input(
    ftype: FrameType, body_without_sig: bytes, sender_pub: bytes, recipient_pub: bytes
) -> bytes:
    """The exact bytes signed [RDV-23]."""
    return (
        SIG_CONTEXT
        + bytes([int(ftype)])
        + bytes(sender_pub)
        + bytes(recipient_pub)
        + bytes(body_without_sig)
    )


def sign_message(msg: Message, identity: SigningKey, recipient_pub: bytes) -> Message:
    """Return ``msg`` with its Ed25519 signature filled in [RDV-24]."""
    _check_hello_epoch(msg, LocalProtocolError)
    data = signature_input(
        frame_type_of(msg), unsigned_body(msg), bytes(identity.verify_key), recipient_pub
    )
    signed: Message = replace(msg, signature=identity.sign(data).signature)
    return signed


def encode_message(msg: Message) -> Frame:
    """The frame carrying an already-signed ``msg``."""
    return Frame(int(frame_type_of(msg)), 0, encode_cbor(_to_map(msg, with_sig=True)))


def decode_message(frame: Frame) -> Message:
    """Schema-check a rendezvous frame's body; the signature is *not* verified here [RDV-16]."""
    try:
        ftype = FrameType(frame.type)
        cls, schema = _SCHEMAS[ftype]
    except (ValueError, KeyError):
        raise DecodeError(
            ErrorCode.UNEXPECTED_MESSAGE, f"type 0x{frame.type:02x} is not rendezvous"
        ) from None
    body = decode_cbor_map(frame.body)
    known = {key for _, key, _, _ in schema}
    extra = set(body) - known
    if extra:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: unknown keys {sorted(extra)}")
    values: dict[str, object] = {}
    for name, key, kind, optional in schema:
        if key not in body:
            if optional:
                values[name] = None
                continue
            raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: key {key} missing")
        if not _valid(kind, body[key]):
            raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: key {key} not a {kind}")
        values[name] = body[key]
    msg: Message = cls(**values)
    _check_hello_epoch(msg, DecodeError)
    return msg


def verify_message(msg: Message, sender_pub: bytes, recipient_pub: bytes) -> None:
    """Check ``msg``'s signature by ``sender_pub`` addressed to ``recipient_pub`` [RDV-24]."""
    data = signature_input(frame_type_of(msg), unsigned_body(msg), sender_pub, recipient_pub)
    try:
        VerifyKey(bytes(sender_pub)).verify(data, msg.signature)
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise DecodeError(ErrorCode.RDV_BAD_SIGNATURE, "signature does not verify") from exc


def message_json(msg: Message) -> dict[str, Any]:
    """The JSON form vectors and the adapter use: bytes as hex, integers as numbers."""
    out: dict[str, Any] = {"type": frame_type_of(msg).name}
    for f in fields(msg):
        value = getattr(msg, f.name)
        if value is None:
            continue
        out[f.name] = value.hex() if isinstance(value, bytes) else value
    return out


def message_from_json(d: dict[str, Any]) -> Message:
    """Inverse of :func:`message_json` (``signature`` optional)."""
    try:
        cls, _ = _SCHEMAS[FrameType[d["type"]]]
    except KeyError:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "unknown message type") from None
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        if f.name not in d:
            continue
        v = d[f.name]
        is_bytes = f.name in ("nonce", "sender_pub", "recipient_pub", "echo", "fingerprint",
                              "offer_nonce", "stream_nonce", "incarnation", "signature")
        kwargs[f.name] = bytes.fromhex(v) if is_bytes and isinstance(v, str) else v
    try:
        msg: Message = cls(**kwargs)
    except TypeError as exc:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, str(exc)) from None
    return msg
