"""Session frames: bodies, the handshake transcript and its signatures (p4-04 §6–§7).

Six frame types, all allowed on both paths (p4-01 §4.3):

=========== ====== ======================================================================
SES_HELLO   cbor   first frame of a connection: nonce, generation, both channel bindings,
                   incarnations and stream positions [SES-17]
SES_AUTH    cbor   Ed25519 signature over the transcript of both HELLOs [SES-21]
SES_MSG     binary ``Seq (64) || Payload``: one sequenced, durable message [SES-19]
SES_ACK     binary ``Ack (64)``: cumulative, durable acknowledgement [SES-28]
SES_END     cbor   end of the sender's sequenced traffic on this connection [SES-32]
SES_SIGNAL  binary one complete RV_OFFER / RV_ANSWER frame (p4-03), carried in-band [SES-12]
=========== ====== ======================================================================

Signature input of SES_AUTH [SES-21]::

    "P4-SES-v1" || 0x00 || "auth" || 0x00 || signer_pub(32) || low_pub(32) || high_pub(32)
        || u16(len(hello_low)) || hello_low || u16(len(hello_high)) || hello_high

``hello_low`` / ``hello_high`` are the exact SES_HELLO body bytes the LOW / HIGH peer sent on
this connection.  The machine never sees CBOR maps, only the dataclasses below.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError
from ..framing import MAX_BODY_SIZE, CborValue, Frame, FrameType, decode_cbor_map, encode_cbor

__all__ = [
    "BINDING_LEN",
    "INC_LEN",
    "MAX_PAYLOAD",
    "NONCE_LEN",
    "NO_INC",
    "SIG_CONTEXT",
    "Hello",
    "auth_input",
    "decode_ack",
    "decode_auth",
    "decode_end",
    "decode_hello",
    "decode_msg",
    "decode_signal",
    "encode_ack",
    "encode_auth",
    "encode_end",
    "encode_hello",
    "encode_msg",
    "encode_signal",
    "sign_auth",
    "verify_auth",
]

SIG_CONTEXT = b"P4-SES-v1"
NONCE_LEN = 16
INC_LEN = 16
BINDING_LEN = 32
PUB_LEN = 32
SIG_LEN = 64
SEQ_LEN = 8
#: "No incarnation known" in ``peer_inc`` [SES-16].
NO_INC = bytes(INC_LEN)
#: Largest SES_MSG payload: a 16 KiB frame minus header and sequence number [SES-19].
MAX_PAYLOAD = MAX_BODY_SIZE - SEQ_LEN
_U64_MAX = (1 << 64) - 1
_SIGNAL_TYPES = (FrameType.RV_OFFER, FrameType.RV_ANSWER)


@dataclass(frozen=True, slots=True)
class Hello:
    """SES_HELLO (0x31) [SES-17].  ``rx``/``acked``/``tx`` are positions in the two streams."""

    nonce: bytes
    generation: int
    binding_sender: bytes  # the sender's own channel binding (its DTLS fingerprint)
    binding_receiver: bytes  # the sender's view of the receiver's channel binding
    sender_pub: bytes
    recipient_pub: bytes
    inc: bytes  # the sender's incarnation
    peer_inc: bytes  # the incarnation of the receiver that the sender knows, or NO_INC
    rx: int  # highest seq of the receiver's stream the sender has received in order
    acked: int  # highest cumulative ACK the sender has received for its own stream
    tx: int  # the sender's last assigned seq


# (field, key, kind): kinds "u64", or a byte length
_HELLO_SCHEMA: tuple[tuple[str, int, str | int], ...] = (
    ("nonce", 1, NONCE_LEN),
    ("generation", 2, "u64"),
    ("binding_sender", 3, BINDING_LEN),
    ("binding_receiver", 4, BINDING_LEN),
    ("sender_pub", 5, PUB_LEN),
    ("recipient_pub", 6, PUB_LEN),
    ("inc", 7, INC_LEN),
    ("peer_inc", 8, INC_LEN),
    ("rx", 9, "u64"),
    ("acked", 10, "u64"),
    ("tx", 11, "u64"),
)


def _valid(kind: str | int, value: object) -> bool:
    if kind == "u64":
        return type(value) is int and 0 <= value <= _U64_MAX
    return isinstance(value, bytes) and len(value) == kind


def _schema_map(
    frame: Frame, ftype: FrameType, keys: tuple[tuple[str, int, str | int], ...]
) -> dict[str, object]:
    """Decode a cbor body against an exact schema: MESSAGE_INVALID otherwise [SES-16]."""
    if frame.type != ftype:
        raise DecodeError(ErrorCode.UNEXPECTED_MESSAGE, f"not {ftype.name}")
    body = decode_cbor_map(frame.body)
    if set(body) != {k for _, k, _ in keys}:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: keys {sorted(body)}")
    out: dict[str, object] = {}
    for name, key, kind in keys:
        if not _valid(kind, body[key]):
            raise DecodeError(ErrorCode.MESSAGE_INVALID, f"{ftype.name}: key {key} is invalid")
        out[name] = body[key]
    return out


def encode_hello(h: Hello) -> Frame:
    body: dict[int, CborValue] = {}
    for name, key, kind in _HELLO_SCHEMA:
        value = getattr(h, name)
        if not _valid(kind, value):
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"HELLO {name}={value!r}")
        body[key] = value
    return Frame(FrameType.SES_HELLO, 0, encode_cbor(body))


def decode_hello(frame: Frame) -> Hello:
    return Hello(**_schema_map(frame, FrameType.SES_HELLO, _HELLO_SCHEMA))  # type: ignore[arg-type]


def encode_auth(signature: bytes) -> Frame:
    if len(signature) != SIG_LEN:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "signature is 64 bytes")
    return Frame(FrameType.SES_AUTH, 0, encode_cbor({1: bytes(signature)}))


def decode_auth(frame: Frame) -> bytes:
    sig = _schema_map(frame, FrameType.SES_AUTH, (("sig", 1, SIG_LEN),))["sig"]
    assert isinstance(sig, bytes)
    return sig


def encode_end(last: int) -> Frame:
    if not _valid("u64", last):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "END last is a u64")
    return Frame(FrameType.SES_END, 0, encode_cbor({1: last}))


def decode_end(frame: Frame) -> int:
    last = _schema_map(frame, FrameType.SES_END, (("last", 1, "u64"),))["last"]
    assert isinstance(last, int)
    return last


def encode_msg(seq: int, payload: bytes) -> Frame:
    if not 1 <= seq <= _U64_MAX:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "seq is 1 .. 2^64-1")
    if len(payload) > MAX_PAYLOAD:
        raise LocalProtocolError(ErrorCode.FRAME_TOO_LARGE, f"payload of {len(payload)} bytes")
    return Frame(FrameType.SES_MSG, 0, struct.pack(">Q", seq) + bytes(payload))


def decode_msg(frame: Frame) -> tuple[int, bytes]:
    """``(seq, payload)``; a body shorter than 8 bytes or seq 0 is MESSAGE_INVALID [SES-19]."""
    if len(frame.body) < SEQ_LEN:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, "SES_MSG body shorter than its seq")
    (seq,) = struct.unpack(">Q", frame.body[:SEQ_LEN])
    if seq == 0:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, "SES_MSG seq 0")
    return int(seq), bytes(frame.body[SEQ_LEN:])


def encode_ack(ack: int) -> Frame:
    if not 0 <= ack <= _U64_MAX:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "ack is a u64")
    return Frame(FrameType.SES_ACK, 0, struct.pack(">Q", ack))


def decode_ack(frame: Frame) -> int:
    if len(frame.body) != SEQ_LEN:
        raise DecodeError(ErrorCode.MESSAGE_INVALID, "SES_ACK body is exactly 8 bytes")
    return int(struct.unpack(">Q", frame.body)[0])


def encode_signal(inner: bytes) -> Frame:
    _check_signal(inner, LocalProtocolError)
    return Frame(FrameType.SES_SIGNAL, 0, bytes(inner))


def decode_signal(frame: Frame) -> bytes:
    """The carried RV_OFFER / RV_ANSWER frame's bytes, header checked [SES-12]."""
    _check_signal(frame.body, DecodeError)
    return bytes(frame.body)


