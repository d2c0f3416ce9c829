"""Reading the JSON arguments of conformance-adapter operations (conformance/README.md).

Every layer module of :mod:`p4ref.adapter` turns a request's ``params``/``input`` objects into
codec and machine calls; these helpers are the one place that checks the JSON shapes, so a
malformed request is always ``MESSAGE_INVALID`` with the same wording.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import ErrorCode, LocalProtocolError

__all__ = ["Json", "Op", "hex_arg", "int_arg", "str_arg"]

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


def int_arg(inp: Json, key: str, default: int | None = None) -> int:
    value = inp.get(key, default)
    if type(value) is not int:
        raise LocalProtocolError(ErrorCode.MESSAGE_INVALID, f"{key} must be an integer")
    return value
