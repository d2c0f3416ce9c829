"""Errors of the local API: a stable string code, an HTTP status, and a sentence for humans.

Every answer the API gives for a failed request is ``{"error": {"code": CODE, "message": TEXT}}``
(HTTP) or ``{"type": "error", "code": CODE, "message": TEXT, ...}`` (WebSocket). Clients branch
on ``code`` only; ``message`` may change. The table below is the registry ``docs/local-api.md``
and ``docs/openapi.yaml`` list; a test compares them. A :class:`~p4ref.errors.P4Error` raised by
the backend (the per-peer link) keeps its registry name (``SES_OUTBOX_FULL``, ``PEER_UNKNOWN``…)
and gets the status :data:`P4_STATUS` gives it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from p4ref.errors import ErrorCode, P4Error

__all__ = ["P4_STATUS", "ApiError", "ApiErrorCode", "from_p4error"]


class ApiErrorCode(StrEnum):
    """Codes of the local API itself; :attr:`status` is the HTTP status each is answered with."""

    BAD_REQUEST = "BAD_REQUEST"  # bad JSON, a missing/mistyped field, a value out of range
    TOKEN_IN_URL = "TOKEN_IN_URL"  # a token (or token-named parameter) in the URL
    AUTH_REQUIRED = "AUTH_REQUIRED"  # no ``Authorization: Bearer`` header
    TOKEN_INVALID = "TOKEN_INVALID"  # the token is not one of this profile's app tokens
    FORBIDDEN_HOST = "FORBIDDEN_HOST"  # TCP: Host not 127.0.0.1:PORT/localhost:PORT
    FORBIDDEN_ORIGIN = "FORBIDDEN_ORIGIN"  # an Origin header: browsers are never let in
    SCOPE_CHANNEL = "SCOPE_CHANNEL"  # the channel name is outside the app's prefix
    NOT_FOUND = "NOT_FOUND"  # no such endpoint
    PEER_UNKNOWN = "PEER_UNKNOWN"  # no such peer, or not one this app may use (indistinguishable)
    METHOD_NOT_ALLOWED = "METHOD_NOT_ALLOWED"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"  # the key was used before for a different message
    CHANNEL_CLOSED = "CHANNEL_CLOSED"  # we half-closed the channel; nothing more may be sent on it
    PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
    UNSUPPORTED_MEDIA_TYPE = "UNSUPPORTED_MEDIA_TYPE"
    UPGRADE_REQUIRED = "UPGRADE_REQUIRED"  # GET /v1/stream without a WebSocket upgrade
    QUOTA_EXCEEDED = "QUOTA_EXCEEDED"  # the outbox (or the app's quota) is full: retry later
    SEND_WINDOW_EXCEEDED = "SEND_WINDOW_EXCEEDED"  # WebSocket: more sends in flight than the window
    INTERNAL_ERROR = "INTERNAL_ERROR"  # a bug: logged, never a traceback to the client
    BACKEND_UNAVAILABLE = "BACKEND_UNAVAILABLE"  # p4 up is stopping; a profile file is broken

    @property
    def status(self) -> int:
        return _STATUS[self]


_STATUS: Final[dict[ApiErrorCode, int]] = {
    ApiErrorCode.BAD_REQUEST: 400,
    ApiErrorCode.TOKEN_IN_URL: 400,
    ApiErrorCode.AUTH_REQUIRED: 401,
    ApiErrorCode.TOKEN_INVALID: 401,
    ApiErrorCode.FORBIDDEN_HOST: 403,
    ApiErrorCode.FORBIDDEN_ORIGIN: 403,
    ApiErrorCode.SCOPE_CHANNEL: 403,
    ApiErrorCode.NOT_FOUND: 404,
    ApiErrorCode.PEER_UNKNOWN: 404,
    ApiErrorCode.METHOD_NOT_ALLOWED: 405,
    ApiErrorCode.IDEMPOTENCY_CONFLICT: 409,
    ApiErrorCode.CHANNEL_CLOSED: 409,
    ApiErrorCode.PAYLOAD_TOO_LARGE: 413,
    ApiErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ApiErrorCode.UPGRADE_REQUIRED: 426,
    ApiErrorCode.QUOTA_EXCEEDED: 429,
    ApiErrorCode.SEND_WINDOW_EXCEEDED: 429,
    ApiErrorCode.INTERNAL_ERROR: 500,
    ApiErrorCode.BACKEND_UNAVAILABLE: 503,
}

#: HTTP status of a P4Error code raised by the backend; anything not listed is a 500.
P4_STATUS: Final[dict[ErrorCode, tuple[int, str]]] = {
    ErrorCode.PEER_UNKNOWN: (404, "PEER_UNKNOWN"),
    ErrorCode.SES_OUTBOX_FULL: (429, "QUOTA_EXCEEDED"),
    ErrorCode.PROFILE_LOCKED: (503, "BACKEND_UNAVAILABLE"),
    # a profile file the user broke while p4 up runs (the message says which and how to fix)
    ErrorCode.PROFILE_CORRUPT: (503, "BACKEND_UNAVAILABLE"),
    ErrorCode.PROFILE_INSECURE: (503, "BACKEND_UNAVAILABLE"),
    ErrorCode.PROFILE_NOT_FOUND: (503, "BACKEND_UNAVAILABLE"),
}


class ApiError(Exception):
    """A request the API refuses; ``code`` is the registry name, ``status`` the HTTP status."""

    def __init__(self, code: ApiErrorCode | str, message: str = "", status: int = 0) -> None:
        if isinstance(code, ApiErrorCode):
            self.code = code.value
            self.status = status or code.status
        else:
            self.code = code
            self.status = status or 500
        self.message = message or self.code
        super().__init__(f"{self.code}: {self.message}")

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


def from_p4error(e: P4Error) -> ApiError:
    """The API error for a P4Error from the backend (its registry name, or INTERNAL_ERROR)."""
    status, name = P4_STATUS.get(e.code, (500, ""))
    if not name:
        return ApiError(ApiErrorCode.INTERNAL_ERROR, f"{e.code.name}: {e.message}")
    return ApiError(name, e.message, status)
