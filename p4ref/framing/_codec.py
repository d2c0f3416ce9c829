"""P⁴ frame codec (p4-01-framing-v1 §4–§5).

The header is declared once with :mod:`construct`; the body is checked by the ordered decode
algorithm of p4-01 §5.  The order matters: it fixes *which* error code a frame that breaks several
rules gets, and the vectors compare codes.  Every path out of :func:`decode_frame` is either a
:class:`Frame` or a :class:`~p4ref.errors.DecodeError`; construct never leaks a ``Container`` or a
``ConstructError``.

The hot path packs and unpacks the header with ``_HEADER_STRUCT``, the :mod:`struct` format of
the same five bytes (``>BBBH``): every frame of a session goes through it, and construct's
compiled form costs about 6 µs a call where ``struct`` costs 0.1 µs.  The input length is checked
before it unpacks and every rule is enforced here afterwards.  :data:`HEADER` and :data:`FRAME`
stay the declaration; ``tests/test_framing.py`` checks that the struct and the construct
forms give the same bytes and values for every header, and ``bench/bench_framing.py`` measures
them.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass

from construct import Bytes, Int8ub, Int16ub, Rebuild, Struct, Terminated, len_, this

from ..errors import DecodeError, ErrorCode, LocalProtocolError, P4Error
from ._cbor import decode_cbor_map, encode_cbor
from ._types import (
    HEADER_LEN,
    IGNORABLE_RANGE,
    MAX_BODY_SIZE,
    MAX_FRAME_SIZE,
    REGISTRY,
    RESERVED_TYPES,
    VERSION,
    BodyKind,
    FrameType,
    Path,
)

__all__ = [
    "FRAME",
    "HEADER",
    "Frame",
    "FrameReader",
    "decode_frame",
    "encode_frame",
    "error_body",
    "parse_error_body",
    "ping_body",
]

# p4-01 §4.1:  Frame { Version (8) = 1, Type (8), Flags (8), Length (16), Body (8 * Length) }
HEADER = Struct(
    "version" / Int8ub,
    "type" / Int8ub,
    "flags" / Int8ub,
    "length" / Int16ub,
)
FRAME = Struct(
    "version" / Int8ub,
    "type" / Int8ub,
    "flags" / Int8ub,
    "length" / Rebuild(Int16ub, len_(this.body)),
    "body" / Bytes(this.length),
    Terminated,
)
#: :data:`HEADER` as a struct format, for the hot path (module docstring).
_HEADER_STRUCT = struct.Struct(">BBBH")

#: ERROR reason text limit in bytes (p4-01 §4.4).
MAX_REASON_BYTES = 256
PING_NONCE_LEN = 8


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame.  ``type`` is an ``int`` so ignorable unknown types can be represented."""

    type: int
    flags: int = 0
    body: bytes = b""

    @property
    def ignorable(self) -> bool:
        """True for an unassigned type in the ignorable range: the receiver discards it."""
        return self.type not in _KNOWN


_KNOWN = frozenset(int(t) for t in REGISTRY)


def _check_type(type_: int, flags: int, body: bytes, path: Path, err: type[P4Error]) -> None:
    """Steps 6–12 of the decode algorithm (p4-01 §5), shared by encoder and decoder."""
    if type_ in RESERVED_TYPES:
        raise err(ErrorCode.FRAME_RESERVED_TYPE, f"type 0x{type_:02x} is reserved")
    if type_ not in _KNOWN:
        if type_ in IGNORABLE_RANGE:
            return  # [FRM] ignorable: header and length were checked, the rest is not
        raise err(ErrorCode.FRAME_UNKNOWN_TYPE, f"type 0x{type_:02x} is not assigned")
    ftype = FrameType(type_)
    info = REGISTRY[ftype]
    if path not in info.paths:
        raise err(ErrorCode.FRAME_PATH_NOT_ALLOWED, f"{ftype.name} is not allowed on {path}")
    if flags & ~info.flags:
        raise err(ErrorCode.FRAME_BAD_FLAGS, f"{ftype.name} does not allow flags 0x{flags:02x}")
    if info.body is BodyKind.CBOR:
        try:
            fields = decode_cbor_map(body)
        except DecodeError as exc:
            raise err(exc.code, exc.message) from None
        _check_core_schema(ftype, fields, err)


def _check_core_schema(ftype: FrameType, fields: Mapping[int, object], err: type[P4Error]) -> None:
    """Step 12: the body schemas p4-01 itself owns (ERROR, PING, PONG)."""
    if ftype is FrameType.ERROR:
        code, reason = fields.get(1), fields.get(2)
        ok = (
            set(fields) == {1, 2}
            and isinstance(code, int)
            and not isinstance(code, bool)
            and 0 <= code <= 0xFFFF
            and isinstance(reason, str)
            and len(reason.encode("utf-8")) <= MAX_REASON_BYTES
        )
        if not ok:
            raise err(ErrorCode.MESSAGE_INVALID, "ERROR body must be {1: uint16, 2: text<=256}")
    elif ftype in (FrameType.PING, FrameType.PONG):
        nonce = fields.get(1)
        if set(fields) != {1} or not isinstance(nonce, bytes) or len(nonce) != PING_NONCE_LEN:
            raise err(ErrorCode.MESSAGE_INVALID, f"{ftype.name} body must be {{1: bytes(8)}}")


