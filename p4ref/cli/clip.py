"""``p4 clip PEER``: share clipboard text with a paired device, through a running ``p4 up``.

    p4 clip PEER            send the clipboard's text (it waits in the outbox if PEER is away)
    p4 clip --watch PEER    keep both clipboards in sync until Ctrl-C: what is copied here goes
                            to PEER, what PEER sends (its `p4 clip` or `p4 clip --watch`) lands
                            in this clipboard

The clipboard is the system's through pyperclip (on Linux: xclip, xsel or wl-clipboard);
``--clipboard-file F`` uses a file instead (headless machines, scripts, tests).  Like ``p4 chat``
this is a client of the local API and holds no protocol logic: it sends on channel
``p4clip/<our ID>`` and receives the peer's.  It uses its own app token (``p4-clip``, prefix
``p4clip/``, registered on first use in ``<home>/api/clip.token``), so ``p4 chat`` and
``p4 clip`` never read each other's messages.  An item is confirmed only once it is in the
clipboard.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from ..api.tokens import TokenError, TokenStore
from ..io.store import Profile, atomic_write, read_private_file
from ._client import Client, CliError
from ._common import home as _home
from ._peers import resolve_peer

__all__ = ["add_clip_parser", "cmd_clip"]

APP, PREFIX, TOKEN_FILE = "p4-clip", "p4clip/", "clip.token"


class _Clipboard:
    """The system clipboard (pyperclip), or a file standing in for it."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def get(self) -> str:
        if self.path is not None:
            try:
                return self.path.read_text(encoding="utf-8")
            except FileNotFoundError:
                return ""
        return str(self._pyperclip("paste")())

    def set(self, text: str) -> None:
        if self.path is not None:
            tmp = self.path.with_name(self.path.name + ".p4tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, self.path)
        else:
            self._pyperclip("copy")(text)

    @staticmethod
    def _pyperclip(op: str) -> Any:
        import pyperclip

        def call(*a: Any) -> Any:
            try:
                return getattr(pyperclip, op)(*a)
            except pyperclip.PyperclipException:
                raise CliError("NO_CLIPBOARD", "no clipboard on this machine: install xclip,"
                               " xsel or wl-clipboard, or use --clipboard-file F") from None
        return call


def _token(home: Path, fresh: bool = False) -> str:
    """The ``p4-clip`` app's token, registered on first use (or again when ``fresh``)."""
    path = home / "api" / TOKEN_FILE
    data = None if fresh else read_private_file(path)
    if data and data.strip():
        return data.decode().strip()
    store = TokenStore(home)
    with contextlib.suppress(TokenError):
        store.remove(APP)
    try:
        token = store.add(APP, ["*"], PREFIX)
    except TokenError as e:
        raise CliError(e.code, e.message) from None
    atomic_write(path, (token + "\n").encode())
    return token


async def _clip(args: argparse.Namespace) -> int:
    home = _home(args).resolve()
    profile = Profile.open(home)
    peer = resolve_peer(profile, args.peer)
    channel = PREFIX + profile.identity.device_id.replace("-", "")[:13]
    board = _Clipboard(args.clipboard_file)

    def out(doc: dict[str, Any], text: str) -> None:
        print(json.dumps(doc) if args.json else text, flush=True)

    async with Client(home) as c:  # DAEMON_NOT_RUNNING before any token is made
        auth = {"Authorization": f"Bearer {_token(home)}"}

        async def call(method: str, path: str, body: Any = None, **headers: str) -> Any:
            nonlocal auth
            try:
                return await c.request(method, path, body, headers={**auth, **headers})
            except CliError as e:
                if e.code != "TOKEN_INVALID":
                    raise
                auth = {"Authorization": f"Bearer {_token(home, fresh=True)}"}
                await asyncio.sleep(0.5)  # p4 up re-reads the token file
                return await c.request(method, path, body, headers={**auth, **headers})

        async def send(text: str) -> None:
            data = base64.b64encode(text.encode()).decode()
            res = await call("POST", "/v1/send", {"peer": peer.device_id, "channel": channel,
                                                  "data": data},
                             **{"Idempotency-Key": uuid.uuid4().hex})
            out({"sent": len(text), "peer": peer.name, "id": res["id"]},
                f"Sent {len(text)} characters to {peer.name}")

        status = await call("GET", "/v1/status")
        st = next((p for p in status["peers"] if p["device_id"] == peer.device_id), None)
        offline = st is None or st["state"] != "connected"
        if offline and not args.json:
            print(f"p4: {peer.name} is offline: the text waits in the outbox and goes when it"
                  " is back", file=sys.stderr)
        last = board.get()
        if not args.watch:
            if not last:
                raise CliError("CLIPBOARD_EMPTY", "the clipboard holds no text; copy some")
            await send(last)
            return 0
        if not args.json:
            print(f"p4: sharing the clipboard with {peer.name}; Ctrl-C stops", file=sys.stderr)
        while True:
            doc = await call("POST", "/v1/receive", {"max": 16, "wait_ms": args.poll_ms,
                                                     "lease_ms": 3_000})
            done = []
            for item in doc["messages"]:
                if item["peer"] != peer.device_id:
                    continue  # another device's: left for its own `p4 clip --watch`
                done.append(item["id"])
                if item["type"] == "message":
                    last = base64.b64decode(item["data"]).decode("utf-8", "replace")
                    board.set(last)
                    out({"received": len(last), "peer": peer.name},
                        f"Received {len(last)} characters from {peer.name}")
            if done:
                await call("POST", "/v1/confirm", {"ids": done})  # after the clipboard has it
            now = board.get()
            if now and now != last:
                last = now
                await send(now)


def cmd_clip(args: argparse.Namespace) -> int:
    from .verbs import _run  # the verbs' one-line errors and Ctrl-C

    return _run(_clip(args))


def add_clip_parser(add: Any) -> None:
    """Register ``p4 clip`` with ``add(name, func, help) -> ArgumentParser``."""
    p = add("clip", cmd_clip, "share clipboard text with a paired peer")
    p.add_argument("peer", metavar="PEER", help="name or device ID")
    p.add_argument("--watch", action="store_true",
                   help="keep both clipboards in sync until Ctrl-C")
    p.add_argument("--clipboard-file", metavar="F", help="use the file F as the clipboard")
    p.add_argument("--poll-ms", type=int, default=500, help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="JSON lines out")
