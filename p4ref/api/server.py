"""The local API's HTTP side: an aiohttp application over a :class:`~p4ref.api.backend.Backend`.

``docs/openapi.yaml`` describes every endpoint; ``docs/local-api.md`` the WebSocket stream
(:mod:`p4ref.api.stream`) and the security model. In short, every request passes, in this order:

1. the **Origin** check: a request with an ``Origin`` or ``Sec-Fetch-*`` header comes from a
   browser and is refused (FORBIDDEN_ORIGIN);
2. the **Host** check, on TCP only: ``Host`` must be ``127.0.0.1:PORT``, ``localhost:PORT`` or
   ``[::1]:PORT`` of the socket it arrived on (FORBIDDEN_HOST): a DNS-rebinding page cannot
   forge it (Syncthing's defence). On the Unix socket the Host is not checked (no DNS there);
3. **no token in the URL**: a URL carrying the token prefix or a token-named query parameter is
   refused (TOKEN_IN_URL) before anything else reads it;
4. the **token**: ``Authorization: Bearer p4tok_…`` must be an app token of the profile
   (AUTH_REQUIRED / TOKEN_INVALID); it selects the app's :class:`~p4ref.api.tokens.AppScope`;
5. the **scope**: peers outside the app's scope do not exist for it (PEER_UNKNOWN) and channel
   names outside its prefix are refused (SCOPE_CHANNEL).

Nothing escapes as a traceback: every failure is ``{"error": {"code", "message"}}`` with the
status of :mod:`p4ref.api.errors`; unexpected exceptions are logged and answered 500.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, cast
from urllib.parse import unquote

from aiohttp import web

from p4ref.errors import P4Error

from . import _json
from .backend import Backend, BackendError, Channel, PeerInfo, PeerStatus
from .errors import ApiError, ApiErrorCode, from_p4error
from .subscription import EventHub, Item, Subscription
from .tokens import TOKEN_PREFIX, AppScope, TokenStore

__all__ = ["CTX", "ApiContext", "Limits", "make_app"]

log = logging.getLogger("p4.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SWEEP_S = 2.0  # how soon a removed app's open streams are closed
_URL_TOKEN_NAMES = frozenset({"token", "access_token", "auth", "authorization", "api_key",
                              "apikey", "bearer", "key", "p4_token"})


@dataclass(frozen=True, slots=True)
class Limits:
    """Server limits, announced to clients (``GET /v1/whoami``, the stream's hello)."""

    max_message_bytes: int = 1 << 20
    send_window: int = 32  # stream: sends in flight per connection
    max_credit: int = 1024  # stream: message credit a connection may hold
    max_receive: int = 256  # POST /v1/receive: messages per call
    max_wait_ms: int = 60_000


class ApiContext:
    """What the handlers share: the backend, the token store, each app's subscription."""

    def __init__(self, backend: Backend, tokens: TokenStore, limits: Limits) -> None:
        self.backend = backend
        self.tokens = tokens
        self.limits = limits
        self.hub = EventHub(backend, self._peers_changed)
        self._subs: dict[str, Subscription] = {}
        self.streams: dict[web.WebSocketResponse, str] = {}  # open streams -> app name
        self.closing = False
        self._sweeper: asyncio.Task[None] | None = None
        self._sweep_lock = asyncio.Lock()

    def _peers_changed(self) -> None:
        for sub in self._subs.values():
            sub.refresh()

    def start(self) -> None:
        self.hub.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await self.sweep()
            except P4Error as e:  # a tokens file that cannot be read: keep what runs
                log.warning("cannot re-read the app tokens: %s", e.message)

    async def sweep(self) -> None:
        """An app removed (or registered again with another scope) loses its open streams
        (close code 1008) and its subscription, whose channels go back to the backend, with
        their unconfirmed messages, for whichever app owns them now."""
        async with self._sweep_lock:
            apps = {a.name: a for a in self.tokens.apps()}
            for name, sub in list(self._subs.items()):
                if apps.get(name) == sub.scope:
                    continue
                del self._subs[name]
                for ws, app in list(self.streams.items()):
                    if app == name:
                        await ws.close(code=1008, message=b"the app's token was removed")
                await sub.close()

    async def subscription(self, scope: AppScope) -> Subscription:
        """The app's subscription, started on first use (a changed scope starts a new one)."""
        sub = self._subs.get(scope.name)
        if sub is not None and sub.scope != scope:
            await self.sweep()
            sub = self._subs.get(scope.name)
        if sub is None:
            sub = self._subs[scope.name] = Subscription(scope, self.backend)
        sub.start()
        return sub

    def peers(self, scope: AppScope) -> list[PeerInfo]:
        return [p for p in self.backend.peers() if scope.allows_peer(p.device_id)]

    def resolve_peer(self, scope: AppScope, text: str) -> PeerInfo:
        """A peer of the app's scope by device ID (exact, or without dashes, any case) or name."""
        norm = text.replace("-", "").upper()
        peers = self.peers(scope)
        for p in peers:
            if p.device_id == text or p.device_id.replace("-", "").upper() == norm:
                return p
        for p in peers:
            if p.name == text:
                return p
        raise ApiError(ApiErrorCode.PEER_UNKNOWN, f"no peer {text!r} (for this app)")

    async def channel(self, scope: AppScope, peer: str, name: str) -> tuple[PeerInfo, Channel]:
        """Open (or find) an app's channel and read its incoming messages for the app."""
        info = self.resolve_peer(scope, peer)
        if not scope.allows_channel(name):
            raise ApiError(ApiErrorCode.SCOPE_CHANNEL,
                           f"channel {name!r} is outside this app's prefix {scope.prefix!r}")
        ch = await self.backend.open_channel(info.device_id, name)
        (await self.subscription(scope)).watch(ch)
        return info, ch

    def peer_name(self, device_id: str) -> str:
        for p in self.backend.peers():
            if p.device_id == device_id:
                return p.name
        return ""

    def item_json(self, item: Item) -> dict[str, Any]:
        ch = item.channel
        out: dict[str, Any] = {"type": "message" if item.message else "closed", "id": item.id,
                               "peer": ch.peer, "peer_name": self.peer_name(ch.peer),
                               "channel": ch.name}
        if item.message is not None:
            out["data"] = base64.b64encode(item.message.data).decode("ascii")
        return out

    async def close(self) -> None:
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(BaseException):
                await self._sweeper
        for ws in list(self.streams):
            await ws.close(code=1001, message=b"p4 up is stopping")
        await self.hub.close()
        for sub in self._subs.values():
            await sub.close()


CTX = web.AppKey("p4_api_context", ApiContext)
_SCOPE = web.RequestKey("p4_api_scope", AppScope)


def scope_of(request: web.Request) -> AppScope:
    return request[_SCOPE]


def ctx_of(request: web.Request) -> ApiContext:
    return request.app[CTX]


def error_response(err: ApiError) -> web.Response:
    headers = {"WWW-Authenticate": "Bearer"} if err.status == 401 else None
    return web.json_response(err.body(), status=err.status, headers=headers,
                             dumps=_json.dumps)


def to_api_error(e: BaseException) -> ApiError:
    """Any exception as the API error a client sees (logged when it is a bug)."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, BackendError):
        try:
            return ApiError(ApiErrorCode(e.code), e.message)
        except ValueError:
            return ApiError(ApiErrorCode.INTERNAL_ERROR, e.message)
    if isinstance(e, P4Error):
        return from_p4error(e)
    log.error("internal error in the local API", exc_info=e)
    return ApiError(ApiErrorCode.INTERNAL_ERROR, "internal error (see the p4 up log)")


_HTTP_CODES = {404: ApiErrorCode.NOT_FOUND, 405: ApiErrorCode.METHOD_NOT_ALLOWED,
               413: ApiErrorCode.PAYLOAD_TOO_LARGE, 415: ApiErrorCode.UNSUPPORTED_MEDIA_TYPE}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status, ApiErrorCode.BAD_REQUEST)
        return error_response(ApiError(code, e.reason))
    except asyncio.CancelledError:
        raise
    except Exception as e:
        return error_response(to_api_error(e))


def _allowed_hosts(request: web.Request) -> set[str] | None:
    """The Host values accepted on this request's socket; None on a Unix socket."""
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple):
        return None
    port = sockname[1]
    return {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}