def _check_signal(inner: bytes, err: type[LocalProtocolError] | type[DecodeError]) -> None:
    # the inner frame is checked in full by the rendezvous layer; here only that it is one
    ok = len(inner) >= 5 and inner[0] == 1 and inner[1] in _SIGNAL_TYPES
    ok = ok and int.from_bytes(inner[3:5], "big") == len(inner) - 5
    if not ok:
        raise err(ErrorCode.MESSAGE_INVALID, "SES_SIGNAL must carry one RV_OFFER or RV_ANSWER")


def auth_input(signer_pub: bytes, low_pub: bytes, high_pub: bytes,
               hello_low: bytes, hello_high: bytes) -> bytes:
    """The exact bytes an SES_AUTH signs [SES-21]."""
    return b"".join((
        SIG_CONTEXT, b"\x00auth\x00", bytes(signer_pub), bytes(low_pub), bytes(high_pub),
        struct.pack(">H", len(hello_low)), bytes(hello_low),
        struct.pack(">H", len(hello_high)), bytes(hello_high),
    ))


def sign_auth(key: SigningKey, low_pub: bytes, high_pub: bytes,
              hello_low: bytes, hello_high: bytes) -> bytes:
    data = auth_input(bytes(key.verify_key), low_pub, high_pub, hello_low, hello_high)
    return bytes(key.sign(data).signature)


def verify_auth(signature: bytes, signer_pub: bytes, low_pub: bytes, high_pub: bytes,
                hello_low: bytes, hello_high: bytes) -> None:
    """SES_BAD_SIGNATURE unless ``signature`` is ``signer_pub``'s over the transcript [SES-23]."""
    data = auth_input(signer_pub, low_pub, high_pub, hello_low, hello_high)
    try:
        VerifyKey(bytes(signer_pub)).verify(data, bytes(signature))
    except (BadSignatureError, ValueError, TypeError) as exc:
        raise DecodeError(ErrorCode.SES_BAD_SIGNATURE, "AUTH signature does not verify") from exc
