"""Stream a log file or metrics from one device to another, on the local API of ``p4 up``
(examples/p4api.py), with nothing lost or doubled when either side (or ``p4 up``) restarts.

On both devices, once (PEER is the other device's name in ``p4 peers``):

    p4 api token add logs --peer PEER --prefix logs/ --token-file ~/.p4/logs.token
    p4 up                                  # in another terminal, or as a service

On the machine with the logs (``--follow`` keeps tailing, like ``tail -f``):

    python examples/logstream.py --token-file ~/.p4/logs.token send PEER /var/log/app.log --follow
    python examples/logstream.py --token-file ~/.p4/logs.token metrics PEER --every 5

On the machine that watches them (``--out F`` appends to a file instead of printing):

    python examples/logstream.py --token-file ~/.p4/logs.token recv --out app.log

How nothing is lost: the sender moves its file offset (``FILE.p4sent``) only after the API
accepted the lines (durable in the outbox), with an idempotency key made of the byte range, so a
resend after a crash is recognised; the receiver writes (and fsyncs) the lines before it
confirms them, and records each source's last position (``OUT.pos``) to skip a repeat, with the
length of ``OUT`` then (recorded once before the first line too): a receiver killed between
writing lines and recording them cuts ``OUT`` back to that length when it starts again, and the
lines, never confirmed, arrive again, before anything later on the channel (the API holds a
channel's later messages back while an earlier one is leased to a reader that died).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p4api import Api, ApiError, token_from

CHUNK = 256 * 1024  # at most this much log per message


async def channel_to(api: Api, peer_name: str) -> tuple[str, str]:
    """(peer device ID, our sending channel ``<prefix>to-<its ID>``)."""
    me, peer = await api.whoami(), await api.peer(peer_name)
    return peer["device_id"], f"{me['prefix']}to-{peer['device_id'][:13]}"


async def send_file(api: Api, peer: str, path: Path, follow: bool) -> None:
    dev, out = await channel_to(api, peer)
    state = path.with_name(path.name + ".p4sent")
    off = int(state.read_text()) if state.exists() else 0
    src = f"{socket.gethostname()}:{path.name}"
    while True:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size < off:
                off = 0  # truncated or rotated: start again
            f.seek(off)
            chunk = f.read(CHUNK)
        chunk = chunk[: chunk.rfind(b"\n") + 1]  # whole lines only (UTF-8 text)
        if not chunk:
            if not follow:
                return
            await asyncio.sleep(0.2)
            continue
        msg = {"src": src, "start": off, "end": off + len(chunk),
               "lines": chunk.decode("utf-8", "replace")}
        await api.send(dev, out, json.dumps(msg).encode(), key=f"{src}:{off}:{msg['end']}")
        off += len(chunk)
        state.write_text(str(off))  # only after the API accepted it
        print(f"sent {path.name} up to byte {off}", file=sys.stderr, flush=True)


async def send_metrics(api: Api, peer: str, every: float, count: int) -> None:
    dev, out = await channel_to(api, peer)
    src, n = f"{socket.gethostname()}:metrics", 0
    while count == 0 or n < count:
        (load1, load5, _), disk = os.getloadavg(), os.statvfs("/")
        sample = {"t": round(time.time(), 3), "load1": load1, "load5": load5,
                  "disk_free_mb": disk.f_bavail * disk.f_frsize >> 20}
        pos = time.time_ns()
        msg = {"src": src, "end": pos, "lines": json.dumps(sample) + "\n"}
        await api.send(dev, out, json.dumps(msg).encode(), key=f"{src}:{pos}")
        n += 1
        await asyncio.sleep(every)


async def receive(api: Api, out: Path | None, state: Path) -> None:
    def save(seen: dict[str, Any]) -> None:
        tmp = state.with_name(state.name + ".tmp")
        tmp.write_text(json.dumps({"pos": seen,
                                   "out_len": out.stat().st_size if out and out.exists() else 0}))
        os.replace(tmp, state)

    if not state.exists():
        save({})  # the length of OUT before anything is written: what a crash cuts back to
    saved: dict[str, Any] = json.loads(state.read_text())
    seen: dict[str, Any] = saved["pos"]
    if out is not None and out.exists():  # lines written after the last save come again
        os.truncate(out, min(saved["out_len"], out.stat().st_size))  # (they were not confirmed)
    while True:
        items = await api.receive(max=128, wait_ms=10_000, lease_ms=5_000)
        for item in items:
            if item.type != "message":
                continue
            msg = json.loads(item.data)
            done = seen.get(msg["src"], -1)
            if msg["end"] <= done:
                continue  # already written (sent again after a crash)
            if msg.get("start", done) < done:  # partly written: keep the new bytes only
                msg["lines"] = msg["lines"].encode()[done - msg["start"]:].decode()
            if out is None:
                for line in msg["lines"].splitlines():
                    print(f"{msg['src']}: {line}", flush=True)
            else:
                with open(out, "a", encoding="utf-8") as f:
                    f.write(msg["lines"])
                    f.flush()
                    os.fsync(f.fileno())
            seen[msg["src"]] = msg["end"]
        if items:
            save(seen)
            await api.confirm([i.id for i in items])  # written first, confirmed after


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="stream logs or metrics to a paired device")
    ap.add_argument("--home", default=os.environ.get("P4_HOME", str(Path.home() / ".p4")))
    ap.add_argument("--token-file", help="the app token (else $P4_TOKEN)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("send", help="send a log file's lines")
    p.add_argument("peer", metavar="PEER")
    p.add_argument("file", type=Path)
    p.add_argument("--follow", action="store_true", help="keep sending new lines")
    p = sub.add_parser("metrics", help="send load and disk samples")
    p.add_argument("peer", metavar="PEER")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--count", type=int, default=0, help="stop after N samples (0: never)")
    p = sub.add_parser("recv", help="print (or append to --out) what arrives")
    p.add_argument("--out", type=Path, help="append the lines to this file")
    args = ap.parse_args(argv)

    async def run() -> None:
        async with Api(args.home, token_from(args.token_file)) as api:
            if args.cmd == "send":
                await send_file(api, args.peer, args.file, args.follow)
            elif args.cmd == "metrics":
                await send_metrics(api, args.peer, args.every, args.count)
            else:
                state = (args.out.with_name(args.out.name + ".pos") if args.out
                         else Path(args.home) / "logstream.pos")
                await receive(api, args.out, state)

    try:
        asyncio.run(run())
    except ApiError as e:
        print(f"logstream: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
