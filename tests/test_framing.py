"""Framing codec: round trips, strictness properties and the framing vectors (p4-01)."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p4ref.errors import DecodeError, ErrorCode, LocalProtocolError
from p4ref.framing import (
    FLAG_FIN,
    FRAME,
    HEADER,
    HEADER_LEN,
    MAX_BODY_SIZE,
    REGISTRY,
    BodyKind,
    Frame,
    FrameReader,
    FrameType,
    Path,
    cbor_json,
    decode_cbor,
    decode_cbor_map,
    decode_frame,
    encode_cbor,
    encode_frame,
    error_body,
    parse_error_body,
    ping_body,
)
from p4ref.framing._codec import _HEADER_STRUCT

VECTORS = FsPath(__file__).resolve().parent.parent / "test-vectors" / "v1" / "framing"
NONCE = b"\x00\x01\x02\x03\x04\x05\x06\x07"


def _body_for(ft: FrameType) -> bytes:
    if ft is FrameType.ERROR:
        return error_body(ErrorCode.TIMEOUT, "too slow")
    if ft in (FrameType.PING, FrameType.PONG):
        return ping_body(NONCE)
    if REGISTRY[ft].body is BodyKind.CBOR:
        return encode_cbor({1: b"\x01" * 32, 2: 7, 3: "x"})
    return b"\x00payload\xff"


# --- table-driven round trips: every assigned type, on every path it is allowed on ----------

ROUND_TRIPS = [
    (ft, path) for ft, info in REGISTRY.items() for path in sorted(info.paths)
]


@pytest.mark.parametrize(("ftype", "path"), ROUND_TRIPS, ids=lambda v: getattr(v, "name", v))
def test_round_trip_every_type(ftype: FrameType, path: Path) -> None:
    """The encoder writes Version 1 and the exact Length itself (FRM-5, FRM-6, FRM-41)."""
    frame = Frame(ftype, 0, _body_for(ftype))
    wire = encode_frame(frame, path)
    assert wire[0] == 1 and wire[1] == ftype
    assert int.from_bytes(wire[3:5], "big") == len(frame.body)
    assert decode_frame(wire, path) == frame
    declared = FRAME.build({"version": 1, "type": ftype, "flags": 0, "body": frame.body})
    assert declared == wire  # the compiled fast path agrees with the declared struct
    reader = FrameReader(path)
    reader.feed(wire)
    assert reader.next_frame() == frame
    assert reader.pending == 0


@pytest.mark.parametrize(
    ("ftype", "path"),
    [(ft, p) for ft, info in REGISTRY.items() for p in Path if p not in info.paths],
)
def test_type_refused_off_its_paths(ftype: FrameType, path: Path) -> None:
    frame = Frame(ftype, 0, _body_for(ftype))
    with pytest.raises(LocalProtocolError) as exc:
        encode_frame(frame, path)
    assert exc.value.code is ErrorCode.FRAME_PATH_NOT_ALLOWED
    allowed = next(iter(REGISTRY[ftype].paths))
    with pytest.raises(DecodeError) as dexc:
        decode_frame(encode_frame(frame, allowed), path)
    assert dexc.value.code is ErrorCode.FRAME_PATH_NOT_ALLOWED


def test_error_body_round_trip_and_truncation() -> None:
    body = error_body(ErrorCode.FRAME_TOO_LARGE, "é" * 200)  # 400 bytes → cut to 256
    code, reason = parse_error_body(body)
    assert code == ErrorCode.FRAME_TOO_LARGE
    assert reason == "é" * 128


def test_data_fin_and_max_size() -> None:
    big = Frame(FrameType.DATA, FLAG_FIN, bytes(MAX_BODY_SIZE))
    wire = encode_frame(big, Path.DATACHANNEL)
    assert len(wire) == 16384
    assert decode_frame(wire, Path.DATACHANNEL) == big
    with pytest.raises(LocalProtocolError) as exc:
        encode_frame(Frame(FrameType.DATA, 0, bytes(MAX_BODY_SIZE + 1)), Path.DATACHANNEL)
    assert exc.value.code is ErrorCode.FRAME_TOO_LARGE


def test_reader_is_fatal_after_error_and_bounded() -> None:
    """After a stream error the reader repeats it and returns no frame (FRM-38)."""
    reader = FrameReader(Path.TOR)
    reader.feed(bytes([1, 0x50, 0, 0, 0]))
    for _ in range(2):  # the error is sticky
        with pytest.raises(DecodeError) as exc:
            reader.next_frame()
        assert exc.value.code is ErrorCode.FRAME_UNKNOWN_TYPE
    small = FrameReader(Path.TOR, max_buffer=10)
    small.feed(b"\x01" * 10)
    with pytest.raises(LocalProtocolError):
        small.feed(b"\x01")


def test_encoder_refuses_values_outside_the_subset() -> None:
    """Encoders emit only the deterministic subset and refuse the rest (CNV-27, CNV-28)."""
    for bad in (1.5, {-1: 0}, {"k": 0}, 1 << 64, {True: 0}, object()):
        with pytest.raises(LocalProtocolError):
            encode_cbor(bad)  # type: ignore[arg-type]
    nested: Any = []
    for _ in range(16):
        nested = [nested]
    with pytest.raises(LocalProtocolError) as exc:
        encode_cbor(nested)
    assert exc.value.code is ErrorCode.CBOR_TOO_DEEP


# --- properties -----------------------------------------------------------------------------

cbor_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.integers(0, (1 << 64) - 1), inner, max_size=4),
    max_leaves=20,
)


@given(cbor_values)
def test_cbor_round_trip_is_canonical(value: Any) -> None:
    wire = encode_cbor(value)
    back = decode_cbor(wire)
    assert back == value
    assert encode_cbor(back) == wire
    assert cbor_json(back) == cbor_json(value)


@given(st.dictionaries(st.integers(0, 2**32), cbor_values, max_size=6))
def test_every_cbor_frame_type_round_trips(fields: dict[int, Any]) -> None:
    body = encode_cbor(fields)
    for ft, info in REGISTRY.items():
        if info.body is not BodyKind.CBOR or ft in (
            FrameType.ERROR, FrameType.PING, FrameType.PONG
        ):
            continue
        if len(body) > MAX_BODY_SIZE:
            return
        frame = Frame(ft, 0, body)
        assert decode_frame(encode_frame(frame, Path.TOR), Path.TOR) == frame
        assert decode_cbor_map(frame.body) == fields


@given(st.binary(max_size=HEADER_LEN + 64), st.sampled_from(list(Path)))
@settings(max_examples=400)
def test_arbitrary_bytes_give_a_frame_or_a_typed_error(data: bytes, path: Path) -> None:
    try:
        frame = decode_frame(data, path)
    except DecodeError as exc:
        assert isinstance(exc.code, ErrorCode)
        return
    # Anything accepted re-encodes to the same bytes (unless it is ignorable, never re-sent).
    if not frame.ignorable:
        assert encode_frame(frame, path) == data


@given(st.binary(max_size=80))
@settings(max_examples=400)
def test_arbitrary_bytes_never_break_the_cbor_decoder(data: bytes) -> None:
    """Whatever is accepted is already canonical: nothing is repaired (CNV-8)."""
    try:
        value = decode_cbor(data)
    except DecodeError as exc:
        assert exc.code.name.startswith("CBOR_")
        return
    assert encode_cbor(value) == data  # accepted ⇒ canonical


@given(st.lists(st.binary(max_size=30), max_size=8))
def test_stream_reader_never_raises_anything_else(chunks: list[bytes]) -> None:
    reader = FrameReader(Path.TOR)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while reader.next_frame() is not None:
                pass
    except DecodeError:
        pass


@given(st.lists(st.sampled_from(list(FrameType)), min_size=1, max_size=6), st.data())
def test_stream_split_anywhere_gives_the_same_frames(types: list[FrameType], data: Any) -> None:
    """Frames back to back on a stream, split anywhere, decode the same, each independently of
    the ones before (FRM-1, FRM-31, FRM-43)."""
    frames = [Frame(t, 0, _body_for(t)) for t in types if Path.TOR in REGISTRY[t].paths]
    wire = b"".join(encode_frame(f, Path.TOR) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=5)))
    reader = FrameReader(Path.TOR)
    got: list[Frame] = []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        reader.feed(wire[a:b])
        while (f := reader.next_frame()) is not None:
            got.append(f)
    assert got == frames


# --- vector coverage (tests/test_vectors.py replays them all through the adapter) ------------


def _vector_cases() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    cases = []
    for file in sorted(VECTORS.glob("*.json")):
        doc = json.loads(file.read_text("utf-8"))
        for grp in doc["testGroups"]:
            for t in grp["tests"]:
                cases.append((t["id"], {"op": grp["op"], "params": grp["params"]}, t))
    return cases


def test_vectors_cover_every_type_and_framing_error() -> None:
    cases = _vector_cases()
    assert len(cases) >= 60
    invalid = [c for c in cases if c[2]["result"] == "invalid"]
    assert len(invalid) * 3 >= len(cases)
    errors = {c[2]["expect"]["error"] for c in invalid}
    framing_codes = {c.name for c in ErrorCode if 0x0100 <= c < 0x0200}
    assert framing_codes <= errors, framing_codes - errors
    seen_types = set()
    for _, grp, case in cases:
        if grp["op"] == "framing.decode" and case["result"] == "valid":
            seen_types.add(case["expect"]["value"]["type"])
    assert {int(t) for t in FrameType} <= seen_types


@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_struct_header_is_the_construct_header(version: int, ftype: int, flags: int,
                                               length: int) -> None:
    """The hot path's struct format (``_HEADER_STRUCT``) and the declared :data:`HEADER` give the
    same five bytes and the same four values for every header."""
    wire = HEADER.build({"version": version, "type": ftype, "flags": flags, "length": length})
    assert _HEADER_STRUCT.pack(version, ftype, flags, length) == wire
    h = HEADER.parse(wire)
    assert _HEADER_STRUCT.unpack_from(wire + b"body") == (h.version, h.type, h.flags, h.length)
