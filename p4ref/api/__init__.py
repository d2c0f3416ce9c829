"""The local API of the reference peer: apps in any language use P⁴ through ``p4 up``.

HTTP + WebSocket on a Unix socket (or 127.0.0.1 with tokens), per-app tokens scoped to peers and
a channel-name prefix. Documented in ``docs/local-api.md`` and ``docs/openapi.yaml``.

- :mod:`.backend` — the :class:`Backend` protocol the server needs from the running peer
- :mod:`.fake` — :class:`FakeBackend`, in memory, for tests and examples
- :mod:`.tokens` — app tokens and scopes (``p4 api token …``)
- :mod:`.server` — the aiohttp application (HTTP endpoints, auth checks)
- :mod:`.stream` — the WebSocket stream
- :mod:`.subscription` — each app's subscription (quota, leases, confirm)
- :mod:`.listen` — :class:`ApiServer`: Unix socket or TCP, ``endpoint.json``
- :mod:`.cli` — ``p4 api token add|list|remove`` and ``p4 api serve-fake``
"""

from __future__ import annotations

from .backend import Backend, BackendError, Channel, PeerInfo, PeerStatus
from .errors import ApiError, ApiErrorCode
from .listen import ApiServer, Endpoint, read_endpoint
from .server import Limits, make_app
from .tokens import AppScope, TokenStore

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
