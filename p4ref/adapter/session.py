"""Reference-adapter ops for the session layer (p4-04 §13); pure.

Ops: ``session.decode`` (one session frame, schema only), ``session.verify_hello`` (the
SES_HELLO checks of §7.3 in order), ``session.sign_auth`` and ``session.verify_auth`` (the
transcript signature of §7.2).  The ``session`` machine's transcripts need connection-addressed
``recv`` / ``send`` items (§13), which the generic harness does not carry yet, so this module
declares no ``MACHINE``.
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from ..errors import DecodeError, ErrorCode, LocalProtocolError, P4Error
from ..framing import Frame, FrameType, Path, decode_frame, encode_frame
from ..session import _codec as codec
from ._jsonargs import Json, Op
from ._jsonargs import hex_arg as _hex
from ._jsonargs import int_arg as _int
from ._jsonargs import str_arg as _str

__all__ = ["run_op", "vectors_ops"]

_TYPES = {
    FrameType.SES_HELLO, FrameType.SES_AUTH, FrameType.SES_MSG, FrameType.SES_ACK,
    FrameType.SES_END, FrameType.SES_SIGNAL,
}


def _path(inp: Json) -> Path:
    value = _str(inp, "path") if "path" in inp else "datachannel"
    try:
        return Path(value)
    except ValueError:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"path {value!r}") from None


def _session_frame(data: bytes, path: Path, want: FrameType | None = None) -> Frame:
    frame = decode_frame(data, path)  # p4-01 §5.1, in its check order
    if frame.ignorable or frame.type not in _TYPES or (want is not None and frame.type != want):
        raise DecodeError(ErrorCode.UNEXPECTED_MESSAGE, f"type 0x{frame.type:02x} here")
    return frame


def hello_json(h: codec.Hello) -> Json:
    return {k: (v.hex() if isinstance(v, bytes) else v)
            for k in h.__slots__ for v in (getattr(h, k),)}


def _decode(params: Json, inp: Json) -> Json:
    """{frame, path?} -> {type, fields}: framing, then the body schema of §6."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp))
    ftype = FrameType(frame.type)
    out: dict[str, Any] = {}
    if ftype is FrameType.SES_HELLO:
        out.update(hello_json(codec.decode_hello(frame)))
    elif ftype is FrameType.SES_AUTH:
        out["signature"] = codec.decode_auth(frame).hex()
    elif ftype is FrameType.SES_MSG:
        seq, payload = codec.decode_msg(frame)
        out.update(seq=seq, payload=payload.hex())
    elif ftype is FrameType.SES_ACK:
        out["ack"] = codec.decode_ack(frame)
    elif ftype is FrameType.SES_END:
        out["last"] = codec.decode_end(frame)
    else:
        out["frame"] = codec.decode_signal(frame).hex()
    return {"type": ftype.name, "fields": out}


def _verify_hello(params: Json, inp: Json) -> Json:
    """{frame, my_pub, peer_pub, generation, path?, binding_local, binding_remote} -> the HELLO's
    fields; §7.3 checks 1, 2, 4, 5, 6 in order."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp), FrameType.SES_HELLO)
    h = codec.decode_hello(frame)
    if h.sender_pub != _hex(inp, "peer_pub") or h.recipient_pub != _hex(inp, "my_pub"):
        raise DecodeError(ErrorCode.SES_WRONG_PEER, "HELLO names other keys")
    if h.generation != _int(inp, "generation"):
        raise DecodeError(ErrorCode.SES_WRONG_GENERATION, f"generation {h.generation}")
    if h.binding_sender != _hex(inp, "binding_remote") or \
            h.binding_receiver != _hex(inp, "binding_local"):
        raise DecodeError(ErrorCode.SES_BINDING_MISMATCH, "channel bindings differ")
    return {"hello": hello_json(h)}


def _transcript(inp: Json, my_pub: bytes, peer_pub: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """``(low_pub, high_pub, hello_low_body, hello_high_body)`` from the two HELLO frames."""
    mine = _session_frame(_hex(inp, "hello_mine"), _path(inp), FrameType.SES_HELLO).body
    theirs = _session_frame(_hex(inp, "hello_peer"), _path(inp), FrameType.SES_HELLO).body
    if len(my_pub) != 32 or len(peer_pub) != 32 or my_pub == peer_pub:
        raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "two distinct 32-byte keys")
    if my_pub < peer_pub:
        return my_pub, peer_pub, mine, theirs
    return peer_pub, my_pub, theirs, mine


def _sign_auth(params: Json, inp: Json) -> Json:
    """{identity_seed, peer_pub, hello_mine, hello_peer, path?} -> {signature_input, frame}."""
    seed = _hex(inp, "identity_seed")
    if len(seed) != 32:
        raise LocalProtocolError(ErrorCode.IDENTITY_KEY_INVALID, "identity_seed is 32 bytes")
    key = SigningKey(seed)
    my_pub = bytes(key.verify_key)
    low, high, hl, hh = _transcript(inp, my_pub, _hex(inp, "peer_pub"))
    sig = codec.sign_auth(key, low, high, hl, hh)
    return {
        "signature_input": codec.auth_input(my_pub, low, high, hl, hh).hex(),
        "frame": encode_frame(codec.encode_auth(sig), _path(inp)).hex(),
    }


def _verify_auth(params: Json, inp: Json) -> Json:
    """{frame, my_pub, peer_pub, hello_mine, hello_peer, path?} -> {}: §7.3 check 7."""
    frame = _session_frame(_hex(inp, "frame"), _path(inp), FrameType.SES_AUTH)
    sig = codec.decode_auth(frame)
    peer_pub = _hex(inp, "peer_pub")
    low, high, hl, hh = _transcript(inp, _hex(inp, "my_pub"), peer_pub)
    codec.verify_auth(sig, peer_pub, low, high, hl, hh)
    return {}


def vectors_ops() -> dict[str, Op]:
    return {
        "session.decode": _decode,
        "session.verify_hello": _verify_hello,
        "session.sign_auth": _sign_auth,
        "session.verify_auth": _verify_auth,
    }


def run_op(op: str, params: Json, inp: Json) -> Json:
    """Helper for tests and the vector builder: ``{"value": …}`` or ``{"error": NAME}``."""
    try:
        return {"value": vectors_ops()[op](params, inp)}
    except P4Error as exc:
        return {"error": exc.code.name}
