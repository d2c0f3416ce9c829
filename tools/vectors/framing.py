"""Framing and deterministic-CBOR vectors (p4-01-framing-v1, p4-00-conventions §5).

Every expected value is computed by the reference codec *and* checked against the literal the
builder states, so a codec regression cannot silently rewrite the vectors.
"""

from __future__ import annotations

from typing import Any

from p4ref.adapter import handle
from p4ref.errors import P4Error
from p4ref.framing import (
    FLAG_FIN,
    MAX_BODY_SIZE,
    CborValue,
    Frame,
    FrameReader,
    FrameType,
    Path,
    cbor_json,
    decode_cbor,
    decode_frame,
    encode_cbor,
    encode_frame,
    error_body,
    ping_body,
)

from ._envelope import Json, dump, envelope, group, spec_revision, test

# Requirement tags of spec/p4-01 and spec/p4-00, by rule.  tools/spec_check.py fails if one of
# these does not exist in spec/.
T: dict[str, list[str]] = {
    "header": ["FRM-17"],
    "version": ["FRM-19"],
    "max": ["FRM-7", "FRM-20"],
    "truncated": ["FRM-18", "FRM-21"],
    "trailing": ["FRM-22"],
    "reserved": ["FRM-23"],
    "unknown": ["FRM-25"],
    "ignorable": ["FRM-24", "FRM-48"],
    "path": ["FRM-26"],
    "flags": ["FRM-27"],
    "cbor_body": ["FRM-9", "FRM-29"],
    "schema": ["FRM-30"],
    "encoder": ["FRM-39", "FRM-40"],
    "stream": ["FRM-31", "FRM-34"],
    "stream_header": ["FRM-32"],
    "stream_fatal": ["FRM-38"],
    "stream_ignorable": ["FRM-35"],
    "error_body": ["FRM-11"],
    "ping": ["FRM-13"],
    "data": ["FRM-2"],
    "data_not_tor": ["FRM-16"],
    "grease": ["FRM-51", "FRM-53"],
    "grease_send": ["FRM-42"],
    "cbor_subset": ["CNV-7"],
    "cbor_minimal": ["CNV-13"],
    "cbor_sorted": ["CNV-18", "CNV-19"],
    "cbor_dup": ["CNV-20"],
    "cbor_indef": ["CNV-14"],
    "cbor_tag": ["CNV-15"],
    "cbor_simple": ["CNV-16"],
    "cbor_depth": ["CNV-21"],
    "cbor_utf8": ["CNV-22"],
    "cbor_bom": ["CNV-49"],
    "cbor_encode": ["FRM-54", "CNV-27", "CNV-28"],
    "cbor_malformed": ["CNV-9"],
    "cbor_reserved_ai": ["CNV-10"],
    "cbor_break": ["CNV-11"],
    "cbor_count": ["CNV-12"],
    "cbor_single": ["CNV-23"],
    "cbor_map": ["CNV-24"],
    "cbor_keys": ["CNV-17"],
}

NOTES: dict[str, Json] = {
    "TRUNCATED": {"bugType": "MISSING_CHECK", "description": "Input ends inside a header or body."},
    "TRAILING": {"bugType": "MISSING_CHECK", "description": "Bytes after a complete frame/item."},
    "OVERLENGTH": {"bugType": "EDGE_CASE", "description": "Declared length above the limit."},
    "UNKNOWN_TYPE": {"bugType": "MISSING_CHECK", "description": "Unassigned, non-ignorable type."},
    "IGNORABLE": {"bugType": "EDGE_CASE", "description": "Unassigned type in 0xE0-0xFE: discard."},
    "RESERVED": {"bugType": "MISSING_CHECK", "description": "Type 0x00 or 0xFF."},
    "VERSION": {"bugType": "MISSING_CHECK", "description": "Header version is not 1."},
    "FLAGS": {"bugType": "MISSING_CHECK", "description": "Flag bit the type does not define."},
    "PATH": {"bugType": "MISSING_CHECK", "description": "Type not allowed on this path."},
    "NON_MINIMAL": {"bugType": "MALLEABILITY", "description": "CBOR argument not shortest form."},
    "NON_CANONICAL": {"bugType": "MALLEABILITY", "description": "CBOR map keys unsorted/dup."},
    "FORBIDDEN": {"bugType": "MALLEABILITY", "description": "CBOR feature outside the subset."},
    "SCHEMA": {"bugType": "MISSING_CHECK", "description": "Body fields wrong for the type."},
    "BOUNDARY": {"bugType": "EDGE_CASE", "description": "Exactly at a limit: must be accepted."},
    "STREAM": {"bugType": "EDGE_CASE", "description": "Frames split across stream reads."},
}

