"""L0 framing: one frame format for every P⁴ path (spec/p4-01-framing-v1.md).

Frames are a 5-byte header (version, type, flags, length) and a body: deterministic CBOR for
control frames, raw bytes for bulk DATA.  Decoding is strict: anything a conforming sender cannot
produce raises :class:`~p4ref.errors.DecodeError` carrying its registry code.
"""

from ._cbor import MAX_DEPTH, CborValue, cbor_json, decode_cbor, decode_cbor_map, encode_cbor
from ._codec import (
    FRAME,
    HEADER,
    MAX_REASON_BYTES,
    PING_NONCE_LEN,
    Frame,
    FrameReader,
    decode_frame,
    encode_frame,
    error_body,
    parse_error_body,
    ping_body,
)
from ._types import (
    FLAG_FIN,
    GREASE_TYPES,
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
    TypeInfo,
)

__all__ = [
    "FLAG_FIN",
    "FRAME",
    "GREASE_TYPES",
    "HEADER",
    "HEADER_LEN",
    "IGNORABLE_RANGE",
    "MAX_BODY_SIZE",
    "MAX_DEPTH",
    "MAX_FRAME_SIZE",
    "MAX_REASON_BYTES",
    "PING_NONCE_LEN",
    "REGISTRY",
    "RESERVED_TYPES",
    "VERSION",
    "BodyKind",
    "CborValue",
    "Frame",
    "FrameReader",
    "FrameType",
    "Path",
    "TypeInfo",
    "cbor_json",
    "decode_cbor",
    "decode_cbor_map",
    "decode_frame",
    "encode_cbor",
    "encode_frame",
    "error_body",
    "parse_error_body",
    "ping_body",
]