def check_request(request: web.Request) -> AppScope:
    """Steps 1-4 of the module docstring; returns the app's scope."""
    h = request.headers
    if "Origin" in h or any(k.lower().startswith("sec-fetch-") for k in h):
        raise ApiError(ApiErrorCode.FORBIDDEN_ORIGIN,
                       "requests from web pages are refused (Origin / Sec-Fetch header)")
    allowed = _allowed_hosts(request)
    if allowed is not None and h.get("Host", "").lower() not in allowed:
        raise ApiError(ApiErrorCode.FORBIDDEN_HOST,
                       "Host must be 127.0.0.1:PORT or localhost:PORT (DNS rebinding defence)")
    raw = request.raw_path
    if (TOKEN_PREFIX in raw or TOKEN_PREFIX in unquote(raw)
            or any(k.lower() in _URL_TOKEN_NAMES for k in request.query)):
        raise ApiError(ApiErrorCode.TOKEN_IN_URL, "a token never goes in a URL: send it in the"
                       " Authorization header (and replace a token that was in a URL)")
    auth = h.get("Authorization")
    if auth is None:
        raise ApiError(ApiErrorCode.AUTH_REQUIRED, "send 'Authorization: Bearer <app token>'")
    scheme, _, token = auth.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX) or len(token) > 256:
        raise ApiError(ApiErrorCode.TOKEN_INVALID, "not a p4 app token")
    scope = ctx_of(request).tokens.verify(token)
    if scope is None:
        raise ApiError(ApiErrorCode.TOKEN_INVALID, "unknown app token (see p4 api token list)")
    return scope


