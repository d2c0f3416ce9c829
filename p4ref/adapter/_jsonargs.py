"""Reading the JSON arguments of conformance-adapter operations (conformance/README.md).

Every layer module of :mod:`p4ref.adapter` turns a request's ``params``/``input`` objects into
codec and machine calls; these helpers are the one place that checks the JSON shapes, so a
malformed request is always ``MESSAGE_INVALID`` with the same wording.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ErrorCode, LocalProtocolError, P4Error

__all__ = [
    "MAX_SAFE_INT", "Json", "ListRng", "Op", "hex_arg", "int_arg", "int_value", "run_listed_op",
    "str_arg",
]  # fmt: skip

Json = dict[str, Any]
#: One adapter operation: ``(params, input) -> value``; raise a P4Error for an error result.
Op = Callable[[Json, Json], Json]


def hex_arg(inp: Json, key: str) -> bytes:
    value = inp.get(key)
    if not isinstance(value, str):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} is not hex") from None


def str_arg(inp: Json, key: str) -> str:
    value = inp.get(key)
    if not isinstance(value, str):
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} must be a string")
    return value


#: The largest integer a JSON number carries exactly everywhere (conformance/README.md §3.1).
MAX_SAFE_INT = 2**53 - 1


def int_value(value: Any, what: str) -> int:
    """An integer in either JSON form: a bare number, or the lossless ``{"int": "<decimal>"}``
    that vectors use beyond 2^53 - 1 (conformance/README.md §3.1); both are accepted at any size."""
    if type(value) is int:
        return value
    if isinstance(value, dict) and value.keys() == {"int"}:
        text = value["int"]
        if isinstance(text, str) and _canonical_decimal(text):
            return int(text)
    raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{what} must be an integer")


def _canonical_decimal(text: str) -> bool:
    digits = text[1:] if text.startswith("-") else text
    return (digits.isascii() and digits.isdigit() and (digits == "0" or digits[0] != "0")
            and text != "-0")


def int_arg(inp: Json, key: str, default: int | None = None) -> int:
    return int_value(inp.get(key, default), key)


def run_listed_op(ops: dict[str, Op], op: str, params: Json, inp: Json) -> Json:
    """Run one of a layer's ops for tests and vector builders: ``{"value": …}`` or
    ``{"error": NAME}`` (the adapter's own dispatch answers the wire form instead)."""
    try:
        return {"value": ops[op](params, inp)}
    except P4Error as exc:
        return {"error": exc.code.name}


class ListRng:
    """The machine's randomness replayed from the vector's ``rng`` list."""

    __slots__ = ("_values",)

    def __init__(self, values: list[bytes]) -> None:
        self._values = list(values)

    def __call__(self, n: int) -> bytes:
        if not self._values:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, "transcript rng exhausted")
        v = self._values.pop(0)
        if len(v) != n:
            raise LocalProtocolError(ErrorCode.INTERNAL_ERROR, f"rng value has {len(v)} != {n}")
        return v

    @property
    def left(self) -> int:
        return len(self._values)
