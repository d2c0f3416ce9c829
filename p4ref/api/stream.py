"""The local API's WebSocket stream, ``GET /v1/stream`` (protocol: ``docs/local-api.md``).

One connection carries, in both directions, JSON text frames with a ``type``:

    client -> server   credit, send, confirm, close, events, ping
    server -> client   hello, message, closed, accepted, confirmed, ok, pong, event, error

Flow control both ways, so neither side's memory grows with the other's speed:

- **server -> app**: a ``message``/``closed`` frame is sent only against message credit the app
  granted (``credit``); what the app has not taken waits in its subscription, bounded by its
  quota, and beyond that in the link, whose channel credit stops the peer.
- **app -> server**: at most ``send_window`` (announced in ``hello``) ``send``/``close`` frames
  may be unanswered; they are committed in the order they arrived and answered in that order
  (``accepted`` only after the durable commit). One more is a fatal SEND_WINDOW_EXCEEDED.
  Frames are read one at a time and every answer is written before the next frame is read, so a
  client that does not read its answers is stopped by TCP, not buffered.

A frame the server cannot use gets an ``error`` with the frame's ``ref`` and the connection goes
on; only SEND_WINDOW_EXCEEDED, a binary frame and a frame over the size limit end it (close
code 1008, or 1009 for size).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, cast

from aiohttp import WSMsgType, web

from . import _json
from .errors import ApiError, ApiErrorCode
from .server import ApiContext, ctx_of, scope_of, to_api_error
from .subscription import Subscription
from .tokens import AppScope

__all__ = ["PROTOCOL", "stream"]

log = logging.getLogger("p4.api")

PROTOCOL = 1
_FIELDS: dict[str, tuple[str, ...]] = {
    "credit": ("type", "messages"),
    "send": ("type", "ref", "key", "peer", "channel", "data", "text"),
    "confirm": ("type", "ref", "ids"),
    "close": ("type", "ref", "peer", "channel"),
    "events": ("type", "ref", "on"),
    "ping": ("type", "ref"),
}
_ALL_FIELDS = sorted({f for fs in _FIELDS.values() for f in fs})


class _Fatal(Exception):
    def __init__(self, err: ApiError) -> None:
        self.err = err


class Connection:
    """One WebSocket client of one app."""

    def __init__(self, ws: web.WebSocketResponse, ctx: ApiContext, scope: AppScope) -> None:
        self.ws = ws
        self.ctx = ctx
        self.scope = scope
        self.sub: Subscription  # set by run()
        self.credit = 0
        self.window = ctx.limits.send_window
        self.ops: asyncio.Queue[tuple[str, _json.JsonObject]] = asyncio.Queue()
        self.inflight = 0
        self.events_on = False
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    async def write(self, obj: dict[str, Any]) -> None:
        async with self._write_lock:
            await self.ws.send_str(_json.dumps(obj))

    async def error(self, err: ApiError, ref: str | int | None, *, fatal: bool = False) -> None:
        frame: dict[str, Any] = {"type": "error", "code": err.code, "message": err.message,
                                 "fatal": fatal}
        if ref is not None:
            frame["ref"] = ref
        await self.write(frame)

    async def run(self) -> None:
        self.sub = await self.ctx.subscription(self.scope)
        lim = self.ctx.limits
        await self.write({"type": "hello", "protocol": PROTOCOL, "app": self.scope.name,
                          "max_message_bytes": lim.max_message_bytes,
                          "send_window": lim.send_window, "max_credit": lim.max_credit})
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._deliver()), loop.create_task(self._sender())]
        try:
            await self._read()
        except _Fatal as f:
            with contextlib.suppress(Exception):
                await self.error(f.err, None, fatal=True)
            await self.ws.close(code=1008, message=f.err.code.encode())
        except ConnectionError:
            pass  # the client went away while we answered
        except Exception:  # a bug: logged; the client sees 1011, never a traceback
            log.exception("stream of app %s failed", self.scope.name)
            with contextlib.suppress(Exception):
                await self.ws.close(code=1011, message=b"INTERNAL_ERROR")
        finally:
            for t in self._tasks:
                t.cancel()
            for t in self._tasks:
                with contextlib.suppress(BaseException):
                    await t
            self.sub.release(self)
            self.ctx.hub.unlisten(self)

    # --- reading frames ---

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == WSMsgType.TEXT:
                await self._frame(cast(str, msg.data))
            elif msg.type == WSMsgType.BINARY:
                raise _Fatal(ApiError(ApiErrorCode.BAD_REQUEST, "frames are JSON text frames"))
            else:  # ERROR, CLOSE…
                return

    async def _frame(self, text: str) -> None:
        ref: str | int | None = None
        try:
            obj = _json.parse_object(text, _ALL_FIELDS)
            ref = _json.get_ref(obj)
            kind = obj.get("type")
            if not isinstance(kind, str) or kind not in _FIELDS:
                raise _json.bad("field 'type' must be one of " + ", ".join(sorted(_FIELDS)))
            extra = sorted(set(obj) - set(_FIELDS[kind]))
            if extra:
                raise _json.bad(f"unknown field {extra[0]!r} in a {kind} frame")
            await getattr(self, "_on_" + kind)(obj, ref)
        except _Fatal:
            raise
        except asyncio.CancelledError:
            raise
        except Exception as e:
            await self.error(to_api_error(e), ref)

    async def _on_credit(self, obj: _json.JsonObject, ref: object) -> None:
        lim = self.ctx.limits.max_credit
        n = _json.get_int(obj, "messages", 0, 1, lim)
        if self.credit + n > lim:
            raise _json.bad(f"credit above max_credit ({lim}); credit stays {self.credit}")
        self.credit += n
        self.sub.changed.notify()

    async def _on_send(self, obj: _json.JsonObject, ref: str | int | None) -> None:
        self._enqueue("send", obj)

    async def _on_close(self, obj: _json.JsonObject, ref: str | int | None) -> None:
        self._enqueue("close", obj)

    def _enqueue(self, kind: str, obj: _json.JsonObject) -> None:
        if self.inflight >= self.window:
            raise _Fatal(ApiError(ApiErrorCode.SEND_WINDOW_EXCEEDED,
                                  f"more than send_window={self.window} sends unanswered"))
        self.inflight += 1
        self.ops.put_nowait((kind, obj))

    async def _on_confirm(self, obj: _json.JsonObject, ref: str | int | None) -> None:
        ids = obj.get("ids")
        lim = self.ctx.limits.max_receive
        if (not isinstance(ids, list) or not 1 <= len(ids) <= lim
                or not all(isinstance(i, str) and 1 <= len(i) <= 64 for i in ids)):
            raise _json.bad(f"field 'ids' must be a list of 1 to {lim} ids")
        done, unknown = await self.sub.confirm(ids)
        await self.write(self._answer("confirmed", ref, confirmed=done, unknown=unknown))

    async def _on_events(self, obj: _json.JsonObject, ref: str | int | None) -> None:
        on = _json.get_bool(obj, "on", True)
        if on and not self.events_on:
            self.ctx.hub.listen(self, self.scope.allows_peer)
            self._tasks.append(asyncio.get_running_loop().create_task(self._events()))
        elif not on and self.events_on:
            self.ctx.hub.unlisten(self)
            self._tasks.pop().cancel()
        self.events_on = on
        await self.write(self._answer("ok", ref))

    async def _on_ping(self, obj: _json.JsonObject, ref: str | int | None) -> None:
        await self.write(self._answer("pong", ref))

    @staticmethod
    def _answer(kind: str, ref: str | int | None, **fields: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"type": kind}
        if ref is not None:
            out["ref"] = ref
        out.update(fields)
        return out

    # --- tasks ---

    async def _sender(self) -> None:
        """Commits sends and closes one at a time, in arrival order, and answers each."""
        while True:
            kind, obj = await self.ops.get()
            ref: str | int | None = None
            try:
                ref = _json.get_ref(obj)
                peer = cast(str, _json.get_str(obj, "peer", max_len=256))
                name = cast(str, _json.get_str(obj, "channel", channel=True, max_len=200))
                if kind == "send":
                    data = _json.message_data(obj, self.ctx.limits.max_message_bytes)
                    key = _json.idempotency_key(obj.get("key"))
                    info, ch = await self.ctx.channel(self.scope, peer, name)
                    res = await ch.send(data, idempotency_key=f"{self.scope.name}/{key}")
                    answer = self._answer("accepted", ref, id=res.message_id,
                                          replayed=res.replayed, peer=info.device_id,
                                          channel=name)
                else:
                    info, ch = await self.ctx.channel(self.scope, peer, name)
                    await ch.close()
                    answer = self._answer("ok", ref)
                self.inflight -= 1
                await self.write(answer)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.inflight -= 1
                await self.error(to_api_error(e), ref)

    async def _deliver(self) -> None:
        """Sends the subscription's free items while the app has credit."""
        while True:
            await self.sub.changed.wait_for(lambda: self.credit > 0)
            if not await self.sub.wait_available(1.0, self):
                continue
            if self.credit <= 0:
                continue
            for item in self.sub.take(self, self.credit):
                self.credit -= 1
                await self.write(self.ctx.item_json(item))

    async def _events(self) -> None:
        while True:
            event, lost = await self.ctx.hub.next(self)
            frame: dict[str, Any] = {"type": "event", "kind": event.kind, "peer": event.peer,
                                     "peer_name": self.ctx.peer_name(event.peer)}
            frame.update({k: v for k, v in event.fields.items() if k not in frame})
            if lost:
                frame["lost"] = lost
            await self.write(frame)


async def stream(request: web.Request) -> web.StreamResponse:
    ctx, scope = ctx_of(request), scope_of(request)
    ws = web.WebSocketResponse(heartbeat=30.0,
                               max_msg_size=ctx.limits.max_message_bytes * 4 // 3 + 65536)
    if not ws.can_prepare(request).ok:
        raise ApiError(ApiErrorCode.UPGRADE_REQUIRED, "GET /v1/stream is a WebSocket")
    await ws.prepare(request)
    conn = Connection(ws, ctx, scope)
    ctx.streams[ws] = scope.name
    try:
        await conn.run()
    finally:
        ctx.streams.pop(ws, None)
    return ws
