"""Deterministic CBOR for P⁴ control bodies (p4-00-conventions §5).

P⁴ signs canonical bytes, so a decoder that accepted two encodings of one value would let a peer
vary the signed bytes.  This module therefore *validates while it decodes*: every rule of the P⁴
subset of RFC 8949 §4.2.1 "core deterministic encoding" is checked, and each violation raises
:class:`~p4ref.errors.DecodeError` with its own registry code:

==========================================  =====================
rule                                        code
==========================================  =====================
truncated item, ai 28–30, stray ``break``   ``CBOR_MALFORMED``
argument not in its shortest form           ``CBOR_NON_MINIMAL``
map keys not in ascending bytewise order    ``CBOR_UNSORTED_KEYS``
the same key twice                          ``CBOR_DUPLICATE_KEY``
indefinite length, tag, float, undefined,   ``CBOR_FORBIDDEN``
other simple value, non-``uint`` map key
more than 16 nested arrays/maps             ``CBOR_TOO_DEEP``
text string that is not UTF-8               ``CBOR_INVALID_UTF8``
bytes after the single top-level item       ``CBOR_TRAILING``
top-level item of a body is not a map       ``CBOR_NOT_MAP``
==========================================  =====================

Map keys are unsigned integers only, so RFC 8949 bytewise key order and the length-first order of
RFC 7049 coincide; that lets :func:`encode_cbor` use cbor2's canonical encoder.  Decoding is done
here because cbor2 (like most decoders) silently accepts non-minimal and unsorted input.
"""

from __future__ import annotations

from typing import TypeAlias

import cbor2

from ..errors import DecodeError, ErrorCode, LocalProtocolError

__all__ = ["MAX_DEPTH", "CborValue", "cbor_json", "decode_cbor", "decode_cbor_map", "encode_cbor"]

CborValue: TypeAlias = "int | bytes | str | bool | list[CborValue] | dict[int, CborValue] | None"

#: Deepest nesting of arrays and maps (the top-level map counts as 1).
MAX_DEPTH = 16

_UINT64_MAX = (1 << 64) - 1
# Smallest argument that needs each additional-information width (RFC 8949 §3, "preferred").
_MIN_FOR_AI = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}
_AI_WIDTH = {24: 1, 25: 2, 26: 4, 27: 8}


def _fail(code: ErrorCode, pos: int, what: str) -> DecodeError:
    return DecodeError(code, f"{what} at offset {pos}")