NONCE = bytes(range(8))


def _hdr(type_: int, flags: int, length: int, version: int = 1) -> bytes:
    return bytes([version, type_, flags]) + length.to_bytes(2, "big")


def _raw(type_: int, body: bytes, flags: int = 0) -> bytes:
    return _hdr(type_, flags, len(body)) + body


def _frame_json(f: Frame) -> Json:
    return {"type": f.type, "flags": f.flags, "body": f.body.hex(), "ignorable": f.ignorable}


def _decode_case(
    ident: str, comment: str, tags: list[str], data: bytes, path: Path,
    *, error: str | None = None, flags: list[str] | None = None,
) -> Json:
    """A decode test; the codec's answer must agree with ``error``."""
    try:
        got: Any = _frame_json(decode_frame(data, path))
        got_err = None
    except P4Error as exc:
        got, got_err = None, exc.code.name
    if got_err != error:
        raise AssertionError(f"{ident}: codec says {got_err}, builder says {error}")
    reqs = [r for t in tags for r in T[t]]
    if error:
        return test(ident, comment, reqs, {"frame": data.hex()}, valid=False, error=error,
                    flags=flags)
    return test(ident, comment, reqs, {"frame": data.hex()}, value=got, flags=flags)


def _map(n_keys: int) -> bytes:
    return encode_cbor({k: k for k in range(n_keys)})


