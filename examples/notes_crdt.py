"""Notes that sync between two devices as a CRDT (pycrdt, compatible with Yjs), on the local API
of ``p4 up`` (examples/p4api.py).

Each device keeps its own copy of the notes in a file and edits it offline; ``sync`` exchanges
Yjs state vectors and updates with the other device (the two steps of the y-protocols sync) and
both copies converge, whatever each side did meanwhile.  The other device need not be online:
the request waits in the outbox and is answered when it runs ``sync`` too.

On each device, once (PEER is the other device's name in ``p4 peers``):

    p4 api token add notes --peer PEER --prefix notes/ --token-file ~/.p4/notes.token
    p4 up                                  # in another terminal, or as a service

Then, on either device, at any time:

    python examples/notes_crdt.py add "buy milk"           # offline: only the local file
    python examples/notes_crdt.py del 2                    # delete note 2
    python examples/notes_crdt.py show
    python examples/notes_crdt.py --token-file ~/.p4/notes.token sync PEER

Messages (JSON on channel ``notes/to-<receiver's ID>``): ``{"t": "sv", "n", "sv"}`` asks for
what the sender lacks (step 1), ``{"t": "update", "n", "u"}`` answers it (step 2; ``n`` repeats
the request's nonce).  An update is saved to the file before it is confirmed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import sys
import time
from pathlib import Path

from pycrdt import Doc, Text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from p4api import Api, ApiError, token_from


class Notes:
    """The document (one Y.Text, a note per line) and the file it lives in."""

    def __init__(self, path: Path) -> None:
        self.path, self.doc = path, Doc[Text]()
        self.text = self.doc.get("notes", type=Text)
        if path.exists():
            self.doc.apply_update(path.read_bytes())

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_bytes(self.doc.get_update())
        os.replace(tmp, self.path)

    def lines(self) -> list[str]:
        return str(self.text).splitlines()

    def add(self, line: str) -> None:
        self.text += line.replace("\n", " ") + "\n"

    def delete(self, n: int) -> None:
        lines = self.lines()
        if not 1 <= n <= len(lines):
            raise SystemExit(f"no note {n} (there are {len(lines)})")
        start = sum(len(x) + 1 for x in lines[: n - 1])
        del self.text[start : start + len(lines[n - 1]) + 1]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def sync(api: Api, notes: Notes, peer_name: str, timeout: float) -> bool:
    """Ask the peer for what we lack, answer what it asks; True once our request is answered."""
    me, peer = await api.whoami(), await api.peer(peer_name)
    out, dev = f"{me['prefix']}to-{peer['device_id'][:13]}", peer["device_id"]
    nonce = secrets.token_hex(8)

    async def send(msg: dict[str, str]) -> None:
        await api.send(dev, out, json.dumps(msg).encode())

    await send({"t": "sv", "n": nonce, "sv": b64(notes.doc.get_state())})
    print(f"asked {peer['name']} for its changes", flush=True)
    deadline = time.monotonic() + timeout
    answered = False
    while not answered and (left := deadline - time.monotonic()) > 0:
        # a short lease: another peer's items, left unconfirmed for its own sync, go back
        # within seconds (and with them that channel's later items, held behind them)
        items = await api.receive(wait_ms=int(min(left, 10) * 1000), lease_ms=5_000)
        for item in items:
            if item.type != "message" or item.peer != dev:
                continue
            msg = json.loads(item.data)
            if msg["t"] == "sv":  # the peer asks: answer with what it lacks
                their_state = base64.b64decode(msg["sv"])
                await send({"t": "update", "n": msg["n"],
                            "u": b64(notes.doc.get_update(their_state))})
                print(f"sent {peer['name']} its missing changes", flush=True)
            elif msg["t"] == "update":
                notes.doc.apply_update(base64.b64decode(msg["u"]))
                notes.save()  # durable before the confirm below
                answered = answered or msg["n"] == nonce
                print(f"merged changes from {peer['name']}", flush=True)
        await api.confirm([i.id for i in items if i.peer == dev])  # others: their own sync
    return answered


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="CRDT notes synced with a paired device")
    ap.add_argument("--home", default=os.environ.get("P4_HOME", str(Path.home() / ".p4")))
    ap.add_argument("--file", help="the notes file (default: HOME/notes.ydoc)")
    ap.add_argument("--token-file", help="the app token (else $P4_TOKEN)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("show")
    sub.add_parser("add").add_argument("text")
    sub.add_parser("del").add_argument("n", type=int)
    p = sub.add_parser("sync")
    p.add_argument("peer", metavar="PEER")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the peer")
    args = ap.parse_args(argv)
    notes = Notes(Path(args.file or Path(args.home) / "notes.ydoc"))
    done = True
    if args.cmd == "add":
        notes.add(args.text)
    elif args.cmd == "del":
        notes.delete(args.n)
    elif args.cmd == "sync":

        async def run() -> bool:
            async with Api(args.home, token_from(args.token_file)) as api:
                return await sync(api, notes, args.peer, args.timeout)

        try:
            done = asyncio.run(run())
        except ApiError as e:
            print(f"notes: {e}", file=sys.stderr)
            return 1
        if not done:
            print(f"notes: {args.peer} did not answer in {args.timeout:.0f}s; our request"
                  " waits for it (run sync again later)", file=sys.stderr)
    notes.save()
    for i, line in enumerate(notes.lines(), 1):
        print(f"{i:3}  {line}")
    return 0 if done else 2


if __name__ == "__main__":
    raise SystemExit(main())
