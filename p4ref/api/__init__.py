"""The local API of the reference peer: apps in any language use P⁴ through ``p4 up``.

HTTP + WebSocket on a Unix socket (or 127.0.0.1 with tokens), per-app tokens scoped to peers and
a channel-name prefix. Documented in ``docs/local-api.md`` and ``docs/openapi.yaml``.

- :mod:`.backend` — the :class:`Backend` protocol the server needs from the running peer
- :mod:`.fake` — :class:`FakeBackend`, in memory, for tests and examples
- :mod:`.tokens` — app tokens and scopes (``p4 api token …``)
- :mod:`.server` — the aiohttp application (HTTP endpoints, auth checks)
- :mod:`.stream` — the WebSocket stream
- :mod:`.subscription` — each app's subscription (quota, leases, confirm)
- :mod:`.listen` — :class:`ApiServer`: Unix socket or TCP; :mod:`.endpoint` ``endpoint.json``
- :mod:`.cli` — ``p4 api token add|list|remove``, ``p4 api endpoint``
- :mod:`.testing` — a harness on the FakeBackend (``python -m p4ref.api.testing HOME``)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported on first use: `p4` commands that do not serve need no aiohttp
    from .backend import Backend, BackendError, Channel, PeerInfo, PeerStatus
    from .endpoint import Endpoint, read_endpoint
    from .errors import ApiError, ApiErrorCode
    from .listen import ApiServer
    from .server import Limits, make_app
    from .tokens import AppScope, TokenStore

_WHERE = {
    "Backend": "backend", "BackendError": "backend", "Channel": "backend",
    "PeerInfo": "backend", "PeerStatus": "backend", "Endpoint": "endpoint",
    "read_endpoint": "endpoint", "ApiError": "errors", "ApiErrorCode": "errors",
    "ApiServer": "listen", "Limits": "server", "make_app": "server", "AppScope": "tokens",
    "TokenStore": "tokens",
}

__all__ = [
    "ApiError",
    "ApiErrorCode",
    "ApiServer",
    "AppScope",
    "Backend",
    "BackendError",
    "Channel",
    "Endpoint",
    "Limits",
    "PeerInfo",
    "PeerStatus",
    "TokenStore",
    "make_app",
    "read_endpoint",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