class _Reader:
    """One pass over ``data``; ``pos`` always points at the next unread byte."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)

    def head(self) -> tuple[int, int, int]:
        """Read an initial byte and its argument: ``(major, ai, argument)``."""
        start = self.pos
        if start >= self.end:
            raise _fail(ErrorCode.CBOR_MALFORMED, start, "item truncated")
        ib = self.data[start]
        major, ai = ib >> 5, ib & 0x1F
        self.pos = start + 1
        if ai < 24:
            return major, ai, ai
        if ai in _AI_WIDTH:
            width = _AI_WIDTH[ai]
            stop = self.pos + width
            if stop > self.end:
                raise _fail(ErrorCode.CBOR_MALFORMED, start, "argument truncated")
            arg = int.from_bytes(self.data[self.pos : stop], "big")
            self.pos = stop
            # Only majors 0–5 carry a meaningful argument; 6 and 7 are forbidden anyway and
            # are reported as such by the caller (a float's bits are not "non-minimal").
            if major <= 5 and arg < _MIN_FOR_AI[ai]:
                raise _fail(ErrorCode.CBOR_NON_MINIMAL, start, "argument not in shortest form")
            return major, ai, arg
        if ai == 31:
            if major in (2, 3, 4, 5):
                raise _fail(ErrorCode.CBOR_FORBIDDEN, start, "indefinite length")
            if major == 7:
                raise _fail(ErrorCode.CBOR_MALFORMED, start, "break outside indefinite item")
        # ai 28–30 are reserved in every major type; ai 31 with major 0, 1, 6 is not well-formed.
        raise _fail(ErrorCode.CBOR_MALFORMED, start, f"reserved additional information {ai}")

    def item(self, depth: int) -> CborValue:
        start = self.pos
        major, ai, arg = self.head()
        if major == 0:
            return arg
        if major == 1:
            return -1 - arg
        if major in (2, 3):
            stop = self.pos + arg
            if stop > self.end:
                raise _fail(ErrorCode.CBOR_MALFORMED, start, "string truncated")
            raw = self.data[self.pos : stop]
            self.pos = stop
            if major == 2:
                return raw
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise _fail(ErrorCode.CBOR_INVALID_UTF8, start, "text is not UTF-8") from None
        if major in (4, 5):
            if depth >= MAX_DEPTH:
                raise _fail(ErrorCode.CBOR_TOO_DEEP, start, f"nesting deeper than {MAX_DEPTH}")
            # Every element takes at least one byte: refuse impossible counts before looping.
            if arg * (1 if major == 4 else 2) > self.end - self.pos:
                raise _fail(ErrorCode.CBOR_MALFORMED, start, "container truncated")
            if major == 4:
                return [self.item(depth + 1) for _ in range(arg)]
            return self.map_body(arg, depth + 1)
        if major == 6:
            raise _fail(ErrorCode.CBOR_FORBIDDEN, start, "tags are not allowed")
        # major 7
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        raise _fail(ErrorCode.CBOR_FORBIDDEN, start, "float, undefined or simple value")

    def map_body(self, count: int, depth: int) -> dict[int, CborValue]:
        out: dict[int, CborValue] = {}
        prev = b""
        for _ in range(count):
            kstart = self.pos
            major, _ai, key = self.head()
            if major != 0:
                raise _fail(ErrorCode.CBOR_FORBIDDEN, kstart, "map key is not an unsigned integer")
            kbytes = self.data[kstart : self.pos]
            if prev:
                if kbytes == prev:
                    raise _fail(ErrorCode.CBOR_DUPLICATE_KEY, kstart, f"duplicate key {key}")
                # Unsigned keys in shortest form: bytewise order == numeric order.
                if kbytes < prev:
                    raise _fail(ErrorCode.CBOR_UNSORTED_KEYS, kstart, f"key {key} out of order")
            prev = kbytes
            out[key] = self.item(depth)
        return out


def decode_cbor(data: bytes) -> CborValue:
    """Decode exactly one deterministic CBOR item, or raise :class:`DecodeError`."""
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if reader.pos != reader.end:
        raise _fail(ErrorCode.CBOR_TRAILING, reader.pos, "bytes after the item")
    return value


def decode_cbor_map(data: bytes) -> dict[int, CborValue]:
    """Decode a control body: one deterministic CBOR map with unsigned-integer keys."""
    if data and data[0] >> 5 != 5:
        raise _fail(ErrorCode.CBOR_NOT_MAP, 0, "body is not a map")
    value = decode_cbor(data)
    if not isinstance(value, dict):  # empty input raised CBOR_MALFORMED above
        raise _fail(ErrorCode.CBOR_NOT_MAP, 0, "body is not a map")
    return value


def _check_encodable(value: object, depth: int) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, bytes | str):
        return
    if isinstance(value, int):
        if not -(1 << 64) <= value <= _UINT64_MAX:
            raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"integer {value} out of range")
        return
    if isinstance(value, list | tuple | dict):
        if depth >= MAX_DEPTH:
            raise LocalProtocolError(ErrorCode.CBOR_TOO_DEEP, "value nested too deeply")
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= _UINT64_MAX:
                    raise LocalProtocolError(ErrorCode.CBOR_FORBIDDEN, f"map key {key!r}")
                _check_encodable(item, depth + 1)
        else:
            for item in value:
                _check_encodable(item, depth + 1)
        return
    raise LocalProtocolError(ErrorCode.CBOR_FORBIDDEN, f"cannot encode {type(value).__name__}")


def encode_cbor(value: CborValue) -> bytes:
    """Encode ``value`` deterministically (p4-00 §5); refuse what the subset forbids."""
    _check_encodable(value, 0)
    return bytes(cbor2.dumps(value, canonical=True))


def cbor_json(value: CborValue) -> object:
    """The JSON form of a CBOR value used by vectors and adapters (conformance/README.md).

    Integers become ``{"int": "<decimal>"}`` (a string: JSON numbers lose 64-bit precision), byte
    strings ``{"bytes": "<hex>"}``, text ``{"text": s}``, booleans ``{"bool": b}``, null
    ``{"null": true}``, arrays ``{"array": [...]}`` and maps ``{"map": [[k, v], ...]}`` in
    encoded order.
    """
    if isinstance(value, bool):
        return {"bool": value}
    if value is None:
        return {"null": True}
    if isinstance(value, int):
        return {"int": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, str):
        return {"text": value}
    if isinstance(value, list):
        return {"array": [cbor_json(v) for v in value]}
    return {"map": [[cbor_json(k), cbor_json(v)] for k, v in sorted(value.items())]}