def _decode_dc() -> list[Json]:
    dc = Path.DATACHANNEL
    c: list[Json] = []
    ok = _decode_case
    # Every assigned type that may use the data channel, valid.
    c.append(ok("frm-dec-error", "ERROR with code and reason", ["header", "error_body"],
                _raw(FrameType.ERROR, error_body(0x0104, "unknown type")), dc))
    c.append(ok("frm-dec-error-empty-reason", "ERROR with empty reason", ["error_body"],
                _raw(FrameType.ERROR, error_body(0, "")), dc))
    c.append(ok("frm-dec-error-reason-256", "ERROR reason of exactly 256 bytes",
                ["error_body"], _raw(FrameType.ERROR, encode_cbor({1: 2, 2: "é" * 128})), dc,
                flags=["BOUNDARY"]))
    c.append(ok("frm-dec-ping", "PING with an 8-byte nonce", ["ping"],
                _raw(FrameType.PING, ping_body(NONCE)), dc))
    c.append(ok("frm-dec-pong", "PONG with an 8-byte nonce", ["ping"],
                _raw(FrameType.PONG, ping_body(NONCE)), dc))
    c.append(ok("frm-dec-padding-empty", "PADDING with no body", ["header"],
                _raw(FrameType.PADDING, b""), dc))
    c.append(ok("frm-dec-padding-bytes", "PADDING with arbitrary bytes", ["header"],
                _raw(FrameType.PADDING, b"\x00\xff" * 20), dc))
    c.append(ok("frm-dec-data", "DATA with a small body", ["data"],
                _raw(FrameType.DATA, b"hello, P4"), dc))
    c.append(ok("frm-dec-data-fin", "DATA with FIN", ["data", "flags"],
                _raw(FrameType.DATA, b"last", FLAG_FIN), dc))
    c.append(ok("frm-dec-data-empty", "DATA with an empty body", ["data"],
                _raw(FrameType.DATA, b""), dc))
    c.append(ok("frm-dec-data-max", "DATA of exactly 16384 bytes in all", ["max", "data"],
                _raw(FrameType.DATA, bytes(i & 0xFF for i in range(MAX_BODY_SIZE))), dc,
                flags=["BOUNDARY"]))
    for t in (0xEA, 0xFA):
        c.append(ok(f"frm-dec-grease-{t:02x}", f"GREASE type 0x{t:02x}: returned as ignorable",
                    ["ignorable", "grease"], _raw(t, b"\x13\x37"), dc, flags=["IGNORABLE"]))
    c.append(ok("frm-dec-ignorable-e0", "unassigned 0xE0 with odd flags: ignorable",
                ["ignorable"], _raw(0xE0, b"", 0xFF), dc, flags=["IGNORABLE"]))
    c.append(ok("frm-dec-ignorable-fe", "unassigned 0xFE with non-CBOR body: ignorable",
                ["ignorable"], _raw(0xFE, b"\xff\xff"), dc, flags=["IGNORABLE"]))

    # Invalid: header.
    for n in range(5):
        c.append(ok(f"frm-dec-short-{n}", f"{n} bytes: no complete header", ["truncated"],
                    _raw(FrameType.PING, ping_body(NONCE))[:n], dc, error="FRAME_TRUNCATED",
                    flags=["TRUNCATED"]))
    c.append(ok("frm-dec-body-short", "body one byte short of Length", ["truncated"],
                _raw(FrameType.PING, ping_body(NONCE))[:-1], dc, error="FRAME_TRUNCATED",
                flags=["TRUNCATED"]))
    c.append(ok("frm-dec-data-short", "DATA declares 100, carries 99", ["truncated"],
                _hdr(FrameType.DATA, 0, 100) + bytes(99), dc, error="FRAME_TRUNCATED",
                flags=["TRUNCATED"]))
    c.append(ok("frm-dec-trailing-1", "one byte after the frame", ["trailing"],
                _raw(FrameType.PING, ping_body(NONCE)) + b"\x00", dc,
                error="FRAME_TRAILING_BYTES", flags=["TRAILING"]))
    c.append(ok("frm-dec-two-frames", "two frames in one message", ["trailing"],
                _raw(FrameType.PADDING, b"") * 2, dc, error="FRAME_TRAILING_BYTES",
                flags=["TRAILING"]))
    c.append(ok("frm-dec-version-0", "version 0", ["version"],
                _hdr(FrameType.PADDING, 0, 0, version=0), dc, error="FRAME_BAD_VERSION",
                flags=["VERSION"]))
    c.append(ok("frm-dec-version-2", "version 2", ["version"],
                _hdr(FrameType.PADDING, 0, 0, version=2), dc, error="FRAME_BAD_VERSION",
                flags=["VERSION"]))
    c.append(ok("frm-dec-version-before-length", "bad version wins over bad length",
                ["version"], _hdr(FrameType.DATA, 0, 0xFFFF, version=9), dc,
                error="FRAME_BAD_VERSION", flags=["VERSION"]))
    c.append(ok("frm-dec-too-large", "Length 16380: one over the limit", ["max"],
                _hdr(FrameType.DATA, 0, MAX_BODY_SIZE + 1) + bytes(MAX_BODY_SIZE + 1), dc,
                error="FRAME_TOO_LARGE", flags=["OVERLENGTH"]))
    c.append(ok("frm-dec-too-large-header-only", "Length 0xFFFF, body absent: size first",
                ["max"], _hdr(FrameType.DATA, 0, 0xFFFF), dc, error="FRAME_TOO_LARGE",
                flags=["OVERLENGTH"]))
    for t in (0x00, 0xFF):
        c.append(ok(f"frm-dec-reserved-{t:02x}", f"reserved type 0x{t:02x}", ["reserved"],
                    _raw(t, b""), dc, error="FRAME_RESERVED_TYPE", flags=["RESERVED"]))
    for t in (0x05, 0x14, 0x24, 0x30, 0x41, 0x50, 0xDF):
        c.append(ok(f"frm-dec-unknown-{t:02x}", f"unassigned type 0x{t:02x}", ["unknown"],
                    _raw(t, b""), dc, error="FRAME_UNKNOWN_TYPE", flags=["UNKNOWN_TYPE"]))
    c.append(ok("frm-dec-pake-on-dc", "PAIR_PAKE is a tor-path type", ["path"],
                _raw(FrameType.PAIR_PAKE, encode_cbor({1: b"x"})), dc,
                error="FRAME_PATH_NOT_ALLOWED", flags=["PATH"]))
    c.append(ok("frm-dec-offer-on-dc", "RV_OFFER is a tor-path type", ["path"],
                _raw(FrameType.RV_OFFER, encode_cbor({1: 1})), dc,
                error="FRAME_PATH_NOT_ALLOWED", flags=["PATH"]))
    for fl in (0x01, 0x80):
        c.append(ok(f"frm-dec-ping-flag-{fl:02x}", f"PING with flag 0x{fl:02x}", ["flags"],
                    _raw(FrameType.PING, ping_body(NONCE), fl), dc, error="FRAME_BAD_FLAGS",
                    flags=["FLAGS"]))
    c.append(ok("frm-dec-data-flag-02", "DATA with undefined flag 0x02", ["flags"],
                _raw(FrameType.DATA, b"x", 0x02), dc, error="FRAME_BAD_FLAGS", flags=["FLAGS"]))
    # Invalid: CBOR bodies.
    cb = [
        ("nonmin", "a1180100", "CBOR_NON_MINIMAL", "cbor_minimal", "NON_MINIMAL"),
        ("unsorted", "a202000100", "CBOR_UNSORTED_KEYS", "cbor_sorted", "NON_CANONICAL"),
        ("dup", "a201000100", "CBOR_DUPLICATE_KEY", "cbor_dup", "NON_CANONICAL"),
        ("indef", "bf0100ff", "CBOR_FORBIDDEN", "cbor_indef", "FORBIDDEN"),
        ("float", "a101f93c00", "CBOR_FORBIDDEN", "cbor_simple", "FORBIDDEN"),
        ("notmap", "820102", "CBOR_NOT_MAP", "cbor_map", "SCHEMA"),
        ("empty", "", "CBOR_MALFORMED", "cbor_malformed", "TRUNCATED"),
        ("trailing", "a0a0", "CBOR_TRAILING", "cbor_single", "TRAILING"),
        ("badutf8", "a10162c328", "CBOR_INVALID_UTF8", "cbor_utf8", "FORBIDDEN"),
        ("textkey", "a1616101", "CBOR_FORBIDDEN", "cbor_keys", "FORBIDDEN"),
    ]
    for name, hx, code, tag, flag in cb:
        c.append(ok(f"frm-dec-error-cbor-{name}", f"ERROR body: {code}", ["cbor_body", tag],
                    _raw(FrameType.ERROR, bytes.fromhex(hx)), dc, error=code, flags=[flag]))
    c.append(ok("frm-dec-cbor-deep", "PING body nested 17 deep", ["cbor_body", "cbor_depth"],
                _raw(FrameType.PING, bytes.fromhex("a101" + "81" * 16 + "00")), dc,
                error="CBOR_TOO_DEEP", flags=["FORBIDDEN"]))
    # Invalid: schemas owned by p4-01.
    sch: list[tuple[str, FrameType, CborValue]] = [
        ("ping-nonce-7", FrameType.PING, {1: NONCE[:7]}),
        ("ping-nonce-int", FrameType.PING, {1: 7}),
        ("ping-extra-key", FrameType.PING, {1: NONCE, 2: 0}),
        ("pong-empty", FrameType.PONG, {}),
        ("error-no-reason", FrameType.ERROR, {1: 3}),
        ("error-code-big", FrameType.ERROR, {1: 0x10000, 2: ""}),
        ("error-reason-257", FrameType.ERROR, {1: 3, 2: "x" * 257}),
        ("error-reason-bytes", FrameType.ERROR, {1: 3, 2: b"x"}),
    ]
    for name, ft, val in sch:
        c.append(ok(f"frm-dec-{name}", f"{ft.name} body breaks its schema", ["schema"],
                    _raw(ft, encode_cbor(val)), dc, error="MESSAGE_INVALID", flags=["SCHEMA"]))
    return c