@web.middleware
async def guard_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[_SCOPE] = check_request(request)
    if ctx_of(request).closing:
        raise ApiError(ApiErrorCode.BACKEND_UNAVAILABLE, "p4 up is stopping")
    return await handler(request)


# --- handlers ---


async def _body(request: web.Request, allowed: tuple[str, ...]) -> _json.JsonObject:
    if request.content_type != "application/json":
        raise ApiError(ApiErrorCode.UNSUPPORTED_MEDIA_TYPE, "send Content-Type: application/json")
    return _json.parse_object(await request.read(), allowed)


def _ok(obj: object, status: int = 200) -> web.Response:
    return web.json_response(obj, status=status, dumps=_json.dumps)


def status_json(s: PeerStatus) -> dict[str, Any]:
    d = asdict(s)
    return d


async def whoami(request: web.Request) -> web.Response:
    scope, lim = scope_of(request), ctx_of(request).limits
    return _ok({"app": scope.name, "peers": list(scope.peers), "prefix": scope.prefix,
                "quota": {"messages": scope.quota_messages, "bytes": scope.quota_bytes},
                "limits": {"max_message_bytes": lim.max_message_bytes,
                           "send_window": lim.send_window, "max_credit": lim.max_credit,
                           "max_receive": lim.max_receive, "max_wait_ms": lim.max_wait_ms}})


async def peers(request: web.Request) -> web.Response:
    ps = ctx_of(request).peers(scope_of(request))
    return _ok({"peers": [{"device_id": p.device_id, "name": p.name} for p in ps]})


async def status(request: web.Request) -> web.Response:
    ctx = ctx_of(request)
    out = [status_json(ctx.backend.status(p.device_id)) for p in ctx.peers(scope_of(request))]
    return _ok({"peers": out})