def encode_frame(frame: Frame, path: Path) -> bytes:
    """Serialise ``frame`` for ``path``; refuse to emit anything a receiver would reject."""
    if not 0 <= frame.type <= 0xFF or not 0 <= frame.flags <= 0xFF:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "type and flags are 8-bit")
    if len(frame.body) > MAX_BODY_SIZE:
        raise LocalProtocolError(ErrorCode.FRAME_TOO_LARGE, f"body of {len(frame.body)} bytes")
    _check_type(frame.type, frame.flags, frame.body, path, LocalProtocolError)
    return _HEADER_STRUCT.pack(VERSION, frame.type, frame.flags, len(frame.body)) + frame.body


def _header(data: bytes | bytearray) -> tuple[int, int, int, int]:
    """Steps 1–3: split the header and check version and declared length."""
    if len(data) < HEADER_LEN:
        raise DecodeError(ErrorCode.FRAME_TRUNCATED, f"{len(data)} bytes, header needs 5")
    version, type_, flags, length = _HEADER_STRUCT.unpack_from(data)
    if version != VERSION:
        raise DecodeError(ErrorCode.FRAME_BAD_VERSION, f"version {version}")
    if length > MAX_BODY_SIZE:
        raise DecodeError(ErrorCode.FRAME_TOO_LARGE, f"length {length} > {MAX_BODY_SIZE}")
    return version, type_, flags, length


def decode_frame(data: bytes, path: Path) -> Frame:
    """Decode exactly one frame (one data-channel message, or one frame cut from a stream)."""
    return _decode(data, path, _header(data))


def _decode(data: bytes, path: Path, header: tuple[int, int, int, int]) -> Frame:
    """Steps 4–12 of :func:`decode_frame`, its header already split by :func:`_header`."""
    _, type_, flags, length = header
    end = HEADER_LEN + length
    if len(data) < end:
        raise DecodeError(ErrorCode.FRAME_TRUNCATED, f"body has {len(data) - 5} of {length}")
    if len(data) > end:
        raise DecodeError(ErrorCode.FRAME_TRAILING_BYTES, f"{len(data) - end} bytes after frame")
    body = bytes(data[HEADER_LEN:end])
    _check_type(type_, flags, body, path, DecodeError)
    return Frame(type_, flags, body)


class FrameReader:
    """Reassemble frames from a byte stream (the ``tor`` path, p4-01 §5.2).

    Feed whatever the transport delivered, then call :meth:`next_frame` until it returns ``None``.
    Ignorable frames are discarded here [p4-01 §8].  A decode error is fatal for the stream: the
    reader keeps raising it (h11 style), the caller sends ERROR and closes.
    """

    __slots__ = ("_buf", "_error", "max_buffer", "path")

    def __init__(self, path: Path = Path.TOR, max_buffer: int = 4 * MAX_FRAME_SIZE) -> None:
        self.path = path
        self.max_buffer = max_buffer
        self._buf = bytearray()
        self._error: DecodeError | None = None

    @property
    def pending(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    @property
    def head_type(self) -> int | None:
        """Type byte of the frame at the head of the buffer, once two bytes of it have arrived.

        Lets a layer apply "never answer an ERROR frame with an ERROR frame" (p4-00 §7) when the
        frame that failed to decode was itself an ERROR frame.
        """
        return self._buf[1] if len(self._buf) >= 2 else None

    def feed(self, data: bytes) -> None:
        if len(self._buf) + len(data) > self.max_buffer:
            raise LocalProtocolError(
                ErrorCode.INTERNAL_ERROR, "reader buffer full: call next_frame() between feeds"
            )
        self._buf += data

    def next_frame(self) -> Frame | None:
        if self._error is not None:
            raise self._error
        while True:
            if len(self._buf) < HEADER_LEN:
                return None
            try:
                header = _header(self._buf)
                end = HEADER_LEN + header[3]
                if len(self._buf) < end:
                    return None
                whole = len(self._buf) == end  # the usual case on a data channel
                frame = _decode(bytes(self._buf) if whole else bytes(self._buf[:end]),
                                self.path, header)
            except DecodeError as exc:
                self._error = exc
                raise
            if whole:
                self._buf.clear()
            else:
                del self._buf[:end]
            if not frame.ignorable:
                return frame


# --- bodies owned by p4-01 ------------------------------------------------------------------


def error_body(code: ErrorCode | int, reason: str) -> bytes:
    """ERROR body (p4-01 §4.4); the reason is cut to 256 bytes on a character boundary."""
    raw = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return encode_cbor({1: int(code), 2: raw.decode("utf-8", "ignore")})


def parse_error_body(body: bytes) -> tuple[int, str]:
    fields = decode_cbor_map(body)
    _check_core_schema(FrameType.ERROR, fields, DecodeError)
    code, reason = fields[1], fields[2]
    assert isinstance(code, int) and isinstance(reason, str)
    return code, reason


def ping_body(nonce: bytes) -> bytes:
    """PING and PONG body (p4-01 §4.4): ``{1: nonce}``, the nonce 8 bytes."""
    if len(nonce) != PING_NONCE_LEN:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "PING nonce is 8 bytes")
    return encode_cbor({1: nonce})