def _decode_tor() -> list[Json]:
    tor = Path.TOR
    c: list[Json] = []
    for ft in FrameType:
        if ft is FrameType.DATA:
            continue
        body = {
            FrameType.ERROR: error_body(0x0002, "bye"),
            FrameType.PING: ping_body(NONCE),
            FrameType.PONG: ping_body(NONCE),
            FrameType.PADDING: b"pad",
        }.get(ft, _map(3))
        c.append(_decode_case(f"frm-dec-tor-{ft.name.lower().replace('_', '-')}",
                              f"{ft.name} on the tor path", ["header", "path"],
                              _raw(ft, body), tor))
    c.append(_decode_case("frm-dec-tor-data", "DATA is a datachannel-only type",
                          ["path", "data_not_tor"],
                          _raw(FrameType.DATA, b"x"), tor, error="FRAME_PATH_NOT_ALLOWED",
                          flags=["PATH"]))
    c.append(_decode_case("frm-dec-tor-pake-unsorted", "PAIR_PAKE body keys unsorted",
                          ["cbor_body", "cbor_sorted"],
                          _raw(FrameType.PAIR_PAKE, bytes.fromhex("a202000100")),
                          tor, error="CBOR_UNSORTED_KEYS", flags=["NON_CANONICAL"]))
    c.append(_decode_case("frm-dec-tor-hello-nonmin-len", "RV_HELLO: non-minimal byte length",
                          ["cbor_body", "cbor_minimal"],
                          _raw(FrameType.RV_HELLO, bytes.fromhex("a101580100")),
                          tor, error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]))
    return c