async def send(request: web.Request) -> web.Response:
    ctx, scope = ctx_of(request), scope_of(request)
    obj = await _body(request, ("peer", "channel", "data", "text"))
    peer = cast(str, _json.get_str(obj, "peer", max_len=256))
    name = cast(str, _json.get_str(obj, "channel", channel=True, max_len=200))
    data = _json.message_data(obj, ctx.limits.max_message_bytes)
    key = _json.idempotency_key(request.headers.get("Idempotency-Key"))
    info, ch = await ctx.channel(scope, peer, name)
    result = await ch.send(data, idempotency_key=f"{scope.name}/{key}")
    return _ok({"status": "accepted", "id": result.message_id, "replayed": result.replayed,
                "peer": info.device_id, "channel": name}, 200 if result.replayed else 202)


async def receive(request: web.Request) -> web.Response:
    ctx, scope = ctx_of(request), scope_of(request)
    lim = ctx.limits
    obj = await _body(request, ("max", "wait_ms", "lease_ms"))
    limit = _json.get_int(obj, "max", 16, 1, lim.max_receive)
    wait_ms = _json.get_int(obj, "wait_ms", 0, 0, lim.max_wait_ms)
    lease_ms = _json.get_int(obj, "lease_ms", 60_000, 1000, 3_600_000)
    sub = await ctx.subscription(scope)
    holder = object()
    if wait_ms:
        await sub.wait_available(wait_ms / 1000)
    transport = request.transport
    if transport is None or transport.is_closing():  # the client left during the wait:
        return _ok({"messages": []})                 # lease nothing to nobody
    items = sub.take(holder, limit, lease_ms / 1000)
    return _ok({"messages": [ctx.item_json(it) for it in items]})


async def confirm(request: web.Request) -> web.Response:
    ctx, scope = ctx_of(request), scope_of(request)
    obj = await _body(request, ("ids",))
    ids = obj.get("ids")
    if (not isinstance(ids, list) or not 1 <= len(ids) <= ctx.limits.max_receive
            or not all(isinstance(i, str) and 1 <= len(i) <= 64 for i in ids)):
        raise _json.bad(f"field 'ids' must be a list of 1 to {ctx.limits.max_receive} ids")
    done, unknown = await (await ctx.subscription(scope)).confirm(ids)
    return _ok({"confirmed": done, "unknown": unknown})


async def close(request: web.Request) -> web.Response:
    ctx, scope = ctx_of(request), scope_of(request)
    obj = await _body(request, ("peer", "channel"))
    peer = cast(str, _json.get_str(obj, "peer", max_len=256))
    name = cast(str, _json.get_str(obj, "channel", channel=True, max_len=200))
    info, ch = await ctx.channel(scope, peer, name)
    await ch.close()
    return _ok({"closed": True, "peer": info.device_id, "channel": name})


def make_app(backend: Backend, tokens: TokenStore, limits: Limits | None = None
             ) -> web.Application:
    """The aiohttp application of the local API (not yet listening anywhere)."""
    from .stream import stream  # the stream handler needs this module's helpers

    limits = limits or Limits()
    # a send body is base64 (4/3) in JSON: room for that plus the other fields
    app = web.Application(middlewares=[errors_middleware, guard_middleware],
                          client_max_size=limits.max_message_bytes * 4 // 3 + 65536)
    ctx = ApiContext(backend, tokens, limits)
    app[CTX] = ctx

    async def on_startup(app: web.Application) -> None:
        ctx.start()

    async def on_shutdown(app: web.Application) -> None:
        await ctx.close()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/v1/whoami", whoami, allow_head=False)
    app.router.add_get("/v1/peers", peers, allow_head=False)
    app.router.add_get("/v1/status", status, allow_head=False)
    app.router.add_post("/v1/send", send)
    app.router.add_post("/v1/receive", receive)
    app.router.add_post("/v1/confirm", confirm)
    app.router.add_post("/v1/close", close)
    app.router.add_get("/v1/stream", stream, allow_head=False)
    return app
