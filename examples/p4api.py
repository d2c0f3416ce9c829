"""A tiny client of the local API of a running ``p4 up`` (docs/local-api.md), for the examples.

It needs only aiohttp: it reads ``<home>/api/endpoint.json`` (Unix socket, or 127.0.0.1), sends
the app token in the ``Authorization`` header (never in a URL) and speaks plain JSON:

    async with Api(home, token) as api:
        await api.send("phone", "notes/x", b"hi", key="7f1c…")   # durable when it returns
        for item in await api.receive(wait_ms=10_000):           # at-least-once, stable ids
            ...                                                   # apply it, then:
        await api.confirm([item.id])

The token comes from ``p4 api token add APP --peer PEER --prefix APP/`` (``--token-file F``
writes it to a file, which :func:`token_from` reads; or ``$P4_TOKEN``).  Errors are
:class:`ApiError` with the API's code (``PEER_UNKNOWN``, ``QUOTA_EXCEEDED``, …).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["Api", "ApiError", "Item", "token_from"]


class ApiError(Exception):
    """An error answer of the API; ``code`` is the one to branch on (docs/local-api.md §7)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code


@dataclass(frozen=True)
class Item:
    """A received message (``type == "message"``) or the peer's half-close (``"closed"``)."""

    type: str
    id: str
    peer: str
    peer_name: str
    channel: str
    data: bytes


def token_from(path: str | None) -> str:
    """The app token: from the file ``path`` if given, else ``$P4_TOKEN``."""
    token = Path(path).read_text().strip() if path else os.environ.get("P4_TOKEN", "")
    if not token:
        raise SystemExit("no app token: pass --token-file F or set P4_TOKEN"
                         " (`p4 api token add APP --peer PEER --prefix APP/`)")
    return token


class Api:
    """One app's connection to the local API of the ``p4 up`` of profile ``home``."""

    def __init__(self, home: str | Path, token: str) -> None:
        self.home, self._token = Path(home), token
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        try:
            ep = json.loads((self.home / "api" / "endpoint.json").read_text())
        except OSError:
            raise ApiError("NOT_RUNNING", f"no p4 up runs for {self.home}") from None
        if ep["transport"] == "unix":
            conn: aiohttp.BaseConnector = aiohttp.UnixConnector(path=ep["path"])
            base = "http://localhost"
        else:
            conn, base = aiohttp.TCPConnector(), f"http://127.0.0.1:{ep['port']}"
        self._http = aiohttp.ClientSession(
            base, connector=conn, headers={"Authorization": f"Bearer {self._token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_read=90))
        return self

    async def __aexit__(self, t: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._http is not None:
            await self._http.close()

    async def call(self, method: str, path: str, body: Any = None,
                   headers: dict[str, str] | None = None) -> Any:
        """One request; the answer's JSON, or :class:`ApiError` with the API's code."""
        assert self._http is not None, "use `async with Api(...)`"
        try:
            async with self._http.request(method, path, json=body, headers=headers) as r:
                doc = await r.json(content_type=None)
        except aiohttp.ClientConnectionError as e:
            raise ApiError("NOT_RUNNING", f"p4 up for {self.home} did not answer: {e}") from None
        if r.status >= 400:
            err = doc.get("error", {}) if isinstance(doc, dict) else {}
            raise ApiError(str(err.get("code", f"HTTP_{r.status}")),
                           str(err.get("message", r.reason)))
        return doc

    async def whoami(self) -> dict[str, Any]:
        """App name, peers and channel prefix of this token, the server's limits."""
        return dict(await self.call("GET", "/v1/whoami"))

    async def peer(self, name: str) -> dict[str, str]:
        """``{"device_id", "name"}`` of the peer called ``name`` (or with that ID)."""
        for p in (await self.call("GET", "/v1/peers"))["peers"]:
            if name in (p["name"], p["device_id"]):
                return dict(p)
        raise ApiError("PEER_UNKNOWN", f"{name}: not a peer of this app")

    async def send(self, peer: str, channel: str, data: bytes, key: str | None = None) -> str:
        """Queue ``data`` for ``peer``; returns its id once it is durable in the outbox.
        A retry with the same ``key`` is recognised (no duplicate), also after restarts."""
        body = {"peer": peer, "channel": channel, "data": base64.b64encode(data).decode()}
        doc = await self.call("POST", "/v1/send", body,
                              {"Idempotency-Key": key or uuid.uuid4().hex})
        return str(doc["id"])

    async def receive(self, max: int = 64, wait_ms: int = 0,
                      lease_ms: int = 60_000) -> list[Item]:
        """Up to ``max`` items, waiting up to ``wait_ms`` for the first; each is handed out
        again (same id) if not confirmed within ``lease_ms``."""
        doc = await self.call("POST", "/v1/receive",
                              {"max": max, "wait_ms": wait_ms, "lease_ms": lease_ms})
        return [Item(m["type"], m["id"], m["peer"], m.get("peer_name", ""), m["channel"],
                     base64.b64decode(m.get("data", ""))) for m in doc["messages"]]

    async def confirm(self, ids: list[str]) -> None:
        """Done with these items: the peer's channel gets its credit back."""
        if ids:
            await self.call("POST", "/v1/confirm", {"ids": ids})