def _encode_case(
    ident: str, comment: str, tags: list[str], frame: Frame, path: Path,
    *, error: str | None = None, flags: list[str] | None = None,
) -> Json:
    inp = {"type": frame.type, "flags": frame.flags, "body": frame.body.hex()}
    try:
        got: Any = {"frame": encode_frame(frame, path).hex()}
        got_err = None
    except P4Error as exc:
        got, got_err = None, exc.code.name
    if got_err != error:
        raise AssertionError(f"{ident}: codec says {got_err}, builder says {error}")
    reqs = [r for t in tags for r in T[t]]
    if error:
        return test(ident, comment, reqs, inp, valid=False, error=error, flags=flags)
    return test(ident, comment, reqs, inp, value=got, flags=flags)


def _encode(path: Path) -> list[Json]:
    e = _encode_case
    p = path.value
    c = [
        e(f"frm-enc-{p}-ping", "PING", ["encoder", "ping"],
          Frame(FrameType.PING, 0, ping_body(NONCE)), path),
        e(f"frm-enc-{p}-error", "ERROR", ["encoder", "error_body"],
          Frame(FrameType.ERROR, 0, error_body(0x0101, "truncated")), path),
        e(f"frm-enc-{p}-grease", "GREASE 0xFA may be sent", ["grease_send"],
          Frame(0xFA, 0, b"\x00"), path, flags=["IGNORABLE"]),
        e(f"frm-enc-{p}-unknown", "refuse an unassigned type", ["encoder", "unknown"],
          Frame(0x51, 0, b""), path, error="FRAME_UNKNOWN_TYPE", flags=["UNKNOWN_TYPE"]),
        e(f"frm-enc-{p}-reserved", "refuse type 0x00", ["encoder", "reserved"],
          Frame(0x00, 0, b""), path, error="FRAME_RESERVED_TYPE", flags=["RESERVED"]),
        e(f"frm-enc-{p}-flags", "refuse PONG with flags", ["encoder", "flags"],
          Frame(FrameType.PONG, 0x01, ping_body(NONCE)), path, error="FRAME_BAD_FLAGS",
          flags=["FLAGS"]),
        e(f"frm-enc-{p}-too-large", "refuse a 16380-byte body", ["encoder", "max"],
          Frame(FrameType.PADDING, 0, bytes(MAX_BODY_SIZE + 1)), path,
          error="FRAME_TOO_LARGE", flags=["OVERLENGTH"]),
        e(f"frm-enc-{p}-noncanonical", "refuse an unsorted CBOR body",
          ["encoder", "cbor_sorted"], Frame(FrameType.ERROR, 0, bytes.fromhex("a202600100")),
          path, error="CBOR_UNSORTED_KEYS", flags=["NON_CANONICAL"]),
    ]
    if path is Path.DATACHANNEL:
        c.append(e("frm-enc-datachannel-data-fin", "DATA with FIN", ["encoder", "data"],
                   Frame(FrameType.DATA, FLAG_FIN, b"\x01\x02"), path))
    else:
        c.append(e("frm-enc-tor-data", "refuse DATA on tor", ["encoder", "path", "data_not_tor"],
                   Frame(FrameType.DATA, 0, b""), path, error="FRAME_PATH_NOT_ALLOWED",
                   flags=["PATH"]))
        c.append(e("frm-enc-tor-pair-pake", "PAIR_PAKE on tor", ["encoder"],
                   Frame(FrameType.PAIR_PAKE, 0, _map(2)), path))
    return c


