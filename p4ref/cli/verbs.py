"""The everyday verbs, on top of a running ``p4 up`` (through :mod:`._client`, the local API):

    p4 status [--json]                 per peer: session state, generation, path (direct/turn/
                                       tor), RTT, bytes sent/received, outbox, last reconnect + why
    p4 send FILE|- PEER [--name N] [--json]   a file (or stdin) through p4-06, with a progress bar
    p4 recv [--wait] [--all] [--json]  files that arrived in the inbox
    p4 chat PEER [--json] [--linger S]  lines from stdin to the peer, the peer's lines to stdout
    p4 peers forget NAME               (with p4 up running) stop the link, purge, then forget

Nothing here speaks the protocol: the daemon does (:mod:`p4ref.peer`).  Every failure is one
line ``p4: error: <what happened; what to do> [CODE]`` and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import secrets
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from ..io.store import Profile
from ._client import Client, CliError
from ._common import home as _home
from ._peers import resolve_peer

__all__ = ["add_verb_parsers", "cmd_chat", "cmd_peers_forget_live", "cmd_recv", "cmd_send",
           "cmd_status"]


def _run(coro: Any) -> int:
    try:
        return int(asyncio.run(coro))
    except CliError as e:
        print(f"p4: error: {e.message} [{e.code}]", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the verb already said what goes on without it
        return 130


def _ago(t: float | None) -> str:
    if t is None:
        return "-"
    s = max(0.0, time.time() - t)
    return (f"{s:.0f}s ago" if s < 90 else f"{s / 60:.0f}m ago" if s < 5400
            else f"{s / 3600:.0f}h ago")


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# ------------------------------------------------------------------------------- status


async def _status(args: argparse.Namespace) -> int:
    async with Client(_home(args)) as c:
        info = await c.get("/v1/p4cli/info")
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"Device {info['device_id']}")
    print(f"p4 up: pid {info['pid']}, up {info['uptime_s']:.0f}s, inbox {info['inbox']}")
    peers = info["peers"]
    for f in info.get("forgot_us", []):
        print(f"{f['name'] or f['device_id'][:8]} forgot this device {_ago(f['at'])}: pair again"
              f" to talk to it, or `p4 peers forget {f['name']}` here too")
    if not peers:
        print("No paired peers. Pair with `p4 pair invite` / `p4 pair accept CODE`.")
        return 0
    w = max(4, *(len(p["name"]) for p in peers))
    print(f"{'PEER':<{w}}  {'STATE':<10}  {'GEN':>3}  {'PATH':<6}  {'RTT':>7}  {'SENT':>9}  "
          f"{'RECEIVED':>9}  {'OUTBOX':>6}  LAST RECONNECT")
    for p in peers:
        lr = p.get("last_reconnect")
        last = f"{_ago(lr['at'])} ({lr['reason']})" if lr else "-"
        rtt = ("—" if p.get("rtt_ms") is None  # none measured yet
               else f"{p['rtt_ms']:.{1 if p['rtt_ms'] < 10 else 0}f} ms")
        print(f"{p['name']:<{w}}  {p['state']:<10}  {p['generation']:>3}  "
              f"{p['path'] or '-':<6}  {rtt:>7}  {_size(p['bytes_sent']):>9}  "
              f"{_size(p['bytes_received']):>9}  {p['outbox_messages']:>6}  {last}")
    for t in info.get("transfers", []):
        print(f"sending {t['name']} to {t.get('peer_name') or t['peer'][:8]}: {t['state']}, "
              f"{_size(t['sent'])} of {_size(t['size'])}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    return _run(_status(args))


# ------------------------------------------------------------------------------- send


def _spool_stdin(home: Path) -> Path:
    d = home / "peer" / "spool"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"stdin-{secrets.token_hex(6)}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        while chunk := sys.stdin.buffer.read(1 << 20):
            f.write(chunk)
    return path


async def _send(args: argparse.Namespace) -> int:
    home = _home(args).resolve()
    peer = resolve_peer(Profile.open(home), args.peer)
    spool = args.file == "-"
    if spool:
        path = _spool_stdin(home)
        name = args.name or "stdin"
    else:
        path = Path(args.file).expanduser().resolve()
        if not path.is_file():
            raise CliError("FILE_NOT_FOUND", f"{args.file}: no such file; check the path")
        name = args.name or path.name
    async with Client(home) as c:
        try:
            rec = await c.post("/v1/p4cli/send-file", {"peer": peer.device_id,
                                                       "path": str(path), "name": name,
                                                       "spool": spool})
        except CliError:
            if spool:
                path.unlink(missing_ok=True)
            raise
        tid = rec["id"]
        if rec["link"]["state"] != "connected" and not args.json:
            print(f"p4: {peer.name} is offline right now: the file waits in the outbox and goes"
                  " when it is back (Ctrl-C here leaves it queued in p4 up)", file=sys.stderr)
        start = time.monotonic()
        try:
            rec = await _follow(c, tid, rec, name, peer.name, quiet=args.json)
        except (KeyboardInterrupt, asyncio.CancelledError):
            print(f"p4: stopped watching; p4 up goes on sending {name} (transfer {tid})",
                  file=sys.stderr)
            return 130
        except CliError as e:
            if e.code != "DAEMON_NOT_RUNNING":
                raise
            raise CliError("DAEMON_STOPPED", f"p4 up stopped while sending {name}; it resumes"
                           " the transfer when it starts again (`p4 status` shows it)") from None
    took = time.monotonic() - start
    if args.json:
        print(json.dumps(dict(rec, seconds=round(took, 3))))
    if rec["state"] == "done":
        if not args.json:
            rate = rec["size"] / took if took > 0 else 0
            print(f"Sent {name} ({_size(rec['size'])}) to {peer.name} in {took:.1f}s"
                  f" ({_size(rate)}/s), verified by the receiver")
        return 0
    if rec.get("code") == "FILE_DISK_FULL":
        raise CliError("FILE_DISK_FULL",
                       f"{peer.name}'s disk is full: the part of {name} it received is kept"
                       f" there; free space on {peer.name}, then run this `p4 send` again to"
                       " resume")
    if rec["state"] == "refused":
        raise CliError(rec.get("code") or "FILE_REFUSED",
                       f"{peer.name} refused {name}; the receiver's p4 up decides what it takes"
                       " (e.g. --max-file-size)")
    raise CliError(rec.get("code") or "FILE_FAILED",
                   f"sending {name} to {peer.name} {rec['state']}: {rec.get('error') or ''}"
                   " (see the p4 up log)")


async def _follow(c: Client, tid: str, rec: dict[str, Any], name: str, peer: str, *,
                  quiet: bool) -> dict[str, Any]:
    if quiet or (not sys.stderr.isatty() and not os.environ.get("P4_PROGRESS")):
        while rec["state"] not in ("done", "refused", "cancelled", "failed"):
            await asyncio.sleep(0.25)
            rec = await c.get(f"/v1/p4cli/transfers/{tid}")
        return rec
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=console,
                  transient=False) as bar:
        task = bar.add_task(f"{name} → {peer}", total=rec["size"], completed=rec["sent"])
        while rec["state"] not in ("done", "refused", "cancelled", "failed"):
            await asyncio.sleep(0.2)
            rec = await c.get(f"/v1/p4cli/transfers/{tid}")
            link = rec.get("link") or {}
            desc = f"{name} → {peer}"
            if link.get("state") not in (None, "connected"):
                desc += f" ({link.get('state')}, waiting)"
            bar.update(task, completed=rec["sent"], description=desc)
    return rec


def cmd_send(args: argparse.Namespace) -> int:
    return _run(_send(args))


# ------------------------------------------------------------------------------- recv


async def _recv(args: argparse.Namespace) -> int:
    home = _home(args)
    cursor_file = home / "peer" / "recv.cursor"
    try:
        cursor = float(cursor_file.read_text())
    except (OSError, ValueError):
        cursor = 0.0
    if args.all:
        cursor = 0.0
    names = {p.device_id: p.name for p in Profile.open(home).peers()}
    async with Client(home) as c:
        deadline = time.monotonic() + (args.timeout or 0)
        while True:
            doc = await c.get("/v1/p4cli/received")
            new = [f for f in doc["files"] if f["at"] > cursor]
            if new or not args.wait or (args.timeout and time.monotonic() > deadline):
                break
            await asyncio.sleep(0.3)
    for f in new:
        f["peer_name"] = names.get(f["peer"], "")
        if args.json:
            print(json.dumps(f))
        else:
            when = datetime.datetime.fromtimestamp(f["at"]).strftime("%H:%M:%S")
            print(f"{f['path']}  ({_size(f['size'])} from {f['peer_name'] or f['peer'][:8]},"
                  f" {when}, verified)")
    if new and not args.all:
        cursor_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        cursor_file.write_text(repr(max(f["at"] for f in new)))
    if not new and not args.json:
        print(f"Nothing new in {doc['inbox']}", file=sys.stderr)
    return 0 if new or not args.wait else 1


def cmd_recv(args: argparse.Namespace) -> int:
    return _run(_recv(args))


# ------------------------------------------------------------------------------- chat


async def _chat(args: argparse.Namespace) -> int:
    home = _home(args)
    profile = Profile.open(home)
    peer = resolve_peer(profile, args.peer)
    me = profile.identity.device_id.replace("-", "")[:13]
    channel = f"p4chat/{me}"
    loop = asyncio.get_running_loop()
    async with Client(home) as c:
        status = await c.get("/v1/status")
        st = next((p for p in status["peers"] if p["device_id"] == peer.device_id), None)
        if st is None:
            raise CliError("PEER_UNKNOWN", f"p4 up has no link to {peer.name}; restart p4 up"
                           " after pairing")
        if not args.json:
            print(f"p4: chatting with {peer.name} ({st['state']}); Ctrl-D ends",
                  file=sys.stderr)
            if st["state"] != "connected":
                print(f"p4: {peer.name} is offline: your lines wait in the outbox and go when"
                      " it is back", file=sys.stderr)

        async def reader() -> None:
            while True:
                # a short lease: a line handed to a request this process abandoned (it
                # exited while waiting) goes to the next reader within seconds
                doc = await c.post("/v1/receive", {"max": 64, "wait_ms": 10_000,
                                                   "lease_ms": 3_000}, timeout=40)
                ids = []
                for item in doc["messages"]:
                    ids.append(item["id"])
                    if item["type"] != "message":
                        continue
                    import base64

                    text = base64.b64decode(item["data"]).decode("utf-8", "replace")
                    who = item.get("peer_name") or item["peer"][:8]
                    if args.json:
                        print(json.dumps({"from": who, "peer": item["peer"], "text": text,
                                          "id": item["id"]}), flush=True)
                    else:
                        print(f"{who}: {text}", flush=True)
                if ids:
                    await c.post("/v1/confirm", {"ids": ids})

        task = asyncio.create_task(reader())
        try:
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                text = line.rstrip("\n")
                if not text:
                    continue
                res = await c.post("/v1/send", {"peer": peer.device_id, "channel": channel,
                                                "text": text},
                                   headers={"Idempotency-Key": uuid.uuid4().hex})
                if args.json:
                    print(json.dumps({"sent": text, "id": res["id"]}), flush=True)
                if task.done():
                    task.result()
            if args.linger > 0:
                await asyncio.wait({task}, timeout=args.linger)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    return _run(_chat(args))


# ------------------------------------------------------------------------------- forget


async def _forget_live(home: Path, device_id: str) -> bool:
    """Ask a running ``p4 up`` to stop and purge the pair; False if none runs."""
    try:
        async with Client(home) as c:
            doc = await c.post("/v1/p4cli/forget", {"peer": device_id})
            return bool(doc.get("forgotten"))
    except CliError as e:
        if e.code == "DAEMON_NOT_RUNNING":
            return False
        raise


def cmd_peers_forget_live(args: argparse.Namespace) -> int:
    """``p4 peers forget NAME``: the running daemon (if any) stops that pair's link, sends a
    signed BYE when it can and purges its queues; then the pairing is deleted, so the key is
    refused until the devices pair again."""
    home = _home(args)
    profile = Profile.open(home)
    rec = resolve_peer(profile, args.name)
    try:
        live = asyncio.run(_forget_live(home, rec.device_id))
    except CliError as e:
        print(f"p4: error: {e.message} [{e.code}]", file=sys.stderr)
        return 1
    profile.forget_peer(rec.name)
    if getattr(args, "json", False):
        print(json.dumps({"forgotten": rec.name, "device_id": rec.device_id,
                          "link_stopped": live}))
    else:
        print(f"Forgot {rec.name!r} ({rec.device_id}){'; its link is stopped' if live else ''};"
              " pair again to talk to it")
    return 0


# ------------------------------------------------------------------------------- parser


def add_verb_parsers(add: Any) -> None:
    """Register the verbs with ``add(name, func, help) -> ArgumentParser``."""
    p = add("status", cmd_status, "the running peer: links, generations, transfers")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p = add("send", cmd_send, "send a file (or - for stdin) to a paired peer")
    p.add_argument("file", metavar="FILE|-")
    p.add_argument("peer", metavar="PEER", help="name or device ID")
    p.add_argument("--name", default=None, help="file name the receiver sees")
    p.add_argument("--json", action="store_true", help="machine-readable output, no bar")
    p = add("recv", cmd_recv, "list files that arrived in the inbox")
    p.add_argument("--wait", action="store_true", help="wait until a new file arrives")
    p.add_argument("--timeout", type=float, default=0, help="with --wait: give up after S s")
    p.add_argument("--all", action="store_true", help="every file received, not only new ones")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p = add("chat", cmd_chat, "chat with a paired peer: stdin lines out, its lines in")
    p.add_argument("peer", metavar="PEER", help="name or device ID")
    p.add_argument("--json", action="store_true", help="JSON lines out")
    p.add_argument("--linger", type=float, default=0.0,
                   help="after end of input, keep receiving for S seconds")
