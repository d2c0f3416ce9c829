"""Strict reading of request bodies and stream frames: every field typed, bounded, and nothing
unknown (the same rules ``docs/openapi.yaml`` states with ``additionalProperties: false``)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection
from typing import Any

from .errors import ApiError, ApiErrorCode
from .tokens import channel_name_ok

__all__ = [
    "JsonObject",
    "dumps",
    "get_bool",
    "get_int",
    "get_ref",
    "get_str",
    "idempotency_key",
    "message_data",
    "parse_object",
]

JsonObject = dict[str, Any]
MAX_KEY = 128
_KEY = re.compile(r"[\x21-\x7e]{1,128}")


def bad(message: str) -> ApiError:
    return ApiError(ApiErrorCode.BAD_REQUEST, message)


def dumps(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_object(text: str | bytes, allowed: Collection[str]) -> JsonObject:
    """A JSON object with no keys outside ``allowed`` (BAD_REQUEST otherwise)."""
    try:
        obj = json.loads(text, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        raise bad("the body is not valid JSON") from None
    if not isinstance(obj, dict):
        raise bad("the body must be a JSON object")
    extra = sorted(set(obj) - set(allowed))
    if extra:
        raise bad(f"unknown field {extra[0]!r}")
    return obj


def get_str(obj: JsonObject, key: str, *, required: bool = True, max_len: int = 1024,
            channel: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise bad(f"field {key!r} is required")
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        raise bad(f"field {key!r} must be a string of 1 to {max_len} characters")
    if channel and not channel_name_ok(value):
        raise bad(f"field {key!r}: a channel name is 1-200 printable ASCII characters, no space")
    return value


def get_int(obj: JsonObject, key: str, default: int, lo: int, hi: int) -> int:
    value = obj.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad(f"field {key!r} must be an integer from {lo} to {hi}")
    return value


def get_bool(obj: JsonObject, key: str, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise bad(f"field {key!r} must be true or false")
    return value


def get_ref(obj: JsonObject) -> str | int | None:
    """The optional ``ref`` a stream frame carries, echoed in the answer."""
    ref = obj.get("ref")
    if ref is None:
        return None
    if isinstance(ref, bool) or not (
            (isinstance(ref, int) and 0 <= ref < 2**53)
            or (isinstance(ref, str) and len(ref) <= 128)):
        raise bad("field 'ref' must be a string of at most 128 characters or an integer"
                  " from 0 to 2^53-1")
    return ref


def idempotency_key(value: object) -> str:
    if value is None:
        raise bad("an idempotency key is required (header Idempotency-Key, or 'key')")
    if not isinstance(value, str) or not _KEY.fullmatch(value):
        raise bad("an idempotency key is 1-128 printable ASCII characters, no space")
    return value


def message_data(obj: JsonObject, limit: int) -> bytes:
    """The message of a send: exactly one of ``data`` (base64) or ``text`` (UTF-8)."""
    data, text = obj.get("data"), obj.get("text")
    if (data is None) == (text is None):
        raise bad("give exactly one of 'data' (base64) and 'text'")
    if text is not None:
        if not isinstance(text, str):
            raise bad("field 'text' must be a string")
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError:
            raise bad("field 'text' is not valid Unicode (lone surrogate)") from None
    else:
        if not isinstance(data, str) or len(data) > 4 * ((limit + 2) // 3):
            raise bad("field 'data' must be a base64 string") if not isinstance(data, str) \
                else ApiError(ApiErrorCode.PAYLOAD_TOO_LARGE, f"a message is at most {limit}"
                              " bytes")
        try:
            raw = base64.b64decode(data.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise bad("field 'data' is not valid base64") from None
    if len(raw) > limit:
        raise ApiError(ApiErrorCode.PAYLOAD_TOO_LARGE, f"a message is at most {limit} bytes")
    return raw