def _stream_case(ident: str, comment: str, tags: list[str], chunks: list[bytes],
                 *, error: str | None = None, flags: list[str] | None = None) -> Json:
    reader = FrameReader(Path.TOR)
    frames: list[Json] = []
    got_err = None
    try:
        for ch in chunks:
            reader.feed(ch)
            while (f := reader.next_frame()) is not None:
                frames.append({"type": f.type, "flags": f.flags, "body": f.body.hex()})
    except P4Error as exc:
        got_err = exc.code.name
    if got_err != error:
        raise AssertionError(f"{ident}: reader says {got_err}, builder says {error}")
    inp = {"chunks": [ch.hex() for ch in chunks]}
    reqs = [r for t in tags for r in T[t]]
    if error:
        return test(ident, comment, reqs, inp, valid=False, error=error, flags=flags)
    return test(ident, comment, reqs, inp, value={"frames": frames, "pending": reader.pending},
                flags=flags)


def _stream() -> list[Json]:
    ping = _raw(FrameType.PING, ping_body(NONCE))
    err = _raw(FrameType.ERROR, error_body(5, "t"))
    grease = _raw(0xEA, b"zz")
    both = ping + err
    s = _stream_case
    return [
        s("frm-stream-one", "one frame in one read", ["stream"], [ping]),
        s("frm-stream-bytewise", "two frames, one byte per read", ["stream"],
          [both[i : i + 1] for i in range(len(both))], flags=["STREAM"]),
        s("frm-stream-split-header", "split inside the header", ["stream"],
          [ping[:3], ping[3:] + err], flags=["STREAM"]),
        s("frm-stream-partial", "a frame and the start of the next: 1 frame, 4 pending",
          ["stream"], [ping + err[:4]], flags=["STREAM"]),
        s("frm-stream-grease-skipped", "an ignorable frame between two frames is discarded",
          ["stream_ignorable", "ignorable"], [ping + grease + err], flags=["IGNORABLE"]),
        s("frm-stream-too-large-early", "oversize detected from the header alone",
          ["stream_header", "max", "stream_fatal"], [ping + _hdr(FrameType.PADDING, 0, 0xFFFF)],
          error="FRAME_TOO_LARGE", flags=["OVERLENGTH"]),
        s("frm-stream-bad-second", "an unknown type after a good frame is fatal",
          ["stream", "stream_fatal", "unknown"], [ping + _raw(0x50, b"")],
          error="FRAME_UNKNOWN_TYPE", flags=["UNKNOWN_TYPE"]),
        s("frm-stream-data-on-tor", "DATA on the tor stream", ["stream", "path", "data_not_tor"],
          [_raw(FrameType.DATA, b"x")], error="FRAME_PATH_NOT_ALLOWED", flags=["PATH"]),
    ]


def _cbor_case(ident: str, comment: str, tags: list[str], hx: str,
               *, error: str | None = None, flags: list[str] | None = None) -> Json:
    data = bytes.fromhex(hx)
    try:
        got: Any = cbor_json(decode_cbor(data))
        got_err = None
    except P4Error as exc:
        got, got_err = None, exc.code.name
    if got_err != error:
        raise AssertionError(f"{ident}: decoder says {got_err}, builder says {error}")
    reqs = [r for t in tags for r in T[t]]
    if error:
        return test(ident, comment, reqs, {"cbor": hx}, valid=False, error=error, flags=flags)
    if encode_cbor(decode_cbor(data)) != data:
        raise AssertionError(f"{ident}: valid vector does not re-encode to itself")
    return test(ident, comment, reqs, {"cbor": hx}, value=got, flags=flags)


