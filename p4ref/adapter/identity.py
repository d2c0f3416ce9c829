"""Reference-adapter ops for the identity layer (p4-02 §3): codec and crypto ops.

``vectors_ops()`` maps an op name to ``fn(params, input) -> value``; bytes are lowercase hex in
both directions and an error result is a raised :class:`~p4ref.errors.P4Error` whose code name
the harness compares. Ops (vectors in ``test-vectors/v1/identity/``):

- ``identity.device_id_encode``  {public_key} -> {device_id}
- ``identity.device_id_decode``  {text} -> {public_key}
- ``identity.keypair``           {seed} -> {public_key}
- ``identity.sign``              {seed, message} -> {signature}
- ``identity.verify``            {public_key, message, signature} -> {valid: true}
"""

from __future__ import annotations

from p4ref.errors import ErrorCode, LocalProtocolError
from p4ref.identity._device_id import device_id, parse_device_id
from p4ref.identity._keys import Identity, verify

from ._jsonargs import Json, Op
from ._jsonargs import hex_arg as _hex

__all__ = ["vectors_ops"]


def _encode(params: Json, inp: Json) -> Json:
    return {"device_id": device_id(_hex(inp, "public_key"))}


def _decode(params: Json, inp: Json) -> Json:
    text = inp.get("text")
    if not isinstance(text, str):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, "input.text must be a string")
    return {"public_key": parse_device_id(text).hex()}


def _keypair(params: Json, inp: Json) -> Json:
    return {"public_key": Identity(_hex(inp, "seed")).public_key.hex()}


def _sign(params: Json, inp: Json) -> Json:
    return {"signature": Identity(_hex(inp, "seed")).sign(_hex(inp, "message")).hex()}


def _verify(params: Json, inp: Json) -> Json:
    verify(_hex(inp, "public_key"), _hex(inp, "message"), _hex(inp, "signature"))
    return {"valid": True}


def vectors_ops() -> dict[str, Op]:
    """The identity ops the conformance adapter serves (p4-02 §3)."""
    return {
        "identity.device_id_encode": _encode,
        "identity.device_id_decode": _decode,
        "identity.keypair": _keypair,
        "identity.sign": _sign,
        "identity.verify": _verify,
    }
