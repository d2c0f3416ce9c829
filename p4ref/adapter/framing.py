"""Reference-adapter ops for the framing layer (p4-01) and the CBOR subset (p4-00 §5).

Ops (conformance/README.md §3.2): ``framing.decode``, ``framing.encode``, ``framing.stream``,
``cbor.decode``, ``cbor.encode``.  Bytes are lowercase hex; CBOR values use the JSON form of
:func:`p4ref.framing.cbor_json`, which :func:`cbor_from_json` inverts.
"""

from __future__ import annotations

from typing import Any

from .. import framing as fr
from ..errors import ErrorCode, LocalProtocolError, P4Error
from ._jsonargs import Json, Op, int_value

__all__ = ["cbor_from_json", "vectors_ops"]


def _hex(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a hex string")
    return bytes.fromhex(value)


def _int(value: Any, what: str) -> int:
    """A small integer in either JSON form; a malformed request is INTERNAL_ERROR (a bug in the
    caller, conformance/README.md §2.4), not a protocol error."""
    try:
        return int_value(value, what)
    except P4Error:
        raise TypeError(f"{what} must be an integer") from None


def _decode(params: Json, inp: Json) -> Json:
    f = fr.decode_frame(_hex(inp["frame"], "input.frame"), fr.Path(params["path"]))
    return {"type": f.type, "flags": f.flags, "body": f.body.hex(), "ignorable": f.ignorable}


def _encode(params: Json, inp: Json) -> Json:
    frame = fr.Frame(_int(inp["type"], "type"), _int(inp.get("flags", 0), "flags"),
                     _hex(inp["body"], "body"))
    return {"frame": fr.encode_frame(frame, fr.Path(params["path"])).hex()}


def _stream(params: Json, inp: Json) -> Json:
    reader = fr.FrameReader(fr.Path(params.get("path", "tor")))
    frames: list[Json] = []
    for chunk in inp["chunks"]:
        reader.feed(_hex(chunk, "input.chunks[]"))
        while (f := reader.next_frame()) is not None:
            frames.append({"type": f.type, "flags": f.flags, "body": f.body.hex()})
    return {"frames": frames, "pending": reader.pending}


def _cbor_decode(params: Json, inp: Json) -> Any:
    data = _hex(inp["cbor"], "input.cbor")
    value = fr.decode_cbor_map(data) if params.get("map") else fr.decode_cbor(data)
    return fr.cbor_json(value)  # the response value *is* the JSON form


def _cbor_encode(params: Json, inp: Json) -> Json:  # input.value: a CBOR JSON form
    return {"cbor": fr.encode_cbor(cbor_from_json(inp["value"])).hex()}


def cbor_from_json(form: Any) -> Any:
    """Inverse of :func:`p4ref.framing.cbor_json` (the JSON form of conformance/README.md)."""
    if not isinstance(form, dict) or len(form) != 1:
        raise TypeError(f"not a CBOR JSON form: {form!r}")
    ((kind, v),) = form.items()
    if kind == "int":
        return int(v)
    if kind == "bytes":
        return _hex(v, "bytes")
    if kind == "text":
        return str(v)
    if kind == "bool":
        return bool(v)
    if kind == "null":
        return None
    if kind == "array":
        return [cbor_from_json(x) for x in v]
    if kind == "map":  # a key named twice is refused, never "last wins" (p4-01 §12)
        out: dict[Any, Any] = {}
        for k, x in v:
            key = cbor_from_json(k)
            if isinstance(key, list | dict):
                raise LocalProtocolError(ErrorCode.CBOR_FORBIDDEN, "a map key that is a container")
            if key in out:
                raise LocalProtocolError(ErrorCode.CBOR_DUPLICATE_KEY, f"map key {key!r} twice")
            out[key] = cbor_from_json(x)
        return out
    raise TypeError(f"unknown CBOR JSON kind {kind!r}")


def vectors_ops() -> dict[str, Op]:
    """The L0 codec ops the conformance adapter serves."""
    return {
        "framing.decode": _decode,
        "framing.encode": _encode,
        "framing.stream": _stream,
        "cbor.decode": _cbor_decode,
        "cbor.encode": _cbor_encode,
    }