def _cbor() -> list[Json]:
    v = _cbor_case
    return [
        v("cbor-uint-0", "0", ["cbor_subset"], "00"),
        v("cbor-uint-23", "23: largest immediate", ["cbor_minimal"], "17", flags=["BOUNDARY"]),
        v("cbor-uint-24", "24: smallest one-byte argument", ["cbor_minimal"], "1818",
          flags=["BOUNDARY"]),
        v("cbor-uint-max", "2^64-1", ["cbor_subset"], "1bffffffffffffffff", flags=["BOUNDARY"]),
        v("cbor-negint-min", "-2^64", ["cbor_subset"], "3bffffffffffffffff", flags=["BOUNDARY"]),
        v("cbor-bytes", "h'0102'", ["cbor_subset"], "420102"),
        v("cbor-text", "\"P⁴\"", ["cbor_subset"], "6450e281b4"),
        v("cbor-array", "[1, [true, null]]", ["cbor_subset"], "820182f5f6"),
        v("cbor-map-sorted", "{0: false, 1: h'', 24: \"\"}", ["cbor_sorted"], "a300f40140181860"),
        v("cbor-depth-16", "16 nested arrays", ["cbor_depth"], "81" * 15 + "80",
          flags=["BOUNDARY"]),
        v("cbor-nonmin-uint", "1 in two bytes", ["cbor_minimal"], "1801",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-nonmin-uint16", "255 in three bytes", ["cbor_minimal"], "1900ff",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-nonmin-uint64", "2^32-1 in nine bytes", ["cbor_minimal"], "1b00000000ffffffff",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-nonmin-negint", "-1 in two bytes", ["cbor_minimal"], "3800",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-nonmin-strlen", "text length 1 in two bytes", ["cbor_minimal"], "780161",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-nonmin-maplen", "map count in two bytes", ["cbor_minimal"], "b80100f4",
          error="CBOR_NON_MINIMAL", flags=["NON_MINIMAL"]),
        v("cbor-unsorted", "{1: 0, 0: 0}", ["cbor_sorted"], "a201000000",
          error="CBOR_UNSORTED_KEYS", flags=["NON_CANONICAL"]),
        v("cbor-unsorted-length", "{24: 0, 1: 0}", ["cbor_sorted"], "a21818000100",
          error="CBOR_UNSORTED_KEYS", flags=["NON_CANONICAL"]),
        v("cbor-duplicate", "{1: 0, 1: 1}", ["cbor_dup"], "a201000101",
          error="CBOR_DUPLICATE_KEY", flags=["NON_CANONICAL"]),
        v("cbor-indef-bytes", "indefinite byte string", ["cbor_indef"], "5f4101ff",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-indef-array", "indefinite array", ["cbor_indef"], "9f01ff",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-tag", "tag 1 (epoch time)", ["cbor_tag"], "c11a514b67b0",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-bignum", "tag 2 bignum", ["cbor_tag"], "c249010000000000000000",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-float16", "half float 1.0", ["cbor_simple"], "f93c00",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-float64", "double 1.1", ["cbor_simple"], "fb3ff199999999999a",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-undefined", "undefined", ["cbor_simple"], "f7",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-simple-16", "simple(16)", ["cbor_simple"], "f0",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-negative-key", "{-1: 0}", ["cbor_keys"], "a12000",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-bytes-key", "{h'': 0}", ["cbor_keys"], "a14000",
          error="CBOR_FORBIDDEN", flags=["FORBIDDEN"]),
        v("cbor-deep-17", "17 nested arrays", ["cbor_depth"], "81" * 16 + "80",
          error="CBOR_TOO_DEEP", flags=["FORBIDDEN"]),
        v("cbor-bad-utf8", "text with a lone continuation byte", ["cbor_utf8"], "6180",
          error="CBOR_INVALID_UTF8", flags=["FORBIDDEN"]),
        v("cbor-surrogate", "text holding a UTF-16 surrogate", ["cbor_utf8"], "63eda080",
          error="CBOR_INVALID_UTF8", flags=["FORBIDDEN"]),
        v("cbor-text-bom", "text beginning with U+FEFF (ef bb bf): valid, kept, not stripped",
          ["cbor_bom"], "66efbbbf616263", flags=["BOUNDARY"]),
        v("cbor-empty", "no bytes", ["cbor_malformed"], "", error="CBOR_MALFORMED",
          flags=["TRUNCATED"]),
        v("cbor-trunc-arg", "argument cut short", ["cbor_malformed"], "19ff",
          error="CBOR_MALFORMED", flags=["TRUNCATED"]),
        v("cbor-trunc-string", "string cut short", ["cbor_malformed"], "43aabb",
          error="CBOR_MALFORMED", flags=["TRUNCATED"]),
        v("cbor-trunc-array", "array missing an element", ["cbor_count"], "8201",
          error="CBOR_MALFORMED", flags=["TRUNCATED"]),
        v("cbor-huge-count", "array claiming 2^64-1 elements", ["cbor_count"],
          "9bffffffffffffffff00", error="CBOR_MALFORMED", flags=["TRUNCATED"]),
        v("cbor-reserved-ai", "additional information 28", ["cbor_reserved_ai"], "1c",
          error="CBOR_MALFORMED", flags=["FORBIDDEN"]),
        v("cbor-stray-break", "break byte alone", ["cbor_break"], "ff",
          error="CBOR_MALFORMED", flags=["FORBIDDEN"]),
        v("cbor-trailing", "two items", ["cbor_single"], "0000", error="CBOR_TRAILING",
          flags=["TRAILING"]),
    ]


