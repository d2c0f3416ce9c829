"""Clipboard sharing between two devices, on the local API of ``p4 up`` (examples/p4api.py).

What you copy on one device can be pasted on the other, both ways, while this runs on both.
Text copied while the other device is away waits in the outbox and arrives when it is back.

On each device, once (PEER is the other device's name in ``p4 peers``):

    p4 api token add clip --peer PEER --prefix clip/ --token-file ~/.p4/clip.token
    p4 up                                  # in another terminal, or as a service

Then on both:

    python examples/clipboard.py --token-file ~/.p4/clip.token PEER

The system clipboard is reached through pyperclip (on Linux it needs xclip, xsel or
wl-clipboard); ``--clipboard-file F`` uses a file instead (headless machines, the tests).
``--once`` sends the clipboard's text and exits.  Each direction has its own channel,
``clip/to-<receiver's ID>``; an item is confirmed only after it is in the clipboard.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p4api import Api, ApiError, token_from


class Clipboard(Protocol):
    def get(self) -> str: ...
    def set(self, text: str) -> None: ...


class FileClipboard:
    """A file standing in for the clipboard (written atomically)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def get(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def set(self, text: str) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.path)


class SystemClipboard:
    def __init__(self) -> None:
        import pyperclip

        self._p = pyperclip

    def get(self) -> str:
        return str(self._p.paste())

    def set(self, text: str) -> None:
        self._p.copy(text)


async def share(api: Api, peer_name: str, clip: Clipboard, once: bool, poll_ms: int) -> None:
    me, peer = await api.whoami(), await api.peer(peer_name)
    out = f"{me['prefix']}to-{peer['device_id'][:13]}"
    limit = me["limits"]["max_message_bytes"]
    last = clip.get()
    if once:
        await api.send(peer["device_id"], out, last.encode())
        print(f"sent {len(last)} characters to {peer['name']}", flush=True)
        return
    print(f"sharing the clipboard with {peer['name']} (Ctrl-C stops)", flush=True)
    while True:
        items = await api.receive(wait_ms=poll_ms, lease_ms=10_000)
        for item in items:
            if item.type == "message" and item.peer == peer["device_id"]:
                last = item.data.decode("utf-8", "replace")
                clip.set(last)
                print(f"← {item.peer_name}: {len(last)} characters", flush=True)
        # confirmed once in the clipboard; another device's items are left for its own run
        await api.confirm([i.id for i in items if i.peer == peer["device_id"]])
        now = clip.get()
        if now != last and len(now.encode()) <= limit:
            last = now
            await api.send(peer["device_id"], out, now.encode())
            print(f"→ {peer['name']}: {len(now)} characters", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="share clipboard text with a paired device")
    ap.add_argument("peer", metavar="PEER", help="the other device's name or ID")
    ap.add_argument("--home", default=os.environ.get("P4_HOME", str(Path.home() / ".p4")))
    ap.add_argument("--token-file", help="the app token (else $P4_TOKEN)")
    ap.add_argument("--clipboard-file", help="use this file as the clipboard")
    ap.add_argument("--once", action="store_true", help="send the clipboard once and exit")
    ap.add_argument("--poll-ms", type=int, default=500, help="how often to look (ms)")
    args = ap.parse_args(argv)
    clip = FileClipboard(args.clipboard_file) if args.clipboard_file else SystemClipboard()

    async def run() -> None:
        async with Api(args.home, token_from(args.token_file)) as api:
            await share(api, args.peer, clip, args.once, args.poll_ms)

    try:
        asyncio.run(run())
    except ApiError as e:
        print(f"clipboard: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
