"""The ``p4`` command line's own endpoints on the local API (only for the ``p4-cli`` token).

Apps use the documented API (``docs/local-api.md``); these few routes let the CLI verbs ask
the daemon for what only it can do, so the CLI holds no protocol logic.  Every request passes the
API's checks (Origin, Host, token in URL, token) first; a token other than the CLI's gets 404.

| route | body | answer |
|---|---|---|
| ``GET /v1/p4cli/info`` | — | pid, profile, device ID, started, inbox, peers with link status |
| ``POST /v1/p4cli/send-file`` | ``{"peer", "path", "name"?, "spool"?}`` | the transfer record |
| ``GET /v1/p4cli/transfers/{id}`` | — | the transfer record plus the peer's link state |
| ``GET /v1/p4cli/received`` | — | ``{"files": [...]}``, oldest first |
| ``POST /v1/p4cli/forget`` | ``{"peer"}`` | ``{"forgotten": bool}`` (the link was running) |
| ``POST /v1/p4cli/new-generation`` | ``{"peer", "why"?}`` | ``{"generation"}`` before it |

``new-generation`` (``p4 demo``, tests) asks the peer's link for a new generation now:
``why`` ``"forced"`` (default, :meth:`Link.force_generation`) or ``"network"`` (as if the OS
reported a network change, :meth:`Link.network_changed`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from ..api.errors import ApiError, ApiErrorCode
from ..api.server import scope_of, status_json

__all__ = ["add_routes"]

_DAEMON = web.AppKey("p4_daemon", object)


def _daemon(request: web.Request) -> Any:
    if scope_of(request).name != "p4-cli":
        raise ApiError(ApiErrorCode.NOT_FOUND, "no such endpoint")
    return request.app[_DAEMON]


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise ApiError(ApiErrorCode.BAD_REQUEST, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(ApiErrorCode.BAD_REQUEST, "the body is not a JSON object")
    return body


def _peer(d: Any, text: Any) -> str:
    if isinstance(text, str):
        if text in d.links:
            return text
        for dev, name in d.names.items():
            if name == text and dev in d.links:
                return str(dev)
    raise ApiError(ApiErrorCode.PEER_UNKNOWN, f"no running link to {text!r}")


def _peer_status(d: Any, peer: str) -> dict[str, Any]:
    st = status_json(d.backend.status(peer))
    return st


async def info(request: web.Request) -> web.Response:
    d = _daemon(request)
    return web.json_response({
        "pid": os.getpid(), "home": str(d.home), "device_id": d.profile.identity.device_id,
        "started": d.started_at, "uptime_s": round(time.time() - d.started_at, 1),
        "inbox": str(d.files.inbox),
        "peers": [_peer_status(d, p) for p in list(d.links)],
        "forgot_us": [{"device_id": p, "name": d.names.get(p, ""), "at": at}
                      for p, at in d.forgot_us.items()],
        "transfers": [dict(asdict(o), peer_name=d.names.get(o.peer, ""))
                      for o in d.files.outgoing.values() if o.state in ("queued", "sending")],
    })


async def send_file(request: web.Request) -> web.Response:
    d = _daemon(request)
    body = await _json(request)
    peer = _peer(d, body.get("peer"))
    path = body.get("path")
    name = body.get("name")
    if not isinstance(path, str) or not os.path.isabs(path):
        raise ApiError(ApiErrorCode.BAD_REQUEST, "path must be an absolute path")
    if name is not None and not isinstance(name, str):
        raise ApiError(ApiErrorCode.BAD_REQUEST, "name must be a string")
    p = Path(path)
    if not p.is_file():
        raise ApiError(ApiErrorCode.BAD_REQUEST, f"{path} is not a readable file")
    o = d.files.send(peer, p, name, spool=bool(body.get("spool", False)))
    return web.json_response(dict(asdict(o), link=_peer_status(d, peer)), status=202)


async def transfer(request: web.Request) -> web.Response:
    d = _daemon(request)
    o = d.files.outgoing.get(request.match_info["id"])
    if o is None:
        raise ApiError(ApiErrorCode.NOT_FOUND, "no such transfer")
    link = _peer_status(d, o.peer) if o.peer in d.links else None
    return web.json_response(dict(asdict(o), link=link))


async def received(request: web.Request) -> web.Response:
    d = _daemon(request)
    return web.json_response({"inbox": str(d.files.inbox),
                              "files": [asdict(i) for i in d.files.received]})


async def forget(request: web.Request) -> web.Response:
    d = _daemon(request)
    body = await _json(request)
    peer = body.get("peer")
    if not isinstance(peer, str):
        raise ApiError(ApiErrorCode.BAD_REQUEST, "peer must be a device ID")
    return web.json_response({"forgotten": await d.forget(peer)})


async def new_generation(request: web.Request) -> web.Response:
    d = _daemon(request)
    body = await _json(request)
    peer = _peer(d, body.get("peer"))
    why = body.get("why", "forced")
    if why not in ("forced", "network"):
        raise ApiError(ApiErrorCode.BAD_REQUEST, 'why must be "forced" or "network"')
    link = d.links[peer]
    before = link.active_generation
    if why == "network":
        link.network_changed()
    else:
        link.force_generation()
    return web.json_response({"generation": before})


def add_routes(app: web.Application, daemon: Any) -> None:
    app[_DAEMON] = daemon
    app.router.add_get("/v1/p4cli/info", info, allow_head=False)
    app.router.add_post("/v1/p4cli/send-file", send_file)
    app.router.add_get("/v1/p4cli/transfers/{id}", transfer, allow_head=False)
    app.router.add_get("/v1/p4cli/received", received, allow_head=False)
    app.router.add_post("/v1/p4cli/forget", forget)
    app.router.add_post("/v1/p4cli/new-generation", new_generation)