def _cbor_encode() -> list[Json]:
    """cbor.encode (p4-01 §12, FRM-54): sorting, refused duplicates, the order of the checks."""
    def i(n: int) -> Json:
        return {"int": str(n)}

    def deep(n: int) -> Json:
        v: Json = i(1)
        for _ in range(n):
            v = {"array": [v]}
        return v

    cases = [
        ("cbor-enc-sorted", "pairs given unsorted are encoded sorted", {"map": [
            [i(24), i(0)], [i(1), {"text": "a"}], [i(0), {"bool": True}]]}),
        ("cbor-enc-duplicate", "a key named twice: CBOR_DUPLICATE_KEY, never 'last wins'",
         {"map": [[i(1), i(0)], [i(1), i(5)]]}),
        ("cbor-enc-duplicate-first", "a duplicate key deep inside is found before an earlier "
         "text key", {"map": [[{"text": "k"}, i(0)], [i(2), {"map": [[i(1), i(0)],
                                                                     [i(1), i(0)]]}]]}),
        ("cbor-enc-order-key", "a text key before an out-of-range value: CBOR_FORBIDDEN",
         {"map": [[{"text": "k"}, i(1)], [i(1), i(2**64)]]}),
        ("cbor-enc-order-value", "an out-of-range value before a text key: MESSAGE_INVALID",
         {"map": [[i(1), i(2**64)], [{"text": "k"}, i(1)]]}),
        ("cbor-enc-depth-16", "16 nested containers", deep(16)),
        ("cbor-enc-depth-17", "17 nested containers: CBOR_TOO_DEEP", deep(17)),
        ("cbor-enc-negint-min", "-2^64 is in range", i(-(2**64))),
    ]
    out = []
    for ident, comment, value in cases:
        got = handle({"id": 0, "op": "cbor.encode", "params": {}, "input": {"value": value}})
        reqs = T["cbor_encode"]
        if got["status"] == "ok":
            out.append(test(ident, comment, reqs, {"value": value}, value=got["value"]))
        else:
            out.append(test(ident, comment, reqs, {"value": value}, valid=False,
                            error=got["error"], flags=["NON_CANONICAL"]))
    return out


def build() -> dict[str, Json]:
    spec = "p4-01-framing-v1"
    rev = spec_revision(spec)
    files = {
        "framing/decode.json": envelope("framing", spec, rev, NOTES, [
            group("framing.decode", _decode_dc(), {"path": "datachannel"}),
            group("framing.decode", _decode_tor(), {"path": "tor"}),
        ]),
        "framing/encode.json": envelope("framing", spec, rev, NOTES, [
            group("framing.encode", _encode(Path.DATACHANNEL), {"path": "datachannel"}),
            group("framing.encode", _encode(Path.TOR), {"path": "tor"}),
        ]),
        "framing/stream.json": envelope("framing", spec, rev, NOTES, [
            group("framing.stream", _stream(), {"path": "tor"}),
        ]),
        "framing/cbor.json": envelope("framing", "p4-00-conventions",
                                      spec_revision("p4-00-conventions"), NOTES, [
            group("cbor.decode", _cbor()),
            group("cbor.encode", _cbor_encode()),
        ]),
    }
    return files


if __name__ == "__main__":  # pragma: no cover - debugging aid
    for name, obj in build().items():
        print(name, obj["numberOfTests"], len(dump(obj)))
